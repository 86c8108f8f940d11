/* x86_64's KVM behind arch.h: capabilities, the VM's TSS, irqchip and PIT, each vCPU's CPUID,
 * MSRs, LAPIC and registers, port I/O and the other exits only x86 has, interrupt lines. */
#include "arch.h"
#include "cpu.h"
#include "layout.h"
#include "log.h"
#include "machine.h"
#include "vm.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static const struct kvm_cap_need x86_caps[] = {
        {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
        {KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR"},
        {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
        {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
};

static int module_loaded(const char *name)
{
    char path[64];

    snprintf(path, sizeof(path), "/sys/module/%s", name);
    return access(path, F_OK) == 0;
}

/* PVM runs guests without VT-x/AMD-V; standard kernels cannot boot there. */
static int host_is_pvm(void)
{
    return module_loaded("kvm_pvm") && !module_loaded("kvm_intel") && !module_loaded("kvm_amd");
}

const char *arch_kvm_hint(void)
{
    if (host_is_pvm())
        return "this host's KVM is PVM (module kvm_pvm) and is not usable here; run ember inside "
               "tests/kvmhost/run";
    return "load kvm_intel or kvm_amd (needs VT-x/AMD-V), or run ember inside tests/kvmhost/run";
}

int arch_kvm_check(int kvm_fd)
{
    int err = kvm_check_caps(kvm_fd, x86_caps, sizeof(x86_caps) / sizeof(x86_caps[0]));

    if (!err && host_is_pvm())
        log_warn("this host's KVM is PVM (module kvm_pvm): standard guest kernels cannot run "
                 "here, only PVM guest kernels and tiny guests; use tests/kvmhost/run");
    return err;
}

int arch_vm_type(int kvm_fd, uint64_t ram_end, unsigned long *type)
{
    (void)kvm_fd;
    (void)ram_end;
    *type = 0;
    return 0;
}

/* KVM's 8259s start unmasked with vector base 0: a guest that never programs them (Linux
 * on hardware-reduced ACPI) would take device interrupts as exceptions. Start masked; a
 * guest that uses the PICs programs its own masks. */
static int mask_pics(struct vm *vm)
{
    for (uint32_t chip = KVM_IRQCHIP_PIC_MASTER; chip <= KVM_IRQCHIP_PIC_SLAVE; chip++) {
        struct kvm_irqchip ic = {.chip_id = chip};

        if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &ic) < 0)
            return log_errno("KVM_GET_IRQCHIP");
        ic.chip.pic.imr = 0xff;
        if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &ic) < 0)
            return log_errno("KVM_SET_IRQCHIP");
    }
    return 0;
}

int arch_vm_init(struct vm *vm)
{
    uint64_t identity = KVM_IDENTITY_MAP_GPA;
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};

    vm->arch = calloc(1, sizeof(*vm->arch));
    if (!vm->arch) {
        log_err("out of memory");
        return -ENOMEM;
    }
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_GPA) < 0)
        return log_errno("KVM_SET_TSS_ADDR");
    if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0)
        return log_errno("KVM_SET_IDENTITY_MAP_ADDR");
    if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
        return log_errno("KVM_CREATE_IRQCHIP");
    if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
        return log_errno("KVM_CREATE_PIT2");
    return mask_pics(vm);
}

void arch_vm_destroy(struct vm *vm)
{
    free(vm->arch);
    vm->arch = NULL;
}

int arch_vcpus_init(struct vm *vm)
{
    (void)vm; /* x86 vCPUs need nothing before their boot state or a snapshot's */
    return 0;
}

/* CPUID, MSRs, LAPIC and registers for booting the loaded kernel. */
static int vcpu_setup_boot(struct vm *vm, int index, const struct kvm_cpuid2 *supported)
{
    struct vcpu *v = &vm->vcpu[index];
    struct kvm_cpuid2 *cpuid;
    size_t cpuid_size;
    int err;

    cpuid_size = sizeof(*supported) + supported->nent * sizeof(supported->entries[0]);
    cpuid = malloc(cpuid_size);
    if (!cpuid)
        return -ENOMEM;
    memcpy(cpuid, supported, cpuid_size);
    cpuid_fixup(cpuid, index, vm->ncpus);
    err = ioctl(v->fd, KVM_SET_CPUID2, cpuid) < 0 ? -errno : 0;
    free(cpuid);
    if (err) {
        log_err("KVM_SET_CPUID2 on vCPU %d: %s", index, strerror(-err));
        return err;
    }
    err = vcpu_setup_msrs(vm->kvm_fd, v->fd);
    if (!err)
        err = vcpu_setup_lapic(v->fd);
    if (!err)
        err = vcpu_setup_regs(v->fd, index, &vm->arch->boot);
    return err;
}

int arch_vcpus_boot(struct vm *vm)
{
    struct kvm_cpuid2 *supported = cpuid_supported(vm->kvm_fd);
    int err;

    if (!supported)
        return -EIO;
    err = boot_tables_setup(&vm->mem, &vm->arch->boot);
    for (int i = 0; !err && i < vm->ncpus; i++)
        err = vcpu_setup_boot(vm, i, supported);
    free(supported);
    return err;
}

int arch_irq_line(struct vm *vm, uint32_t irq, int level)
{
    struct kvm_irq_level l = {.irq = irq, .level = (uint32_t)level};

    if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0)
        return -errno;
    return 0;
}

static void handle_io(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    uint32_t size = run->io.size, count = run->io.count;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;

    /* The data area is inside the kvm_run mapping; refuse anything that is not. */
    if (size == 0 || size > 8 || run->io.data_offset >= v->run_size ||
        (uint64_t)size * count > v->run_size - run->io.data_offset)
        return;
    for (uint32_t i = 0; i < count; i++, data += size) {
        if (run->io.direction == KVM_EXIT_IO_OUT)
            bus_write(&v->vm->pio, run->io.port, data, size);
        else
            bus_read(&v->vm->pio, run->io.port, data, size);
    }
}

/* A triple fault: what real hardware turns into a reset. Say so: it is a guest bug. */
static void triple_fault(struct vcpu *v)
{
    struct kvm_regs regs;
    int got = ioctl(v->fd, KVM_GET_REGS, &regs) == 0;

    /* On AMD SVM, KVM reinitializes the vCPU (rip 0xfff0) before it reports the shutdown. */
    if (got && regs.rip != 0xfff0)
        log_warn("vCPU %d: triple fault at rip 0x%llx; treating it as a reset", v->index,
                 (unsigned long long)regs.rip);
    else
        log_warn("vCPU %d: triple fault (rip unknown: %s); treating it as a reset", v->index,
                 got ? "KVM reset the vCPU before reporting it" : "KVM_GET_REGS failed");
    vm_request_stop(v->vm, STOP_RESET);
}

int arch_vcpu_exit(struct vcpu *v)
{
    switch (v->run->exit_reason) {
    case KVM_EXIT_IO:
        handle_io(v);
        return 1;
    case KVM_EXIT_SHUTDOWN:
        triple_fault(v);
        return 0;
    case KVM_EXIT_HLT:
        /* Only without an in-kernel LAPIC; treat a halted boot CPU as powered off. */
        vm_request_stop(v->vm, STOP_POWEROFF);
        return 0;
    default:
        return -ENOSYS;
    }
}
