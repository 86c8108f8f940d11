/* Pausing and resuming every vCPU (`stop` / `cont`): vCPUs leave KVM_RUN and wait on a
 * condition variable; the event loop never waits for them. */
#include "vm.h"

#include <linux/kvm.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

void vm_pause_init(struct vm *vm)
{
    pthread_mutex_init(&vm->pause_lock, NULL);
    pthread_cond_init(&vm->pause_cond, NULL);
    atomic_store(&vm->pause_req, 0);
    vm->nr_paused = 0;
}

void vm_pause_destroy(struct vm *vm)
{
    pthread_cond_destroy(&vm->pause_cond);
    pthread_mutex_destroy(&vm->pause_lock);
}

int vm_pause(struct vm *vm)
{
    int all;

    pthread_mutex_lock(&vm->pause_lock);
    if (!atomic_load(&vm->pause_req)) {
        atomic_store(&vm->pause_req, 1);
        /* immediate_exit covers a vCPU about to enter KVM_RUN; the signal one inside it. */
        for (int i = 0; i < vm->ncpus; i++) {
            struct vcpu *v = &vm->vcpu[i];

            if (v->run)
                __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
            if (v->thread_started)
                pthread_kill(v->thread, VCPU_KICK_SIGNAL);
        }
    }
    all = vm->nr_paused == vm->ncpus;
    pthread_mutex_unlock(&vm->pause_lock);
    return all;
}

int vm_all_paused(struct vm *vm)
{
    int all;

    pthread_mutex_lock(&vm->pause_lock);
    all = atomic_load(&vm->pause_req) && vm->nr_paused == vm->ncpus;
    pthread_mutex_unlock(&vm->pause_lock);
    return all;
}

void vm_resume(struct vm *vm)
{
    pthread_mutex_lock(&vm->pause_lock);
    clock_gettime(CLOCK_MONOTONIC, &vm->resume_at);
    vm->resume_ns = 0;
    atomic_store(&vm->pause_req, 0);
    pthread_cond_broadcast(&vm->pause_cond);
    pthread_mutex_unlock(&vm->pause_lock);
}

void vcpu_pause_point(struct vcpu *v)
{
    struct vm *vm = v->vm;
    uint64_t one = 1;

    pthread_mutex_lock(&vm->pause_lock);
    if (atomic_load(&vm->pause_req) && !atomic_load(&vm->stopping)) {
        struct timespec now;
        int64_t ns;

        if (++vm->nr_paused == vm->ncpus)
            (void)!write(vm->wake_fd, &one, sizeof(one));
        while (atomic_load(&vm->pause_req) && !atomic_load(&vm->stopping))
            pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
        vm->nr_paused--;
        clock_gettime(CLOCK_MONOTONIC, &now);
        ns = (int64_t)(now.tv_sec - vm->resume_at.tv_sec) * 1000000000 +
             (now.tv_nsec - vm->resume_at.tv_nsec);
        if (ns > vm->resume_ns)
            vm->resume_ns = ns;
    }
    /* Run again, unless a new pause came meanwhile (its immediate_exit must stay). A stop
     * request sets stopping before immediate_exit, so checking it after the clear cannot miss
     * one that raced with us. */
    if (!atomic_load(&vm->pause_req)) {
        __atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
        if (atomic_load(&vm->stopping))
            __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    }
    pthread_mutex_unlock(&vm->pause_lock);
}
