/* x86_64 snapshot state: each vCPU's registers, special registers, XSAVE, XCRs, debug
 * registers, LAPIC, MSRs, pending events, MP state, CPUID and TSC rate; the VM's PICs,
 * IOAPIC, PIT and KVM clock. Saved through KVM, checked field by field, put back in the
 * order KVM needs. */
#include "snapshot_arch.h"
#include "layout.h"
#include "log.h"
#include "vm.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define MAX_CPUID      256       /* KVM's own limit on CPUID entries */
#define MAX_MSRS       1024      /* far above what KVM_GET_MSR_INDEX_LIST gives */
#define XSAVE_MIN      4096      /* struct kvm_xsave */
#define XSAVE_MAX      65536     /* KVM_CAP_XSAVE2 sizes are a few KiB */
#define TSC_KHZ_MAX    100000000 /* 100 GHz: anything above is not a TSC rate */
#define APIC_BASE_MASK 0xfffffffffffff000ULL
#define APIC_BASE_BITS 0xd00ULL /* BSP, x2APIC enable, xAPIC enable */
#define EVENT_FLAGS                                                                                \
    (KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |                           \
     KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM)

struct snap_vcpu_arch {
    struct kvm_mp_state mp;
    struct kvm_regs regs;
    struct kvm_sregs sregs;
    struct kvm_xcrs xcrs;
    struct kvm_debugregs dregs;
    struct kvm_lapic_state lapic;
    struct kvm_vcpu_events events;
    uint32_t tsc_khz;
    uint32_t xsave_size;
    struct kvm_xsave *xsave; /* xsave_size bytes */
    struct kvm_cpuid2 *cpuid;
    struct kvm_msrs *msrs;
};

struct snap_vm_arch {
    struct kvm_irqchip pic[2];
    struct kvm_irqchip ioapic;
    struct kvm_pit_state2 pit;
    struct kvm_clock_data clock;
};

uint32_t snap_arch_host(void)
{
    return SNAP_ARCH_X86_64;
}

/* One line into err, returning ret (snap_fail returns -EINVAL: this is for -ENOMEM). */
#define SAY(ret, ...) (snap_fail(err, errlen, __VA_ARGS__), (ret))

/* KVM refused an ioctl: one line naming it; returns -errno. */
static int refused(char *err, size_t errlen, const char *what)
{
    int e = errno;

    snap_fail(err, errlen, "%s refused the saved state: %s", what, strerror(e));
    return -e;
}

/* ---- saving ---- */

/* A KVM structure goes in as its size, then its bytes: a reader with another layout notices. */
static void put_blob(struct snap_buf *b, const void *p, size_t n)
{
    snap_put_u32(b, (uint32_t)n);
    snap_put_bytes(b, p, n);
}

#define GET(fd, req, arg)                                                                          \
    do {                                                                                           \
        if (ioctl(fd, req, arg) < 0) {                                                             \
            err = -errno;                                                                          \
            log_err("snapshot: vCPU %d: " #req ": %s", v->index, strerror(-err));                  \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

/* KVM's list of MSRs to save, minus those this vCPU cannot read (features it lacks): each
 * KVM_GET_MSRS stops at the first MSR it refuses, which is then left out. */
static struct kvm_msrs *read_msrs(struct vcpu *v)
{
    struct kvm_msr_list *list = calloc(1, sizeof(*list) + MAX_MSRS * sizeof(uint32_t));
    struct kvm_msrs *m = NULL, *rest = NULL;
    uint32_t n, done = 0;

    if (!list)
        goto oom;
    list->nmsrs = MAX_MSRS;
    if (ioctl(v->vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
        log_err("snapshot: KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
        goto fail;
    }
    n = list->nmsrs;
    m = calloc(1, sizeof(*m) + n * sizeof(m->entries[0]));
    rest = calloc(1, sizeof(*rest) + n * sizeof(rest->entries[0]));
    if (!m || !rest)
        goto oom;
    for (uint32_t i = 0; i < n; i++)
        m->entries[i].index = list->indices[i];
    while (done < n) {
        int r;

        rest->nmsrs = n - done;
        memcpy(rest->entries, &m->entries[done], (n - done) * sizeof(m->entries[0]));
        r = ioctl(v->fd, KVM_GET_MSRS, rest);
        if (r < 0) {
            log_err("snapshot: vCPU %d: KVM_GET_MSRS: %s", v->index, strerror(errno));
            goto fail;
        }
        memcpy(&m->entries[done], rest->entries, (size_t)r * sizeof(m->entries[0]));
        done += (uint32_t)r;
        if (done < n) {
            log_debug("snapshot: vCPU %d: MSR %#x cannot be read; not saved", v->index,
                      m->entries[done].index);
            memmove(&m->entries[done], &m->entries[done + 1],
                    (n - done - 1) * sizeof(m->entries[0]));
            n--;
        }
    }
    m->nmsrs = n;
    free(rest);
    free(list);
    return m;
oom:
    log_err("snapshot: out of memory for the MSR list");
fail:
    free(rest);
    free(m);
    free(list);
    return NULL;
}

static int xsave_size(int kvm_fd)
{
    int n = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);

    return n > XSAVE_MIN ? n : XSAVE_MIN;
}

int snap_arch_save_vcpu(struct vcpu *v, struct snap_buf *b)
{
    struct snap_vcpu_arch *a = calloc(1, sizeof(*a));
    int fd = v->fd, err = -ENOMEM, xs = xsave_size(v->vm->kvm_fd), khz;

    if (!a)
        goto oom;
    a->xsave = calloc(1, (size_t)xs);
    a->cpuid = calloc(1, sizeof(*a->cpuid) + MAX_CPUID * sizeof(a->cpuid->entries[0]));
    if (!a->xsave || !a->cpuid)
        goto oom;
    /* MP state first: reading it makes KVM take pending INIT/SIPI, which changes the rest. */
    GET(fd, KVM_GET_MP_STATE, &a->mp);
    GET(fd, KVM_GET_REGS, &a->regs);
    GET(fd, KVM_GET_SREGS, &a->sregs);
    if (xs > XSAVE_MIN)
        GET(fd, KVM_GET_XSAVE2, a->xsave);
    else
        GET(fd, KVM_GET_XSAVE, a->xsave);
    GET(fd, KVM_GET_XCRS, &a->xcrs);
    GET(fd, KVM_GET_DEBUGREGS, &a->dregs);
    GET(fd, KVM_GET_LAPIC, &a->lapic);
    a->cpuid->nent = MAX_CPUID;
    GET(fd, KVM_GET_CPUID2, a->cpuid);
    GET(fd, KVM_GET_VCPU_EVENTS, &a->events);
    khz = ioctl(fd, KVM_GET_TSC_KHZ, 0);
    if (khz <= 0) {
        err = khz < 0 ? -errno : -EINVAL;
        log_err("snapshot: vCPU %d: KVM_GET_TSC_KHZ: %s", v->index, strerror(-err));
        goto out;
    }
    a->msrs = read_msrs(v);
    if (!a->msrs) {
        err = -EIO;
        goto out;
    }
    put_blob(b, &a->mp, sizeof(a->mp));
    put_blob(b, &a->regs, sizeof(a->regs));
    put_blob(b, &a->sregs, sizeof(a->sregs));
    put_blob(b, a->xsave, (size_t)xs);
    put_blob(b, &a->xcrs, sizeof(a->xcrs));
    put_blob(b, &a->dregs, sizeof(a->dregs));
    put_blob(b, &a->lapic, sizeof(a->lapic));
    put_blob(b, &a->events, sizeof(a->events));
    snap_put_u32(b, (uint32_t)khz);
    snap_put_u32(b, a->cpuid->nent);
    snap_put_bytes(b, a->cpuid->entries, a->cpuid->nent * sizeof(a->cpuid->entries[0]));
    snap_put_u32(b, a->msrs->nmsrs);
    for (uint32_t i = 0; i < a->msrs->nmsrs; i++) {
        snap_put_u32(b, a->msrs->entries[i].index);
        snap_put_u64(b, a->msrs->entries[i].data);
    }
    err = 0;
    goto out;
oom:
    log_err("snapshot: out of memory for vCPU %d's state", v->index);
out:
    snap_arch_free_vcpu(a);
    return err;
}
#undef GET

int snap_arch_save_vm(struct vm *vm, struct snap_buf *b)
{
    struct snap_vm_arch a;
    const char *what = NULL;

    memset(&a, 0, sizeof(a));
    a.pic[0].chip_id = KVM_IRQCHIP_PIC_MASTER;
    a.pic[1].chip_id = KVM_IRQCHIP_PIC_SLAVE;
    a.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
    if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &a.pic[0]) < 0 ||
        ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &a.pic[1]) < 0 ||
        ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &a.ioapic) < 0)
        what = "KVM_GET_IRQCHIP";
    else if (ioctl(vm->vm_fd, KVM_GET_PIT2, &a.pit) < 0)
        what = "KVM_GET_PIT2";
    else if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &a.clock) < 0)
        what = "KVM_GET_CLOCK";
    if (what) {
        int err = -errno;

        log_err("snapshot: %s: %s", what, strerror(-err));
        return err;
    }
    put_blob(b, &a.pic[0].chip.pic, sizeof(a.pic[0].chip.pic));
    put_blob(b, &a.pic[1].chip.pic, sizeof(a.pic[1].chip.pic));
    put_blob(b, &a.ioapic.chip.ioapic, sizeof(a.ioapic.chip.ioapic));
    put_blob(b, &a.pit, sizeof(a.pit));
    snap_put_u64(b, a.clock.clock);
    return 0;
}

/* ---- decoding and checking ---- */

static bool get_blob(struct snap_reader *r, void *dst, size_t n)
{
    if (snap_get_u32(r) != n) {
        r->bad = true;
        return false;
    }
    snap_get_bytes(r, dst, n);
    return !r->bad;
}

void snap_arch_free_vcpu(struct snap_vcpu_arch *a)
{
    if (!a)
        return;
    free(a->xsave);
    free(a->cpuid);
    free(a->msrs);
    free(a);
}

void snap_arch_free_vm(struct snap_vm_arch *a)
{
    free(a);
}

/* The fixed-size structures, in order: which one did not fit says where the file is bad. */
static int decode_fixed(struct snap_reader *r, struct snap_vcpu_arch *a, char *err, size_t errlen)
{
    static const char *const what[] = {"MP state", "registers", "special registers"};
    void *dst[] = {&a->mp, &a->regs, &a->sregs};
    size_t size[] = {sizeof(a->mp), sizeof(a->regs), sizeof(a->sregs)};
    uint32_t xs;

    for (int i = 0; i < 3; i++)
        if (!get_blob(r, dst[i], size[i]))
            return snap_fail(err, errlen, "%s: not %zu bytes as this ember's KVM has them", what[i],
                             size[i]);
    xs = snap_get_u32(r);
    if (xs < XSAVE_MIN || xs > XSAVE_MAX || xs % 64)
        return snap_fail(err, errlen, "XSAVE area of %u bytes (expected %d to %d)", xs, XSAVE_MIN,
                         XSAVE_MAX);
    a->xsave_size = xs;
    a->xsave = calloc(1, xs);
    if (!a->xsave)
        return SAY(-ENOMEM, "out of memory");
    snap_get_bytes(r, a->xsave, xs);
    if (!get_blob(r, &a->xcrs, sizeof(a->xcrs)) || !get_blob(r, &a->dregs, sizeof(a->dregs)) ||
        !get_blob(r, &a->lapic, sizeof(a->lapic)) || !get_blob(r, &a->events, sizeof(a->events)))
        return snap_fail(err, errlen, "XCRs, debug registers, LAPIC or events: wrong size");
    return 0;
}

/* What KVM would refuse, or what would reach past the guest's own state. */
static int check_vcpu(const struct snap_vcpu_arch *a, char *err, size_t errlen)
{
    uint64_t base = a->sregs.apic_base;

    if (a->mp.mp_state > KVM_MP_STATE_SIPI_RECEIVED)
        return snap_fail(err, errlen, "MP state %u is not one ember saves", a->mp.mp_state);
    if ((base & APIC_BASE_MASK) != LAPIC_GPA || (base & ~APIC_BASE_MASK & ~APIC_BASE_BITS))
        return snap_fail(err, errlen, "APIC base %#llx: the LAPIC must stay at %#llx",
                         (unsigned long long)base, LAPIC_GPA);
    if (a->xcrs.nr_xcrs > KVM_MAX_XCRS || a->xcrs.flags)
        return snap_fail(err, errlen, "%u XCRs (at most %d)", a->xcrs.nr_xcrs, KVM_MAX_XCRS);
    if (a->dregs.flags || (a->dregs.dr6 >> 32) || (a->dregs.dr7 >> 32))
        return snap_fail(err, errlen, "debug registers DR6 %#llx DR7 %#llx: reserved bits set",
                         (unsigned long long)a->dregs.dr6, (unsigned long long)a->dregs.dr7);
    if (a->events.flags & ~EVENT_FLAGS)
        return snap_fail(err, errlen, "pending events: unknown flags %#x", a->events.flags);
    if (a->events.exception.injected && a->events.exception.nr >= 32)
        return snap_fail(err, errlen, "pending exception %u is not an exception vector",
                         a->events.exception.nr);
    if (a->tsc_khz == 0 || a->tsc_khz > TSC_KHZ_MAX)
        return snap_fail(err, errlen, "TSC rate of %u kHz", a->tsc_khz);
    return 0;
}

int snap_arch_decode_vcpu(const struct snap_section *s, struct snap_vcpu_arch **out, char *err,
                          size_t errlen)
{
    struct snap_vcpu_arch *a = calloc(1, sizeof(*a));
    struct snap_reader r;
    uint32_t nent, nmsrs;
    int ret;

    *out = NULL;
    if (!a)
        return SAY(-ENOMEM, "out of memory");
    if (s->version != SNAP_VCPU_VERSION) {
        ret = snap_fail(err, errlen, "version %u; this ember reads version %d", s->version,
                        SNAP_VCPU_VERSION);
        goto fail;
    }
    snap_reader_init(&r, s);
    ret = decode_fixed(&r, a, err, errlen);
    if (ret)
        goto fail;
    a->tsc_khz = snap_get_u32(&r);
    nent = snap_get_u32(&r);
    if (nent > MAX_CPUID) {
        ret = snap_fail(err, errlen, "%u CPUID entries (at most %d)", nent, MAX_CPUID);
        goto fail;
    }
    a->cpuid = calloc(1, sizeof(*a->cpuid) + nent * sizeof(a->cpuid->entries[0]));
    if (!a->cpuid) {
        ret = SAY(-ENOMEM, "out of memory");
        goto fail;
    }
    a->cpuid->nent = nent;
    snap_get_bytes(&r, a->cpuid->entries, nent * sizeof(a->cpuid->entries[0]));
    nmsrs = snap_get_u32(&r);
    if (nmsrs > MAX_MSRS) {
        ret = snap_fail(err, errlen, "%u MSRs (at most %d)", nmsrs, MAX_MSRS);
        goto fail;
    }
    a->msrs = calloc(1, sizeof(*a->msrs) + nmsrs * sizeof(a->msrs->entries[0]));
    if (!a->msrs) {
        ret = SAY(-ENOMEM, "out of memory");
        goto fail;
    }
    a->msrs->nmsrs = nmsrs;
    for (uint32_t i = 0; i < nmsrs; i++) {
        a->msrs->entries[i].index = snap_get_u32(&r);
        a->msrs->entries[i].data = snap_get_u64(&r);
    }
    if (!snap_reader_done(&r)) {
        ret = snap_fail(err, errlen, "%s", r.bad ? "truncated" : "bytes left after the MSRs");
        goto fail;
    }
    ret = check_vcpu(a, err, errlen);
    if (ret)
        goto fail;
    *out = a;
    return 0;
fail:
    snap_arch_free_vcpu(a);
    return ret;
}

static int check_pit(const struct kvm_pit_state2 *p, char *err, size_t errlen)
{
    if (p->flags & ~(KVM_PIT_FLAGS_HPET_LEGACY | KVM_PIT_FLAGS_SPEAKER_DATA_ON))
        return snap_fail(err, errlen, "PIT flags %#x", p->flags);
    for (int i = 0; i < 3; i++) {
        const struct kvm_pit_channel_state *c = &p->channels[i];

        /* mode 0xff: never programmed (how KVM resets a channel) */
        if ((c->mode > 5 && c->mode != 0xff) || c->count > 0x10000 || c->rw_mode > 3 ||
            c->read_state > 4 || c->write_state > 4 || c->bcd > 1 || c->gate > 1)
            return snap_fail(
                    err, errlen,
                    "PIT channel %d: mode %u count %u rw %u read %u write %u bcd %u gate %u "
                    "out of range",
                    i, c->mode, c->count, c->rw_mode, c->read_state, c->write_state, c->bcd,
                    c->gate);
    }
    return 0;
}

int snap_arch_decode_vm(const struct snap_section *s, struct snap_vm_arch **out, char *err,
                        size_t errlen)
{
    struct snap_vm_arch *a = calloc(1, sizeof(*a));
    struct snap_reader r;
    int ret = -EINVAL;

    *out = NULL;
    if (!a)
        return SAY(-ENOMEM, "out of memory");
    if (s->version != SNAP_VM_VERSION) {
        snap_fail(err, errlen, "version %u; this ember reads version %d", s->version,
                  SNAP_VM_VERSION);
        goto fail;
    }
    snap_reader_init(&r, s);
    a->pic[0].chip_id = KVM_IRQCHIP_PIC_MASTER;
    a->pic[1].chip_id = KVM_IRQCHIP_PIC_SLAVE;
    a->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
    if (!get_blob(&r, &a->pic[0].chip.pic, sizeof(a->pic[0].chip.pic)) ||
        !get_blob(&r, &a->pic[1].chip.pic, sizeof(a->pic[1].chip.pic)) ||
        !get_blob(&r, &a->ioapic.chip.ioapic, sizeof(a->ioapic.chip.ioapic)) ||
        !get_blob(&r, &a->pit, sizeof(a->pit))) {
        snap_fail(err, errlen, "PIC, IOAPIC or PIT state: wrong size");
        goto fail;
    }
    a->clock.clock = snap_get_u64(&r);
    if (!snap_reader_done(&r)) {
        snap_fail(err, errlen, "%s", r.bad ? "truncated" : "bytes left after the clock");
        goto fail;
    }
    if (a->ioapic.chip.ioapic.base_address != IOAPIC_GPA) {
        snap_fail(err, errlen, "IOAPIC at %#llx: it must stay at %#llx",
                  (unsigned long long)a->ioapic.chip.ioapic.base_address, IOAPIC_GPA);
        goto fail;
    }
    ret = check_pit(&a->pit, err, errlen);
    if (ret)
        goto fail;
    *out = a;
    return 0;
fail:
    free(a);
    return ret;
}

/* ---- restoring ---- */

/* MSRs KVM lists for saving on this host: a snapshot may set those and no others. */
static int check_msrs(struct vcpu *v, const struct kvm_msrs *m, char *err, size_t errlen)
{
    struct kvm_msr_list *list = calloc(1, sizeof(*list) + MAX_MSRS * sizeof(uint32_t));
    int ret = 0;

    if (!list)
        return SAY(-ENOMEM, "out of memory");
    list->nmsrs = MAX_MSRS;
    if (ioctl(v->vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
        ret = refused(err, errlen, "KVM_GET_MSR_INDEX_LIST");
        goto out;
    }
    for (uint32_t i = 0; i < m->nmsrs && !ret; i++) {
        uint32_t j = 0;

        while (j < list->nmsrs && list->indices[j] != m->entries[i].index)
            j++;
        if (j == list->nmsrs)
            ret = snap_fail(err, errlen, "MSR %#x is not one this host's KVM saves",
                            m->entries[i].index);
    }
out:
    free(list);
    return ret;
}

#define SET(fd, req, arg)                                                                          \
    do {                                                                                           \
        if (ioctl(fd, req, arg) < 0)                                                               \
            return refused(err, errlen, #req);                                                     \
    } while (0)

int snap_arch_restore_vcpu(struct vcpu *v, const struct snap_vcpu_arch *a, char *err, size_t errlen)
{
    int fd = v->fd, khz, r;

    if (a->xsave_size > (uint32_t)xsave_size(v->vm->kvm_fd))
        return snap_fail(err, errlen,
                         "XSAVE area of %u bytes; this host's KVM has %d (another CPU model)",
                         a->xsave_size, xsave_size(v->vm->kvm_fd));
    r = check_msrs(v, a->msrs, err, errlen);
    if (r)
        return r;
    SET(fd, KVM_SET_CPUID2, a->cpuid);
    khz = ioctl(fd, KVM_GET_TSC_KHZ, 0);
    if (khz > 0 && (uint32_t)khz != a->tsc_khz && ioctl(fd, KVM_SET_TSC_KHZ, a->tsc_khz) < 0) {
        r = refused(err, errlen, "KVM_SET_TSC_KHZ");
        snprintf(err + strlen(err), errlen - strlen(err),
                 " (the snapshot's TSC ran at %u kHz, this host's runs at %d)", a->tsc_khz, khz);
        return r;
    }
    /* The order KVM needs: MP state and registers, then the LAPIC before the MSRs (the TSC
     * deadline needs the LAPIC's mode), pending events last. */
    SET(fd, KVM_SET_MP_STATE, &a->mp);
    SET(fd, KVM_SET_REGS, &a->regs);
    SET(fd, KVM_SET_SREGS, &a->sregs);
    SET(fd, KVM_SET_XSAVE, a->xsave);
    SET(fd, KVM_SET_XCRS, &a->xcrs);
    SET(fd, KVM_SET_DEBUGREGS, &a->dregs);
    SET(fd, KVM_SET_LAPIC, &a->lapic);
    r = ioctl(fd, KVM_SET_MSRS, a->msrs);
    if (r < 0)
        return refused(err, errlen, "KVM_SET_MSRS");
    if ((uint32_t)r != a->msrs->nmsrs)
        return snap_fail(err, errlen, "KVM_SET_MSRS refused MSR %#x (value %#llx)",
                         a->msrs->entries[r].index, (unsigned long long)a->msrs->entries[r].data);
    SET(fd, KVM_SET_VCPU_EVENTS, &a->events);
    return 0;
}

int snap_arch_restore_vm(struct vm *vm, const struct snap_vm_arch *a, char *err, size_t errlen)
{
    int fd = vm->vm_fd;
    struct kvm_clock_data clock = {.clock = a->clock.clock};

    SET(fd, KVM_SET_PIT2, &a->pit);
    SET(fd, KVM_SET_IRQCHIP, &a->pic[0]);
    SET(fd, KVM_SET_IRQCHIP, &a->pic[1]);
    SET(fd, KVM_SET_IRQCHIP, &a->ioapic);
    SET(fd, KVM_SET_CLOCK, &clock);
    return 0;
}
#undef SET
