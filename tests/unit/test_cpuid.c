/* Unit tests for per-vCPU CPUID fix-ups: APIC IDs, topology leaves, hypervisor bit. */
#include "check.h"
#include "cpu.h"

#include <stdlib.h>

static struct kvm_cpuid2 *make(void)
{
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 8 * sizeof(c->entries[0]));
    uint32_t fn[] = {1, 4, 0xb, 0xb, 0xb, 0x40000000, 0x80000008};
    uint32_t idx[] = {0, 0, 0, 1, 2, 0, 0};

    c->nent = 7;
    for (int i = 0; i < 7; i++) {
        c->entries[i].function = fn[i];
        c->entries[i].index = idx[i];
        c->entries[i].eax = 0x11111111;
        c->entries[i].ebx = 0x22222222;
        c->entries[i].ecx = 0x33333333;
        c->entries[i].edx = 0x44444444;
    }
    return c;
}

int main(void)
{
    struct kvm_cpuid2 *c = make();

    /* TSC-deadline timer (leaf 1 ECX bit 24): only when KVM has the capability. */
    c->entries[0].ecx = 0;
    cpuid_vmm_features(c, 0);
    CHECK_EQ(c->entries[0].ecx, 0);
    cpuid_vmm_features(c, 1);
    CHECK_EQ(c->entries[0].ecx, 1u << 24);
    CHECK_EQ(c->entries[5].ecx, 0x33333333); /* other leaves untouched */
    c->entries[0].ecx = 0x33333333;

    cpuid_fixup(c, 3, 4);
    CHECK_EQ(c->entries[0].ebx >> 24, 3);          /* initial APIC ID */
    CHECK_EQ((c->entries[0].ebx >> 16) & 0xff, 4); /* logical processors */
    CHECK_EQ(c->entries[0].ebx & 0xffff, 0x2222);  /* other bits kept */
    CHECK(c->entries[0].ecx & (1u << 31));         /* hypervisor */
    CHECK(c->entries[0].edx & (1u << 28));         /* HTT with > 1 CPU */
    CHECK_EQ(c->entries[1].eax >> 26, 3);          /* cores per package - 1 */
    CHECK_EQ(c->entries[2].edx, 3);                /* x2APIC ID, SMT level */
    CHECK_EQ(c->entries[2].ebx, 1);
    CHECK_EQ((c->entries[2].ecx >> 8) & 0xff, 1);
    CHECK_EQ(c->entries[3].ebx, 4); /* core level: 4 CPUs */
    CHECK_EQ(c->entries[3].eax, 2); /* shift: 2 bits for 4 CPUs */
    CHECK_EQ((c->entries[3].ecx >> 8) & 0xff, 2);
    CHECK_EQ(c->entries[4].ebx, 0); /* invalid level */
    CHECK_EQ(c->entries[4].ecx & 0xff, 2);
    CHECK_EQ(c->entries[5].eax, 0x11111111); /* KVM leaves kept */
    CHECK_EQ(c->entries[5].ebx, 0x22222222);
    CHECK_EQ(c->entries[6].ecx & 0xff, 3); /* AMD core count - 1 */
    free(c);

    c = make();
    cpuid_fixup(c, 0, 1);
    CHECK_EQ(c->entries[0].ebx >> 24, 0);
    CHECK(!(c->entries[0].edx & (1u << 28))); /* no HTT with 1 CPU */
    CHECK_EQ(c->entries[3].eax, 0);
    CHECK_EQ(c->entries[3].ebx, 1);
    free(c);

    c = make();
    cpuid_fixup(c, 4, 5);
    CHECK_EQ(c->entries[3].eax, 3); /* 5 CPUs need 3 bits */
    free(c);
    return check_done("cpuid");
}
