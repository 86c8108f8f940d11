/* CPUID for each vCPU: KVM's supported leaves, the bits KVM leaves to us, APIC IDs, topology. */
#include "cpu.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define CPUID_MAX_ENTRIES 256

struct kvm_cpuid2 *cpuid_supported(int kvm_fd)
{
    struct kvm_cpuid2 *c;

    c = calloc(1, sizeof(*c) + CPUID_MAX_ENTRIES * sizeof(c->entries[0]));
    if (!c) {
        log_err("out of memory for CPUID");
        return NULL;
    }
    c->nent = CPUID_MAX_ENTRIES;
    if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
        log_err("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
        free(c);
        return NULL;
    }
    cpuid_vmm_features(c, ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0);
    return c;
}

void cpuid_vmm_features(struct kvm_cpuid2 *cpuid, int tsc_deadline)
{
    for (uint32_t i = 0; i < cpuid->nent; i++) {
        struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

        /* The in-kernel LAPIC emulates the TSC-deadline timer, but KVM never reports the bit
         * (api.rst: the VMM sets it when KVM_CAP_TSC_DEADLINE_TIMER is there). Without it
         * Linux calibrates the LAPIC timer by busy-waiting 100 ms (HZ/10 ticks). */
        if (e->function == 1 && tsc_deadline)
            e->ecx |= 1u << 24;
    }
}

static unsigned int bits_for(int n)
{
    unsigned int b = 0;

    while ((1 << b) < n)
        b++;
    return b;
}

/* Leaves 0xB and 0x1F: level 0 = SMT (one thread per core), level 1 = core. */
static void fix_topology_leaf(struct kvm_cpuid_entry2 *e, int index, int ncpus)
{
    e->edx = (uint32_t)index;
    switch (e->index) {
    case 0:
        e->eax = 0;
        e->ebx = 1;
        e->ecx = (1u << 8) | 0;
        break;
    case 1:
        e->eax = bits_for(ncpus);
        e->ebx = (uint32_t)ncpus;
        e->ecx = (2u << 8) | 1;
        break;
    default:
        e->eax = 0;
        e->ebx = 0;
        e->ecx = e->index & 0xff;
        break;
    }
}

void cpuid_fixup(struct kvm_cpuid2 *cpuid, int index, int ncpus)
{
    for (uint32_t i = 0; i < cpuid->nent; i++) {
        struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

        switch (e->function) {
        case 1:
            /* Initial APIC ID, logical processor count, HTT when more than one. */
            e->ebx = (e->ebx & 0x0000ffff) | ((uint32_t)index << 24) |
                     ((uint32_t)(ncpus & 0xff) << 16);
            if (ncpus > 1)
                e->edx |= 1u << 28;
            else
                e->edx &= ~(1u << 28);
            e->ecx |= 1u << 31; /* running under a hypervisor */
            break;
        case 4:
            /* Cores per package - 1 in EAX[31:26]; each cache is private to one thread. */
            e->eax = (e->eax & 0x3ff) | ((uint32_t)(ncpus - 1) << 26);
            break;
        case 0xb:
        case 0x1f:
            fix_topology_leaf(e, index, ncpus);
            break;
        case 0x80000008:
            /* AMD: number of physical cores - 1. */
            e->ecx = (e->ecx & ~0xffu) | (uint32_t)(ncpus - 1);
            break;
        default:
            /* Everything else, including the KVM paravirt leaves 0x40000000.., as KVM says. */
            break;
        }
    }
}
