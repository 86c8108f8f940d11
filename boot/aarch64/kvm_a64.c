/* aarch64's KVM behind arch.h: capabilities, the IPA size, each vCPU's KVM_ARM_VCPU_INIT with
 * PSCI, the in-kernel GICv3, boot registers and SPI interrupt lines. */
#include "arch.h"
#include "boot/aarch64/gic.h"
#include "boot/aarch64/machine.h"
#include "boot/aarch64/vcpu.h"
#include "log.h"
#include "vm.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define IPA_DEFAULT_BITS 40 /* KVM_CREATE_VM's type 0 */

static const struct kvm_cap_need a64_caps[] = {
        {KVM_CAP_ARM_PSCI_0_2, "KVM_CAP_ARM_PSCI_0_2"},
        {KVM_CAP_DEVICE_CTRL, "KVM_CAP_DEVICE_CTRL"},
        {KVM_CAP_ONE_REG, "KVM_CAP_ONE_REG"},
};

const char *arch_kvm_hint(void)
{
    return "ember needs KVM on an arm64 host (EL2 available to Linux: not a VM without nested "
           "virtualization), or run it inside tests/kvmhost/run --arch aarch64";
}

int arch_kvm_check(int kvm_fd)
{
    return kvm_check_caps(kvm_fd, a64_caps, sizeof(a64_caps) / sizeof(a64_caps[0]));
}

/* The IPA (guest-physical address) size: enough for RAM's end, within what this host's KVM
 * supports (KVM_CAP_ARM_VM_IPA_SIZE; without the capability, only the default 40 bits). */
int arch_vm_type(int kvm_fd, uint64_t ram_end, unsigned long *type)
{
    int max = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_ARM_VM_IPA_SIZE), bits = 32;

    while (bits < 64 && (ram_end - 1) >> bits)
        bits++;
    if (max <= 0) {
        if (bits > IPA_DEFAULT_BITS) {
            log_err("guest RAM ends at 0x%llx (%d-bit addresses); this host's KVM has no "
                    "KVM_CAP_ARM_VM_IPA_SIZE and addresses %d bits; lower --memory",
                    (unsigned long long)ram_end, bits, IPA_DEFAULT_BITS);
            return -EINVAL;
        }
        *type = 0;
        return 0;
    }
    if (bits > max) {
        log_err("guest RAM ends at 0x%llx (%d-bit addresses); this host's KVM addresses %d bits "
                "(KVM_CAP_ARM_VM_IPA_SIZE); lower --memory",
                (unsigned long long)ram_end, bits, max);
        return -EINVAL;
    }
    *type = KVM_VM_TYPE_ARM_IPA_SIZE(bits);
    return 0;
}

int arch_vm_init(struct vm *vm)
{
    vm->arch = calloc(1, sizeof(*vm->arch));
    if (!vm->arch) {
        log_err("out of memory");
        return -ENOMEM;
    }
    vm->arch->gic_fd = -1; /* the vGIC comes once every vCPU exists */
    return 0;
}

void arch_vm_destroy(struct vm *vm)
{
    if (vm->arch && vm->arch->gic_fd >= 0)
        close(vm->arch->gic_fd);
    free(vm->arch);
    vm->arch = NULL;
}

int arch_vcpus_init(struct vm *vm)
{
    struct arch_vm *a = vm->arch;
    struct kvm_vcpu_init preferred;
    int err = a64_vcpu_preferred(vm->vm_fd, &preferred);

    for (int i = 0; !err && i < vm->ncpus; i++)
        err = a64_vcpu_init(vm->vcpu[i].fd, i, &preferred);
    for (int i = 0; !err && i < vm->ncpus && i < FDT_MAX_CPUS; i++)
        err = a64_vcpu_mpidr(vm->vcpu[i].fd, i, &a->mpidr[i]);
    if (err)
        return err;
    a->gic_fd = a64_gic_create(vm->vm_fd, vm->ncpus);
    if (a->gic_fd < 0)
        return a->gic_fd;
    return a64_gic_init(a->gic_fd);
}

int arch_vcpus_boot(struct vm *vm)
{
    /* The others start powered off: the guest brings them up with PSCI CPU_ON (KVM's). */
    return a64_vcpu_boot_regs(vm->vcpu[0].fd, 0, vm->arch->boot.entry, vm->arch->boot.dtb);
}

int arch_irq_line(struct vm *vm, uint32_t irq, int level)
{
    struct kvm_irq_level l = {
            .irq = (KVM_ARM_IRQ_TYPE_SPI << KVM_ARM_IRQ_TYPE_SHIFT) | (32 + irq),
            .level = (uint32_t)level,
    };

    if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0)
        return -errno;
    return 0;
}

int arch_vcpu_exit(struct vcpu *v)
{
    (void)v; /* PSCI and the timer stay in KVM; power-off and reset are system events */
    return -ENOSYS;
}
