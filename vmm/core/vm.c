/* VM lifecycle: create the KVM VM with its architecture's set-up and memory; start, stop,
 * join vCPUs. */
#include "vm.h"
#include "arch.h"
#include "log.h"

#include <errno.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static int set_memory(struct vm *vm)
{
    for (int i = 0; i < vm->mem.nr_regions; i++) {
        const struct guest_region *r = &vm->mem.region[i];
        struct kvm_userspace_memory_region mr = {
                .slot = (uint32_t)i,
                .guest_phys_addr = r->gpa,
                .memory_size = r->size,
                .userspace_addr = (uint64_t)(uintptr_t)r->host,
        };

        if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &mr) < 0) {
            int err = -errno;
            log_err("KVM_SET_USER_MEMORY_REGION (slot %d, %llu MiB at 0x%llx): %s", i,
                    (unsigned long long)(r->size >> 20), (unsigned long long)r->gpa,
                    strerror(-err));
            return err;
        }
    }
    return 0;
}

int vm_create(struct vm *vm, int kvm_fd, uint64_t ram_size, int ncpus, int hugepages, int mem_fd)
{
    const struct guest_ram_layout *l = &arch_map.ram;
    unsigned long type = 0;
    uint64_t ram_end;
    int err;

    memset(vm, 0, sizeof(*vm));
    vm->kvm_fd = kvm_fd;
    vm->ncpus = ncpus;
    vm->exit_status = -1;
    vm->wake_fd = -1;
    vm->vm_fd = -1;
    vm->mem_fd = mem_fd;
    for (int i = 0; i < VM_MAX_CPUS; i++)
        vm->vcpu[i].fd = -1;
    bus_init(&vm->pio);
    bus_init(&vm->mmio);
    vm_pause_init(vm);

    /* The last byte of RAM: past the hole when RAM reaches it. */
    ram_end = l->base + ram_size;
    if (l->hole_end > l->hole_start && ram_end > l->hole_start)
        ram_end += l->hole_end - l->hole_start;
    err = arch_vm_type(kvm_fd, ram_end, &type);
    if (err)
        goto fail; /* the pause lock and condition are set up already */
    vm->vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, type);
    if (vm->vm_fd < 0) {
        err = -errno;
        log_err("KVM_CREATE_VM: %s", strerror(-err));
        goto fail;
    }
    err = arch_vm_init(vm);
    if (err)
        goto fail;

    err = mem_fd >= 0 ? guest_mem_init_file(&vm->mem, l, ram_size, mem_fd)
                      : guest_mem_init(&vm->mem, l, ram_size, hugepages);
    if (err) {
        log_err("cannot map %llu MiB of guest memory%s: %s", (unsigned long long)(ram_size >> 20),
                hugepages ? " with huge pages" : "", strerror(-err));
        if (hugepages)
            log_info("hint: reserve huge pages (sysctl vm.nr_hugepages) or drop --hugepages");
        goto fail;
    }
    err = set_memory(vm);
    if (err)
        goto fail;
    vm->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (vm->wake_fd < 0) {
        err = -errno;
        log_err("eventfd: %s", strerror(-err));
        goto fail;
    }
    return 0;
fail:
    vm_destroy(vm);
    return err;
}

void vm_destroy(struct vm *vm)
{
    for (int i = 0; i < vm->ncpus; i++) {
        struct vcpu *v = &vm->vcpu[i];

        if (v->run)
            munmap(v->run, v->run_size);
        if (v->fd >= 0)
            close(v->fd);
        v->run = NULL;
        v->fd = -1;
    }
    arch_vm_destroy(vm);
    guest_mem_free(&vm->mem);
    if (vm->wake_fd >= 0)
        close(vm->wake_fd);
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    vm->wake_fd = -1;
    vm->vm_fd = -1;
    vm_pause_destroy(vm);
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason reason)
{
    int expected = STOP_NONE;
    uint64_t one = 1;

    atomic_compare_exchange_strong(&vm->stop_reason, &expected, (int)reason);
    if (atomic_exchange(&vm->stopping, 1))
        return;
    pthread_mutex_lock(&vm->pause_lock); /* paused vCPUs wake up and end too */
    pthread_cond_broadcast(&vm->pause_cond);
    pthread_mutex_unlock(&vm->pause_lock);
    for (int i = 0; i < vm->ncpus; i++) {
        struct vcpu *v = &vm->vcpu[i];

        if (v->run)
            __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
        if (v->thread_started && !pthread_equal(v->thread, pthread_self()))
            pthread_kill(v->thread, VCPU_KICK_SIGNAL);
    }
    (void)!write(vm->wake_fd, &one, sizeof(one));
}

void vm_join(struct vm *vm)
{
    for (int i = 0; i < vm->ncpus; i++) {
        if (vm->vcpu[i].thread_started) {
            pthread_join(vm->vcpu[i].thread, NULL);
            vm->vcpu[i].thread_started = 0;
        }
    }
}

int vm_irq_line(struct vm *vm, uint32_t irq, int level)
{
    return arch_irq_line(vm, irq, level);
}
