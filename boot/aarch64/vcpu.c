/* aarch64 vCPU setup: KVM_ARM_VCPU_INIT (PSCI 0.2), core registers through KVM_SET_ONE_REG. */
#include "boot/aarch64/vcpu.h"
#include "log.h"

#include <asm/ptrace.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>

/* A core register's id: its offset in struct kvm_regs, in 32-bit words. */
#define CORE_REG(field)                                                                            \
    (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE |                                         \
     (offsetof(struct kvm_regs, field) / sizeof(uint32_t)))

#define MPIDR_EL1 ARM64_SYS_REG(3, 0, 0, 0, 5)

/* EL1 with its own stack pointer, debug, SError, IRQ and FIQ masked (booting.rst). */
#define BOOT_PSTATE (PSR_MODE_EL1h | PSR_D_BIT | PSR_A_BIT | PSR_I_BIT | PSR_F_BIT)

int a64_vcpu_preferred(int vm_fd, struct kvm_vcpu_init *init)
{
    memset(init, 0, sizeof(*init));
    if (ioctl(vm_fd, KVM_ARM_PREFERRED_TARGET, init) < 0)
        return log_errno("KVM_ARM_PREFERRED_TARGET");
    return 0;
}

int a64_vcpu_init(int vcpu_fd, int index, const struct kvm_vcpu_init *preferred)
{
    struct kvm_vcpu_init init = *preferred;

    init.features[0] |= 1U << KVM_ARM_VCPU_PSCI_0_2;
    if (index > 0)
        init.features[0] |= 1U << KVM_ARM_VCPU_POWER_OFF;
    if (ioctl(vcpu_fd, KVM_ARM_VCPU_INIT, &init) < 0) {
        int err = -errno;

        log_err("KVM_ARM_VCPU_INIT on vCPU %d (target %u, PSCI 0.2): %s", index, init.target,
                strerror(-err));
        return err;
    }
    return 0;
}

static int set_reg(int vcpu_fd, int index, uint64_t id, uint64_t value, const char *name)
{
    struct kvm_one_reg reg = {.id = id, .addr = (uint64_t)(uintptr_t)&value};

    if (ioctl(vcpu_fd, KVM_SET_ONE_REG, &reg) < 0) {
        int err = -errno;

        log_err("KVM_SET_ONE_REG %s on vCPU %d: %s", name, index, strerror(-err));
        return err;
    }
    return 0;
}

int a64_vcpu_boot_regs(int vcpu_fd, int index, uint64_t entry, uint64_t dtb)
{
    int err = set_reg(vcpu_fd, index, CORE_REG(regs.pstate), BOOT_PSTATE, "pstate");

    if (!err)
        err = set_reg(vcpu_fd, index, CORE_REG(regs.pc), entry, "pc");
    if (!err)
        err = set_reg(vcpu_fd, index, CORE_REG(regs.regs[0]), dtb, "x0");
    for (int i = 1; !err && i <= 3; i++)
        err = set_reg(vcpu_fd, index, CORE_REG(regs.regs[i]), 0, "x1-x3");
    return err;
}

int a64_vcpu_mpidr(int vcpu_fd, int index, uint64_t *mpidr)
{
    struct kvm_one_reg reg = {.id = MPIDR_EL1, .addr = (uint64_t)(uintptr_t)mpidr};

    if (ioctl(vcpu_fd, KVM_GET_ONE_REG, &reg) < 0) {
        int err = -errno;

        log_err("KVM_GET_ONE_REG MPIDR_EL1 on vCPU %d: %s", index, strerror(-err));
        return err;
    }
    return 0;
}
