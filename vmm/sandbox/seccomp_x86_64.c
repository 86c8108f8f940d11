/* x86_64's share of the seccomp allowlists: the KVM ioctls of its set-up and snapshots, and how
 * the SIGSYS report reads an x86_64 call. */
#include "seccomp_rules.h"

#include <linux/audit.h>
#include <linux/kvm.h>
#include <ucontext.h>

const uint32_t seccomp_audit_arch = AUDIT_ARCH_X86_64;

unsigned long seccomp_ioctl_request(const void *ucontext)
{
    return (unsigned long)((const ucontext_t *)ucontext)->uc_mcontext.gregs[REG_RSI];
}

void seccomp_arch_vcpu(struct seccomp_builder *b)
{
    ALLOW_IOCTL(b, KVM_GET_REGS); /* name the instruction of a triple fault */
}

void seccomp_arch_build(struct seccomp_builder *b)
{
    static const unsigned long kvm[] = {
            KVM_SET_TSS_ADDR,
            KVM_SET_IDENTITY_MAP_ADDR,
            KVM_CREATE_IRQCHIP,
            KVM_CREATE_PIT2,
            KVM_GET_IRQCHIP,
            KVM_SET_IRQCHIP,
            KVM_GET_SUPPORTED_CPUID,
            KVM_SET_CPUID2,
            KVM_GET_MSR_INDEX_LIST,
            KVM_SET_MSRS,
            KVM_GET_LAPIC,
            KVM_SET_LAPIC,
            KVM_GET_SREGS,
            KVM_SET_SREGS,
            KVM_SET_REGS,
            KVM_SET_FPU,
    };

    seccomp_allow_ioctls(b, kvm, sizeof(kvm) / sizeof(kvm[0]));
}

void seccomp_arch_snapshot(struct seccomp_builder *b, int rebuild)
{
    static const unsigned long kvm[] = {
            KVM_GET_MP_STATE,  KVM_GET_XSAVE,  KVM_GET_XSAVE2,      KVM_GET_XCRS,
            KVM_GET_DEBUGREGS, KVM_GET_CPUID2, KVM_GET_VCPU_EVENTS, KVM_GET_TSC_KHZ,
            KVM_GET_MSRS,      KVM_GET_PIT2,   KVM_GET_CLOCK,
    };
    static const unsigned long kvm_also_build[] = {
            KVM_GET_REGS,    KVM_GET_SREGS,       KVM_GET_LAPIC,
            KVM_GET_IRQCHIP, KVM_CHECK_EXTENSION, KVM_GET_MSR_INDEX_LIST,
    };

    seccomp_allow_ioctls(b, kvm, sizeof(kvm) / sizeof(kvm[0]));
    if (!rebuild)
        seccomp_allow_ioctls(b, kvm_also_build, sizeof(kvm_also_build) / sizeof(kvm_also_build[0]));
}
