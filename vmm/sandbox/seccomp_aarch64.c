/* arm64's share of the seccomp allowlists: the KVM ioctls of its set-up, and how the SIGSYS
 * report reads an arm64 call. (The calls arm64 lacks, such as poll and epoll_wait, are swapped
 * for their newer forms in seccomp.c: ALLOW_OR.) */
#include "seccomp_rules.h"

#include <linux/audit.h>
#include <linux/kvm.h>
#include <ucontext.h>

const uint32_t seccomp_audit_arch = AUDIT_ARCH_AARCH64;

unsigned long seccomp_ioctl_request(const void *ucontext)
{
    return (unsigned long)((const ucontext_t *)ucontext)->uc_mcontext.regs[1];
}

void seccomp_arch_vcpu(struct seccomp_builder *b)
{
    (void)b; /* KVM_RUN and KVM_IRQ_LINE are all */
}

void seccomp_arch_build(struct seccomp_builder *b)
{
    static const unsigned long kvm[] = {
            KVM_ARM_PREFERRED_TARGET, KVM_ARM_VCPU_INIT, KVM_GET_ONE_REG,
            KVM_SET_ONE_REG,          KVM_CREATE_DEVICE, KVM_SET_DEVICE_ATTR,
    };

    seccomp_allow_ioctls(b, kvm, sizeof(kvm) / sizeof(kvm[0]));
}

void seccomp_arch_snapshot(struct seccomp_builder *b, int rebuild)
{
    (void)b; /* no snapshots of aarch64 VMs yet (boot/aarch64/snapshot_a64.c) */
    (void)rebuild;
}
