/* Initial vCPU state for each boot protocol: registers, segments, FPU, MSRs and LAPIC. */
#include "cpu.h"
#include "layout.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define CR0_PE   (1ULL << 0)
#define CR0_ET   (1ULL << 4)
#define CR0_PG   (1ULL << 31)
#define CR4_PAE  (1ULL << 5)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)

#define MSR_IA32_SYSENTER_CS    0x174
#define MSR_IA32_SYSENTER_ESP   0x175
#define MSR_IA32_SYSENTER_EIP   0x176
#define MSR_IA32_MISC_ENABLE    0x1a0
#define MSR_IA32_TSC            0x10
#define MSR_STAR                0xc0000081
#define MSR_LSTAR               0xc0000082
#define MSR_CSTAR               0xc0000083
#define MSR_SYSCALL_MASK        0xc0000084
#define MSR_KERNEL_GS_BASE      0xc0000102
#define MISC_ENABLE_FAST_STRING 1ULL
#define MSR_MTRR_DEF_TYPE       0x2ff
#define MTRR_DEF_TYPE_E         (1ULL << 11) /* MTRRs enabled */
#define MTRR_TYPE_WB            6ULL

#define APIC_LVT0        0x350
#define APIC_LVT1        0x360
#define APIC_MODE_NMI    4
#define APIC_MODE_EXTINT 7

static struct kvm_segment segment(uint16_t selector, uint8_t type, int code64, int db)
{
    return (struct kvm_segment){
            .base = 0,
            .limit = 0xffffffff,
            .selector = selector,
            .type = type,
            .present = 1,
            .dpl = 0,
            .db = (uint8_t)db,
            .s = 1,
            .l = (uint8_t)code64,
            .g = 1,
    };
}

static int set_sregs(int fd, const struct boot_setup *bs)
{
    struct kvm_sregs s;
    int pvh = bs->proto == BOOT_PVH;

    if (ioctl(fd, KVM_GET_SREGS, &s) < 0)
        return log_errno("KVM_GET_SREGS");
    s.cs = segment(0x10, 0xb, !pvh, pvh);
    s.ds = s.es = s.fs = s.gs = s.ss = segment(0x18, 0x3, 0, 1);
    s.tr = segment(0x20, 0xb, 0, 0);
    s.tr.s = 0;
    s.tr.limit = 0xfffff;
    s.tr.g = 0;
    s.gdt.base = GDT_GPA;
    s.gdt.limit = 5 * 8 - 1;
    s.idt.base = 0;
    s.idt.limit = 0;
    if (pvh) {
        s.cr0 = CR0_PE | CR0_ET;
        s.cr4 = 0;
        s.efer = 0;
    } else {
        s.cr0 = CR0_PE | CR0_ET | CR0_PG;
        s.cr3 = PML4_GPA;
        s.cr4 = CR4_PAE;
        s.efer = EFER_LME | EFER_LMA;
    }
    if (ioctl(fd, KVM_SET_SREGS, &s) < 0)
        return log_errno("KVM_SET_SREGS");
    return 0;
}

int vcpu_setup_regs(int fd, int index, const struct boot_setup *bs)
{
    struct kvm_fpu fpu = {.fcw = 0x37f, .mxcsr = 0x1f80};
    struct kvm_regs r = {.rflags = 2};
    int err;

    if (ioctl(fd, KVM_SET_FPU, &fpu) < 0)
        return log_errno("KVM_SET_FPU");
    if (index != 0)
        return 0; /* application processors wait for INIT/SIPI from the boot CPU */
    err = set_sregs(fd, bs);
    if (err)
        return err;
    r.rip = bs->entry;
    if (bs->proto == BOOT_PVH) {
        r.rbx = bs->boot_info;
    } else {
        r.rsi = bs->boot_info;
        r.rsp = r.rbp = BOOT_STACK_GPA;
    }
    if (ioctl(fd, KVM_SET_REGS, &r) < 0)
        return log_errno("KVM_SET_REGS");
    return 0;
}

int vcpu_setup_msrs(int kvm_fd, int fd)
{
    static const struct {
        uint32_t index;
        uint64_t data;
    } boot_msrs[] = {
            {MSR_IA32_SYSENTER_CS, 0},
            {MSR_IA32_SYSENTER_ESP, 0},
            {MSR_IA32_SYSENTER_EIP, 0},
            {MSR_STAR, 0},
            {MSR_LSTAR, 0},
            {MSR_CSTAR, 0},
            {MSR_KERNEL_GS_BASE, 0},
            {MSR_SYSCALL_MASK, 0},
            {MSR_IA32_TSC, 0},
            {MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING},
            {MSR_MTRR_DEF_TYPE, MTRR_DEF_TYPE_E | MTRR_TYPE_WB},
    };
    const unsigned n = sizeof(boot_msrs) / sizeof(boot_msrs[0]);
    struct kvm_msrs *m = calloc(1, sizeof(*m) + n * sizeof(m->entries[0]));
    int r;

    (void)kvm_fd;
    if (!m)
        return -ENOMEM;
    m->nmsrs = n;
    for (unsigned i = 0; i < n; i++) {
        m->entries[i].index = boot_msrs[i].index;
        m->entries[i].data = boot_msrs[i].data;
    }
    r = ioctl(fd, KVM_SET_MSRS, m);
    free(m);
    if (r < 0)
        return log_errno("KVM_SET_MSRS");
    if ((unsigned)r != n) {
        log_err("KVM_SET_MSRS: KVM accepted %d of %u boot MSRs (MSR 0x%x refused)", r, n,
                boot_msrs[r].index);
        return -EINVAL;
    }
    return 0;
}

int vcpu_setup_lapic(int fd)
{
    struct kvm_lapic_state l;
    uint32_t *lvt0 = (uint32_t *)(void *)&l.regs[APIC_LVT0];
    uint32_t *lvt1 = (uint32_t *)(void *)&l.regs[APIC_LVT1];

    if (ioctl(fd, KVM_GET_LAPIC, &l) < 0)
        return log_errno("KVM_GET_LAPIC");
    /* LINT0 delivers the 8259's ExtINT, LINT1 the NMI, as on a PC. */
    *lvt0 = (*lvt0 & ~0x700u) | (APIC_MODE_EXTINT << 8);
    *lvt1 = (*lvt1 & ~0x700u) | (APIC_MODE_NMI << 8);
    if (ioctl(fd, KVM_SET_LAPIC, &l) < 0)
        return log_errno("KVM_SET_LAPIC");
    return 0;
}
