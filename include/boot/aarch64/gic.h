/* The aarch64 guest's interrupt controller: KVM's in-kernel GICv3. */
#ifndef EMBER_BOOT_AARCH64_GIC_H
#define EMBER_BOOT_AARCH64_GIC_H

/* Create the vGICv3 with its distributor and redistributors at the layout's addresses, after
 * every vCPU exists (KVM sizes the redistributors by them); one clear error on a host without
 * GICv3 emulation. Returns the device fd or -errno. */
int a64_gic_create(int vm_fd, int nr_cpus);

/* Set the number of interrupts and initialise the vGIC: before the first KVM_RUN. */
int a64_gic_init(int gic_fd);

#endif
