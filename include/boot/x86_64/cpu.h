/* x86 vCPU set-up: CPUID, MSRs, LAPIC, registers and the boot page tables. */
#ifndef EMBER_CPU_H
#define EMBER_CPU_H

#include <linux/kvm.h>

#include "guest_mem.h"
#include "loader.h"

/* Fix up the supported CPUID for vCPU `index` of `ncpus`: APIC IDs, topology, hypervisor
 * bit, KVM paravirt leaves. Pure: works on the entries in place (unit-tested). */
void cpuid_fixup(struct kvm_cpuid2 *cpuid, int index, int ncpus);

/* Get KVM's supported CPUID (caller frees). NULL on failure (error printed). */
struct kvm_cpuid2 *cpuid_supported(int kvm_fd);
/* Add the CPUID bits KVM supports but leaves to the VMM to report (TSC-deadline timer). */
void cpuid_vmm_features(struct kvm_cpuid2 *cpuid, int tsc_deadline);

/* Write the GDT and identity-mapped page tables the boot protocol needs into guest memory. */
int boot_tables_setup(struct guest_mem *gm, const struct boot_setup *bs);

/* Set registers, segment registers, FPU, MSRs and LAPIC of a vCPU for boot.
 * Only the boot vCPU (index 0) gets the entry state; others wait for INIT/SIPI. */
int vcpu_setup_regs(int vcpu_fd, int index, const struct boot_setup *bs);
int vcpu_setup_msrs(int kvm_fd, int vcpu_fd);
int vcpu_setup_lapic(int vcpu_fd);

#endif
