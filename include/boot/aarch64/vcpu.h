/* aarch64 vCPU setup with KVM: KVM_ARM_VCPU_INIT with PSCI 0.2, boot registers, MPIDR. */
#ifndef EMBER_BOOT_AARCH64_VCPU_H
#define EMBER_BOOT_AARCH64_VCPU_H

#include <linux/kvm.h>
#include <stdint.h>

/* The target KVM prefers for this host's CPUs (KVM_ARM_PREFERRED_TARGET on the VM). */
int a64_vcpu_preferred(int vm_fd, struct kvm_vcpu_init *init);

/* KVM_ARM_VCPU_INIT of vCPU index with PSCI 0.2; every vCPU but the first starts powered off
 * and waits for the guest's PSCI CPU_ON, which KVM handles. */
int a64_vcpu_init(int vcpu_fd, int index, const struct kvm_vcpu_init *preferred);

/* The boot vCPU's registers for the Linux arm64 boot protocol: EL1h with every exception
 * masked, pc = entry, x0 = the device tree, x1-x3 = 0. */
int a64_vcpu_boot_regs(int vcpu_fd, int index, uint64_t entry, uint64_t dtb);

/* MPIDR_EL1 as KVM set it up for this vCPU (the device tree's cpu reg). */
int a64_vcpu_mpidr(int vcpu_fd, int index, uint64_t *mpidr);

#endif
