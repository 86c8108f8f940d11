/* ACPI tables for ember's hardware-reduced x86_64 microVMs: RSDP, XSDT, FADT, MADT, DSDT. */
#include <errno.h>
#include <string.h>

#include "acpi.h"
#include "aml.h"
#include "layout.h"

#define OEM_ID           "EMBER "
#define OEM_TABLE_ID     "EMBERVM "
#define OEM_REVISION     1
#define CREATOR_ID       "EMBR"
#define CREATOR_REVISION 1
#define HYPERVISOR_ID    "EMBERVMM"

/* Sizes. Every table after the RSDP starts TABLE_ALIGN-aligned in the buffer. */
#define RSDP_V1_LEN     20 /* the part covered by the ACPI 1.0 checksum */
#define RSDP_LEN        36
#define HDR_LEN         36                /* System Description Table header */
#define XSDT_LEN        (HDR_LEN + 2 * 8) /* FADT, MADT */
#define FADT_LEN        276               /* ACPI 6.x, FADT revision 6 */
#define MADT_FIXED_LEN  44
#define MADT_LAPIC_LEN  8
#define MADT_IOAPIC_LEN 12
#define TABLE_ALIGN     8
#define RSDP_ALIGN      16

/* Revisions: ACPI 6.3. */
#define RSDP_REVISION      2
#define XSDT_REVISION      1
#define FADT_REVISION      6
#define FADT_MINOR_VERSION 3
#define MADT_REVISION      5
#define DSDT_REVISION      2 /* 64-bit AML integers */

/* System Description Table header. */
#define HDR_LENGTH   4
#define HDR_REVISION 8
#define HDR_CHECKSUM 9
#define HDR_OEM_ID   10

/* RSDP fields. */
#define RSDP_CHECKSUM     8
#define RSDP_OEM_ID       9
#define RSDP_REVISION_OFF 15
#define RSDP_LENGTH       20
#define RSDP_XSDT         24
#define RSDP_EXT_CHECKSUM 32

/* FADT fields used (all others are zero: no FACS, no SCI, no fixed hardware). */
#define FADT_DSDT              40
#define FADT_IAPC_BOOT_ARCH    109
#define FADT_FLAGS             112
#define FADT_MINOR_VERSION_OFF 131
#define FADT_X_DSDT            140
#define FADT_SLEEP_CONTROL_REG 244
#define FADT_SLEEP_STATUS_REG  256
#define FADT_HYPERVISOR_ID     268

/* FADT flags: no fixed power/sleep buttons (in hardware-reduced mode the power button is a
 * control-method device, PNP0C0C behind the GED), and no fixed ACPI hardware at all. */
#define FADT_F_PWR_BUTTON      (1u << 4)
#define FADT_F_SLP_BUTTON      (1u << 5)
#define FADT_F_HW_REDUCED_ACPI (1u << 20)

/* IA-PC boot architecture flags. LEGACY_DEVICES and 8042 stay clear: there is no ISA bus to
 * enumerate and ember's i8042 only implements the reset command (unless told i8042.nopnp,
 * Linux then does not probe it; reboot=k still writes 0xfe to port 0x64). There is no VGA, no
 * PCI (hence no MSI and no ASPM) and no CMOS RTC (Linux then does not register rtc_cmos). */
#define IAPC_VGA_NOT_PRESENT      (1u << 2)
#define IAPC_MSI_NOT_SUPPORTED    (1u << 3)
#define IAPC_PCIE_ASPM_CONTROLS   (1u << 4)
#define IAPC_CMOS_RTC_NOT_PRESENT (1u << 5)

/* Generic Address Structure. */
#define GAS_SYSTEM_IO   1
#define GAS_ACCESS_BYTE 1

/*
 * MADT. PCAT_COMPAT is set because the VM does have a dual 8259 (KVM_CREATE_IRQCHIP creates
 * one next to the I/O APIC) and the OS must mask it when it uses the APICs: KVM's 8259 starts
 * unmasked with vector base 0, so an OS that leaves it alone (as some do when the flag is
 * clear, which is what Firecracker reports) takes GSI n < 16 a second time as exception
 * vector n through LINT0. Linux ignores the flag in hardware-reduced mode.
 *
 * No Interrupt Source Overrides: KVM's default GSI routing connects GSI n to I/O APIC pin n
 * (and to 8259 pin n for n < 16), the in-kernel PIT included (GSI 0, pin 0), so the identity
 * mapping the OS assumes without overrides is exactly right. Devices describe their own
 * trigger mode and polarity with Extended Interrupt descriptors in the DSDT.
 *
 * The I/O APIC ID is 0: the value KVM's I/O APIC ID register holds after reset (as QEMU and
 * Firecracker report it). I/O APIC and local APIC IDs are separate name spaces on xAPIC.
 */
#define MADT_LAPIC_ADDR    36
#define MADT_FLAGS         40
#define MADT_PCAT_COMPAT   1u
#define MADT_TYPE_LAPIC    0
#define MADT_TYPE_IOAPIC   1
#define MADT_LAPIC_ENABLED 1u
#define MADT_IOAPIC_ID     0

/* Interrupts in the DSDT: edge-triggered, active high, exclusive. Edges are what an irqfd
 * (or KVM_IRQ_LINE 1 then 0) delivers, and what Linux's evged and virtio_mmio handle. */
#define DSDT_IRQ_FLAGS AML_IRQ_EDGE

#define NOTIFY_BUTTON_PRESSED        0x80 /* Notify value: power button pressed */
#define STA_PRESENT_ENABLED_SHOWN_OK 0x0f
#define FOUR_GIB                     (1ull << 32)
#define IO_SPACE_END                 0x10000u
#define APIC_PAGE_SIZE               0x1000u
#define SERIAL_PORT_SPAN             8

struct range {
    uint64_t base;
    uint64_t size;
};

/* Where each table goes, as offsets into the caller's buffer. */
struct layout {
    size_t xsdt, fadt, madt, dsdt, end;
    size_t madt_len, dsdt_len;
};

static void put8(uint8_t *p, uint8_t v)
{
    p[0] = v;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static size_t align_up(size_t v, size_t a)
{
    return (v + a - 1) / a * a;
}

/* Store the byte at p[off] that makes p[0..len) sum to zero. */
static void set_checksum(uint8_t *p, size_t len, size_t off)
{
    uint8_t sum = 0;

    p[off] = 0;
    for (size_t i = 0; i < len; i++)
        sum = (uint8_t)(sum + p[i]);
    p[off] = (uint8_t)(0x100 - sum);
}

/* ---- configuration checks ---- */

static int gsi_ok(uint32_t gsi, uint32_t *taken)
{
    if (gsi >= ACPI_IOAPIC_PINS || gsi == 0 || gsi == 2 || (*taken & (1u << gsi)))
        return 0;
    *taken |= 1u << gsi;
    return 1;
}

static int ranges_overlap(const struct range *r, int n)
{
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < i; j++) {
            if (r[i].base < r[j].base + r[j].size && r[j].base < r[i].base + r[i].size)
                return 1;
        }
    }
    return 0;
}

static int check_irqs(const struct acpi_config *cfg)
{
    uint32_t taken = 0;

    if (cfg->serial_port && !gsi_ok(cfg->serial_irq, &taken))
        return -EINVAL;
    if (cfg->ged_addr && !gsi_ok(cfg->ged_irq, &taken))
        return -EINVAL;
    for (int i = 0; i < cfg->nr_virtio; i++) {
        if (!gsi_ok(cfg->virtio[i].irq, &taken))
            return -EINVAL;
    }
    return 0;
}

static int check_ports(const struct acpi_config *cfg)
{
    struct range r[4];
    int n = 0;

    if ((cfg->sleep_ctl_port == 0) != (cfg->sleep_sts_port == 0))
        return -EINVAL;
    if (cfg->serial_port)
        r[n++] = (struct range){cfg->serial_port, SERIAL_PORT_SPAN};
    if (cfg->pvpanic_port)
        r[n++] = (struct range){cfg->pvpanic_port, 1};
    if (cfg->sleep_ctl_port) {
        r[n++] = (struct range){cfg->sleep_ctl_port, 1};
        r[n++] = (struct range){cfg->sleep_sts_port, 1};
    }
    for (int i = 0; i < n; i++) {
        if (r[i].base + r[i].size > IO_SPACE_END)
            return -EINVAL;
    }
    return ranges_overlap(r, n) ? -EINVAL : 0;
}

static int check_mmio(const struct acpi_config *cfg)
{
    struct range r[ACPI_MAX_VIRTIO + 3];
    int n = 0;

    r[n++] = (struct range){IOAPIC_GPA, APIC_PAGE_SIZE};
    r[n++] = (struct range){LAPIC_GPA, APIC_PAGE_SIZE};
    if (cfg->ged_addr) {
        if (cfg->ged_addr == UINT64_MAX)
            return -EINVAL;
        r[n++] = (struct range){cfg->ged_addr, 1};
    }
    for (int i = 0; i < cfg->nr_virtio; i++) {
        const struct acpi_mmio_dev *d = &cfg->virtio[i];

        if (d->addr == 0 || d->size == 0 || d->addr >= FOUR_GIB || d->size > FOUR_GIB - d->addr)
            return -EINVAL;
        r[n++] = (struct range){d->addr, d->size};
    }
    return ranges_overlap(r, n) ? -EINVAL : 0;
}

static int check_config(const struct acpi_config *cfg)
{
    int err;

    if (cfg->ncpus < 1 || cfg->ncpus > 255)
        return -EINVAL;
    if (cfg->nr_virtio < 0 || cfg->nr_virtio > ACPI_MAX_VIRTIO)
        return -EINVAL;
    if (cfg->nr_virtio > 0 && !cfg->virtio)
        return -EINVAL;
    err = check_irqs(cfg);
    if (!err)
        err = check_ports(cfg);
    if (!err)
        err = check_mmio(cfg);
    return err;
}

/* ---- DSDT contents (AML) ---- */

/* Device (COM1): the 16550 at serial_port. Linux's 8250_pnp binds to PNP0501 and takes the
 * port and the interrupt from _CRS. */
static void dsdt_serial(struct aml *a, const struct acpi_config *cfg)
{
    size_t dev, crs;

    dev = aml_device_begin(a, "COM1");
    aml_name_eisaid(a, "_HID", "PNP0501");
    aml_name_integer(a, "_UID", 1);
    aml_name(a, "_CRS");
    crs = aml_restemplate_begin(a);
    aml_io(a, cfg->serial_port, cfg->serial_port, 1, SERIAL_PORT_SPAN);
    aml_interrupt(a, DSDT_IRQ_FLAGS, cfg->serial_irq);
    aml_restemplate_end(a, crs);
    aml_device_end(a, dev);
}

/* Device (PEVT): pvpanic. Linux's pvpanic-mmio driver matches QEMU0001 and accepts an I/O
 * port or an MMIO resource. */
static void dsdt_pvpanic(struct aml *a, const struct acpi_config *cfg)
{
    size_t dev, crs;

    dev = aml_device_begin(a, "PEVT");
    aml_name_str(a, "_HID", "QEMU0001");
    aml_name_integer(a, "_STA", STA_PRESENT_ENABLED_SHOWN_OK);
    aml_name(a, "_CRS");
    crs = aml_restemplate_begin(a);
    aml_io(a, cfg->pvpanic_port, cfg->pvpanic_port, 1, 1);
    aml_restemplate_end(a, crs);
    aml_device_end(a, dev);
}

/* Device (Vnnn): a virtio-mmio transport. Linux's virtio_mmio binds to LNRO0005 and takes the
 * first memory and interrupt resources. */
static void dsdt_virtio(struct aml *a, int index, const struct acpi_mmio_dev *d)
{
    char name[5] = {'V', (char)('0' + index / 100), (char)('0' + index / 10 % 10),
                    (char)('0' + index % 10), 0};
    size_t dev, crs;

    dev = aml_device_begin(a, name);
    aml_name_str(a, "_HID", "LNRO0005");
    aml_name_integer(a, "_UID", (uint64_t)index);
    aml_name_integer(a, "_CCA", 1); /* DMA is cache-coherent */
    aml_name(a, "_CRS");
    crs = aml_restemplate_begin(a);
    aml_memory32_fixed(a, 1, (uint32_t)d->addr, d->size);
    aml_interrupt(a, DSDT_IRQ_FLAGS, d->irq);
    aml_restemplate_end(a, crs);
    aml_device_end(a, dev);
}

/* Method (_EVT, 1, Serialized) {
 *     Local0 = GDAT                       // read once: reading acknowledges
 *     If ((Local0 & 1) == 1) { Notify (\_SB.PWRB, 0x80) }
 * } */
static void ged_evt_method(struct aml *a)
{
    size_t method, cond;

    method = aml_method_begin(a, "_EVT", 1, 1);
    aml_store(a);
    aml_name_string(a, "GDAT");
    aml_local(a, 0);
    cond = aml_if_begin(a);
    aml_lequal(a);
    aml_and(a);
    aml_local(a, 0);
    aml_integer(a, ACPI_GED_EVT_PWR_BUTTON);
    aml_null_target(a);
    aml_integer(a, ACPI_GED_EVT_PWR_BUTTON);
    aml_notify(a);
    aml_name_string(a, "\\_SB.PWRB");
    aml_integer(a, NOTIFY_BUTTON_PRESSED);
    aml_if_end(a, cond);
    aml_method_end(a, method);
}

/* Device (PWRB): the power button, a control-method device (PNP0C0C), and Device (GED0): the
 * Generic Event Device (ACPI0013) whose interrupt runs _EVT, which reads the event register
 * at ged_addr and notifies PWRB. */
static void dsdt_ged(struct aml *a, const struct acpi_config *cfg)
{
    size_t dev, crs, field;

    dev = aml_device_begin(a, "PWRB");
    aml_name_eisaid(a, "_HID", "PNP0C0C");
    aml_device_end(a, dev);

    dev = aml_device_begin(a, "GED0");
    aml_name_str(a, "_HID", "ACPI0013");
    aml_name_integer(a, "_UID", 0);
    aml_name(a, "_CRS");
    crs = aml_restemplate_begin(a);
    aml_interrupt(a, DSDT_IRQ_FLAGS, cfg->ged_irq);
    aml_restemplate_end(a, crs);
    aml_opregion(a, "GDST", AML_SPACE_SYSTEM_MEMORY, cfg->ged_addr, 1);
    field = aml_field_begin(a, "GDST", AML_FIELD_BYTE_ACC);
    aml_field_unit(a, "GDAT", 8);
    aml_field_end(a, field);
    ged_evt_method(a);
    aml_device_end(a, dev);
}

/* Name (\_S5, Package () { 5, 0, 0, 0 }): SLP_TYPa = 5 for soft-off. */
static void dsdt_s5(struct aml *a)
{
    size_t pkg;

    aml_name(a, "\\_S5");
    pkg = aml_package_begin(a);
    aml_integer(a, ACPI_SLEEP_TYP_S5);
    aml_integer(a, 0);
    aml_integer(a, 0);
    aml_integer(a, 0);
    aml_package_end(a, pkg, 4);
}

static void dsdt_aml(struct aml *a, const struct acpi_config *cfg)
{
    size_t sb = aml_scope_begin(a, "\\_SB");

    if (cfg->serial_port)
        dsdt_serial(a, cfg);
    if (cfg->pvpanic_port)
        dsdt_pvpanic(a, cfg);
    for (int i = 0; i < cfg->nr_virtio; i++)
        dsdt_virtio(a, i, &cfg->virtio[i]);
    if (cfg->ged_addr)
        dsdt_ged(a, cfg);
    aml_scope_end(a, sb);
    dsdt_s5(a);
}

/* ---- tables ---- */

static void put_header(uint8_t *t, const char sig[4], size_t len, uint8_t revision)
{
    memcpy(t, sig, 4);
    put32(t + HDR_LENGTH, (uint32_t)len);
    put8(t + HDR_REVISION, revision);
    memcpy(t + HDR_OEM_ID, OEM_ID, 6);
    memcpy(t + 16, OEM_TABLE_ID, 8);
    put32(t + 24, OEM_REVISION);
    memcpy(t + 28, CREATOR_ID, 4);
    put32(t + 32, CREATOR_REVISION);
}

static void write_rsdp(uint8_t *t, uint64_t xsdt_gpa)
{
    memcpy(t, "RSD PTR ", 8);
    memcpy(t + RSDP_OEM_ID, OEM_ID, 6);
    put8(t + RSDP_REVISION_OFF, RSDP_REVISION);
    /* RsdtAddress (offset 16) stays 0: there is only an XSDT */
    put32(t + RSDP_LENGTH, RSDP_LEN);
    put64(t + RSDP_XSDT, xsdt_gpa);
    set_checksum(t, RSDP_V1_LEN, RSDP_CHECKSUM);
    set_checksum(t, RSDP_LEN, RSDP_EXT_CHECKSUM);
}

static void write_xsdt(uint8_t *t, uint64_t fadt_gpa, uint64_t madt_gpa)
{
    put_header(t, "XSDT", XSDT_LEN, XSDT_REVISION);
    put64(t + HDR_LEN, fadt_gpa);
    put64(t + HDR_LEN + 8, madt_gpa);
    set_checksum(t, XSDT_LEN, HDR_CHECKSUM);
}

/* A byte-wide register in I/O space, or an all-zero GAS (not implemented) for port 0. */
static void put_gas_io8(uint8_t *p, uint16_t port)
{
    if (!port)
        return;
    put8(p, GAS_SYSTEM_IO);
    put8(p + 1, 8); /* register bit width */
    put8(p + 2, 0); /* bit offset */
    put8(p + 3, GAS_ACCESS_BYTE);
    put64(p + 4, port);
}

static void write_fadt(uint8_t *t, const struct acpi_config *cfg, uint64_t dsdt_gpa)
{
    put_header(t, "FACP", FADT_LEN, FADT_REVISION);
    /* The 32-bit DSDT field holds the same address when it fits (OSPM prefers X_DSDT). */
    if (dsdt_gpa < FOUR_GIB)
        put32(t + FADT_DSDT, (uint32_t)dsdt_gpa);
    put16(t + FADT_IAPC_BOOT_ARCH, IAPC_VGA_NOT_PRESENT | IAPC_MSI_NOT_SUPPORTED |
                                           IAPC_PCIE_ASPM_CONTROLS | IAPC_CMOS_RTC_NOT_PRESENT);
    put32(t + FADT_FLAGS, FADT_F_HW_REDUCED_ACPI | FADT_F_PWR_BUTTON | FADT_F_SLP_BUTTON);
    put8(t + FADT_MINOR_VERSION_OFF, FADT_MINOR_VERSION);
    put64(t + FADT_X_DSDT, dsdt_gpa);
    put_gas_io8(t + FADT_SLEEP_CONTROL_REG, cfg->sleep_ctl_port);
    put_gas_io8(t + FADT_SLEEP_STATUS_REG, cfg->sleep_sts_port);
    memcpy(t + FADT_HYPERVISOR_ID, HYPERVISOR_ID, 8);
    set_checksum(t, FADT_LEN, HDR_CHECKSUM);
}

static size_t madt_len(const struct acpi_config *cfg)
{
    return MADT_FIXED_LEN + (size_t)cfg->ncpus * MADT_LAPIC_LEN + MADT_IOAPIC_LEN;
}

static void write_madt(uint8_t *t, const struct acpi_config *cfg)
{
    size_t len = madt_len(cfg);
    uint8_t *e = t + MADT_FIXED_LEN;

    put_header(t, "APIC", len, MADT_REVISION);
    put32(t + MADT_LAPIC_ADDR, (uint32_t)LAPIC_GPA);
    put32(t + MADT_FLAGS, MADT_PCAT_COMPAT);
    for (int i = 0; i < cfg->ncpus; i++, e += MADT_LAPIC_LEN) {
        put8(e, MADT_TYPE_LAPIC);
        put8(e + 1, MADT_LAPIC_LEN);
        put8(e + 2, (uint8_t)i); /* ACPI processor UID */
        put8(e + 3, (uint8_t)i); /* APIC ID */
        put32(e + 4, MADT_LAPIC_ENABLED);
    }
    put8(e, MADT_TYPE_IOAPIC);
    put8(e + 1, MADT_IOAPIC_LEN);
    put8(e + 2, MADT_IOAPIC_ID);
    put8(e + 3, 0);
    put32(e + 4, (uint32_t)IOAPIC_GPA);
    put32(e + 8, 0); /* GSI base */
    set_checksum(t, len, HDR_CHECKSUM);
}

static int write_dsdt(uint8_t *t, const struct acpi_config *cfg, size_t len)
{
    struct aml a;

    put_header(t, "DSDT", len, DSDT_REVISION);
    aml_init(&a, t + HDR_LEN, len - HDR_LEN);
    dsdt_aml(&a, cfg);
    if (a.err)
        return a.err;
    if (a.len != len - HDR_LEN)
        return -EIO; /* the measuring pass and this one disagree: a builder bug */
    set_checksum(t, len, HDR_CHECKSUM);
    return 0;
}

/* Measure the DSDT and place every table. */
static int plan(const struct acpi_config *cfg, struct layout *l)
{
    struct aml m;

    aml_init(&m, NULL, 0);
    dsdt_aml(&m, cfg);
    if (m.err)
        return m.err;
    l->madt_len = madt_len(cfg);
    l->dsdt_len = HDR_LEN + m.len;
    if (l->dsdt_len > UINT32_MAX)
        return -EINVAL;
    l->xsdt = align_up(RSDP_LEN, TABLE_ALIGN);
    l->fadt = align_up(l->xsdt + XSDT_LEN, TABLE_ALIGN);
    l->madt = align_up(l->fadt + FADT_LEN, TABLE_ALIGN);
    l->dsdt = align_up(l->madt + l->madt_len, TABLE_ALIGN);
    l->end = l->dsdt + l->dsdt_len;
    return 0;
}

int acpi_build(const struct acpi_config *cfg, uint64_t base_gpa, uint8_t *buf, size_t cap,
               size_t *used)
{
    struct layout l;
    int err;

    if (!cfg || !used || (!buf && cap) || base_gpa % RSDP_ALIGN)
        return -EINVAL;
    err = check_config(cfg);
    if (!err)
        err = plan(cfg, &l);
    if (err)
        return err;
    if (l.end > UINT64_MAX - base_gpa)
        return -EINVAL;
    if (l.end > cap) {
        *used = l.end;
        return -ENOSPC;
    }

    memset(buf, 0, l.end);
    write_rsdp(buf, base_gpa + l.xsdt);
    write_xsdt(buf + l.xsdt, base_gpa + l.fadt, base_gpa + l.madt);
    write_fadt(buf + l.fadt, cfg, base_gpa + l.dsdt);
    write_madt(buf + l.madt, cfg);
    err = write_dsdt(buf + l.dsdt, cfg, l.dsdt_len);
    if (err)
        return err;
    *used = l.end;
    return 0;
}
