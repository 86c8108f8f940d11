/* vCPU threads: create each vCPU, run KVM_RUN in a loop and dispatch its exits. */
#include "vm.h"
#include "arch.h"
#include "log.h"
#include "sandbox.h"

#include <errno.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* The vCPU's descriptor and its kvm_run mapping; no state set yet. */
static int vcpu_open(struct vm *vm, int index)
{
    struct vcpu *v = &vm->vcpu[index];
    int mmap_size, err;

    v->vm = vm;
    v->index = index;
    v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
    if (v->fd < 0) {
        err = -errno;
        log_err("KVM_CREATE_VCPU %d: %s", index, strerror(-err));
        return err;
    }
    mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (mmap_size < (int)sizeof(struct kvm_run)) {
        err = mmap_size < 0 ? -errno : -EINVAL;
        log_err("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(-err));
        return err;
    }
    v->run = mmap(NULL, (size_t)mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (v->run == MAP_FAILED) {
        v->run = NULL;
        err = -errno;
        log_err("mmap of vCPU %d's kvm_run: %s", index, strerror(-err));
        return err;
    }
    v->run_size = (size_t)mmap_size;
    return 0;
}

int vm_open_vcpus(struct vm *vm)
{
    int err = 0;

    for (int i = 0; !err && i < vm->ncpus; i++)
        err = vcpu_open(vm, i);
    return err ? err : arch_vcpus_init(vm);
}

static void handle_mmio(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    uint32_t len = run->mmio.len;

    if (len == 0 || len > sizeof(run->mmio.data))
        return;
    if (run->mmio.is_write)
        bus_write(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
    else
        bus_read(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
}

static void handle_system_event(struct vcpu *v)
{
    switch (v->run->system_event.type) {
    case KVM_SYSTEM_EVENT_SHUTDOWN:
        vm_request_stop(v->vm, STOP_POWEROFF);
        break;
    case KVM_SYSTEM_EVENT_RESET:
        vm_request_stop(v->vm, STOP_RESET);
        break;
    case KVM_SYSTEM_EVENT_CRASH:
        vm_request_stop(v->vm, STOP_PANIC);
        break;
    default:
        log_warn("vCPU %d: unknown KVM system event %u", v->index, v->run->system_event.type);
        break;
    }
}

/* Returns 1 to keep running, 0 when the vCPU must stop. */
static int handle_exit(struct vcpu *v)
{
    struct kvm_run *run = v->run;

    if (run->exit_reason < sizeof(v->exits) / sizeof(v->exits[0]))
        atomic_fetch_add(&v->exits[run->exit_reason], 1);
    switch (run->exit_reason) {
    case KVM_EXIT_MMIO:
        handle_mmio(v);
        return 1;
    case KVM_EXIT_INTR:
        return 1;
    case KVM_EXIT_SYSTEM_EVENT:
        handle_system_event(v);
        return 0;
    case KVM_EXIT_FAIL_ENTRY:
        log_err("vCPU %d: KVM_RUN failed to enter the guest (hardware reason 0x%llx)", v->index,
                (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        vm_request_stop(v->vm, STOP_CRASH);
        return 0;
    case KVM_EXIT_INTERNAL_ERROR:
        log_err("vCPU %d: KVM internal error (suberror %u): KVM cannot emulate what the guest "
                "did",
                v->index, run->internal.suberror);
        vm_request_stop(v->vm, STOP_CRASH);
        return 0;
    default: {
        int ret = arch_vcpu_exit(v);

        if (ret >= 0)
            return ret;
        log_err("vCPU %d: unexpected KVM exit reason %u", v->index, run->exit_reason);
        vm_request_stop(v->vm, STOP_CRASH);
        return 0;
    }
    }
}

/* KVM finishes an I/O exit (an IN's data, an MMIO read) only on the next KVM_RUN. Before
 * parking, run with immediate_exit set, which does just that and returns EINTR, so the state
 * a snapshot reads while we are parked is whole. Completing one access may need another
 * exit (an access split in pieces): handle those too, a few at most. */
static void vcpu_finish_io(struct vcpu *v)
{
    struct vm *vm = v->vm;

    /* vm_pause sets immediate_exit under this lock: once we hold it, it is set. */
    pthread_mutex_lock(&vm->pause_lock);
    pthread_mutex_unlock(&vm->pause_lock);
    for (int i = 0; i < 8 && !atomic_load(&vm->stopping); i++) {
        if (!__atomic_load_n(&v->run->immediate_exit, __ATOMIC_SEQ_CST))
            return;
        if (ioctl(v->fd, KVM_RUN, 0) < 0 || !handle_exit(v))
            return;
    }
}

/* --boot-timer: how long ember took from its start to the guest's first instruction. */
static void report_first_run(const struct vm *vm)
{
    struct timespec now, cpu;

    clock_gettime(CLOCK_MONOTONIC, &now);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
    log_info("boot-timer: first KVM_RUN %.2f ms after ember started (%.2f ms ember CPU time)",
             (double)(now.tv_sec - vm->start_wall.tv_sec) * 1e3 +
                     (double)(now.tv_nsec - vm->start_wall.tv_nsec) / 1e6,
             (double)cpu.tv_sec * 1e3 + (double)cpu.tv_nsec / 1e6);
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *v = arg;
    struct vm *vm = v->vm;

    if (sandbox_enter_thread(SANDBOX_THREAD_VCPU, v->index) < 0) {
        vm_request_stop(vm, STOP_ERROR);
        return NULL;
    }
    v->tid = (int)gettid();
    if (v->index == 0 && vm->boot_timer)
        report_first_run(vm);
    while (!atomic_load(&vm->stopping)) {
        if (atomic_load(&vm->pause_req)) {
            vcpu_finish_io(v);
            vcpu_pause_point(v); /* `stop` on the control socket */
            continue;
        }
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                atomic_fetch_add(&v->exits[KVM_EXIT_INTR], 1);
                /* A kick: pause if still asked to, else clear immediate_exit (a `cont` may
                 * have come before this vCPU saw the `stop`) so KVM_RUN runs the guest. */
                vcpu_pause_point(v);
                continue;
            }
            log_err("vCPU %d: KVM_RUN: %s; KVM cannot go on running the guest", v->index,
                    strerror(errno));
            vm_request_stop(vm, STOP_CRASH);
            break;
        }
        if (!handle_exit(v))
            break;
    }
    return NULL;
}

static void kick_handler(int sig)
{
    (void)sig;
}

int vm_start(struct vm *vm)
{
    struct sigaction sa = {.sa_handler = kick_handler};
    sigset_t mask, old;
    int err;

    /* VCPU_KICK_SIGNAL kicks a vCPU out of KVM_RUN; no SA_RESTART: the ioctl returns EINTR. */
    sigemptyset(&sa.sa_mask);
    if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0)
        return -errno;
    sigemptyset(&mask);
    sigaddset(&mask, VCPU_KICK_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &mask, &old);
    for (int i = 0; i < vm->ncpus; i++) {
        err = pthread_create(&vm->vcpu[i].thread, NULL, vcpu_thread, &vm->vcpu[i]);
        if (err) {
            log_err("cannot start the thread of vCPU %d: %s", i, strerror(err));
            vm_request_stop(vm, STOP_ERROR);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            return -err;
        }
        vm->vcpu[i].thread_started = 1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return 0;
}
