/* The aarch64 guest's device tree, written with libfdt's sequential-write API. */
#include "boot/aarch64/fdt.h"
#include "boot/aarch64/layout.h"

#include <errno.h>
#include <libfdt.h>
#include <stdio.h>

#define GIC_PHANDLE 1

/* Interrupt specifier cells of "arm,gic-v3" (#interrupt-cells = 3): type, number, flags. */
#define GIC_SPI         0
#define GIC_PPI         1
#define IRQ_EDGE_RISING 1
#define IRQ_LEVEL_HIGH  4

/* The timer's PPIs, in the order of the arm,armv8-timer binding. */
static const uint32_t timer_ppis[] = {A64_PPI_TIMER_SEC_PHYS, A64_PPI_TIMER_PHYS,
                                      A64_PPI_TIMER_VIRT, A64_PPI_TIMER_HYP};

/* Every libfdt call returns 0 or -FDT_ERR_*; the first failure ends the build. */
#define TRY(call)                                                                                  \
    do {                                                                                           \
        int try_err_ = (call);                                                                     \
        if (try_err_ < 0)                                                                          \
            return try_err_;                                                                       \
    } while (0)

/* "reg" with #address-cells = #size-cells = 2. */
static int prop_reg(void *fdt, uint64_t base, uint64_t size)
{
    fdt64_t cells[2] = {cpu_to_fdt64(base), cpu_to_fdt64(size)};

    return fdt_property(fdt, "reg", cells, sizeof(cells));
}

static int prop_irq(void *fdt, uint32_t type, uint32_t nr, uint32_t flags)
{
    fdt32_t cells[3] = {cpu_to_fdt32(type), cpu_to_fdt32(nr), cpu_to_fdt32(flags)};

    return fdt_property(fdt, "interrupts", cells, sizeof(cells));
}

static int begin_node_at(void *fdt, const char *name, uint64_t addr)
{
    char node[64];

    snprintf(node, sizeof(node), "%s@%llx", name, (unsigned long long)addr);
    return fdt_begin_node(fdt, node);
}

static int add_chosen(void *fdt, const struct fdt_machine *m, const char *uart_path)
{
    TRY(fdt_begin_node(fdt, "chosen"));
    TRY(fdt_property_string(fdt, "bootargs", m->bootargs));
    if (uart_path[0])
        TRY(fdt_property_string(fdt, "stdout-path", uart_path));
    if (m->initrd_size) {
        TRY(fdt_property_u64(fdt, "linux,initrd-start", m->initrd_start));
        TRY(fdt_property_u64(fdt, "linux,initrd-end", m->initrd_start + m->initrd_size));
    }
    TRY(fdt_property(fdt, "rng-seed", m->rng_seed, sizeof(m->rng_seed)));
    return fdt_end_node(fdt);
}

static int add_cpus(void *fdt, const struct fdt_machine *m)
{
    TRY(fdt_begin_node(fdt, "cpus"));
    TRY(fdt_property_u32(fdt, "#address-cells", 1));
    TRY(fdt_property_u32(fdt, "#size-cells", 0));
    for (int i = 0; i < m->nr_cpus; i++) {
        /* Aff2.Aff1.Aff0: one cell; KVM leaves Aff3 zero below 2^20 vCPUs. */
        uint32_t hwid = (uint32_t)(m->mpidr[i] & 0xffffffULL);
        char node[32];

        snprintf(node, sizeof(node), "cpu@%x", hwid);
        TRY(fdt_begin_node(fdt, node));
        TRY(fdt_property_string(fdt, "device_type", "cpu"));
        TRY(fdt_property_string(fdt, "compatible", "arm,arm-v8"));
        TRY(fdt_property_u32(fdt, "reg", hwid));
        TRY(fdt_property_string(fdt, "enable-method", "psci"));
        TRY(fdt_end_node(fdt));
    }
    return fdt_end_node(fdt);
}

static int add_gic(void *fdt, const struct fdt_machine *m)
{
    fdt64_t reg[4] = {cpu_to_fdt64(m->gicd_base), cpu_to_fdt64(m->gicd_size),
                      cpu_to_fdt64(m->gicr_base), cpu_to_fdt64(m->gicr_size)};

    TRY(begin_node_at(fdt, "interrupt-controller", m->gicd_base));
    TRY(fdt_property_string(fdt, "compatible", "arm,gic-v3"));
    TRY(fdt_property_u32(fdt, "#interrupt-cells", 3));
    TRY(fdt_property(fdt, "interrupt-controller", NULL, 0));
    /* No child nodes (no ITS) and no interrupt-map through it: no address cells. */
    TRY(fdt_property_u32(fdt, "#address-cells", 0));
    TRY(fdt_property(fdt, "reg", reg, sizeof(reg)));
    TRY(fdt_property_u32(fdt, "phandle", GIC_PHANDLE));
    return fdt_end_node(fdt);
}

static int add_timer(void *fdt)
{
    fdt32_t cells[3 * 4];

    for (int i = 0; i < 4; i++) {
        cells[3 * i] = cpu_to_fdt32(GIC_PPI);
        cells[3 * i + 1] = cpu_to_fdt32(timer_ppis[i]);
        cells[3 * i + 2] = cpu_to_fdt32(IRQ_LEVEL_HIGH);
    }
    TRY(fdt_begin_node(fdt, "timer"));
    TRY(fdt_property_string(fdt, "compatible", "arm,armv8-timer"));
    TRY(fdt_property(fdt, "interrupts", cells, sizeof(cells)));
    TRY(fdt_property(fdt, "always-on", NULL, 0));
    return fdt_end_node(fdt);
}

static int add_devices(void *fdt, const struct fdt_machine *m)
{
    if (m->uart.size) {
        TRY(begin_node_at(fdt, "serial", m->uart.base));
        TRY(fdt_property_string(fdt, "compatible", "ns16550a"));
        TRY(prop_reg(fdt, m->uart.base, m->uart.size));
        TRY(fdt_property_u32(fdt, "clock-frequency", A64_UART_CLOCK_HZ));
        TRY(prop_irq(fdt, GIC_SPI, m->uart.spi, IRQ_LEVEL_HIGH));
        TRY(fdt_end_node(fdt));
    }
    if (m->pvpanic_base) {
        TRY(begin_node_at(fdt, "pvpanic", m->pvpanic_base));
        TRY(fdt_property_string(fdt, "compatible", "qemu,pvpanic-mmio"));
        TRY(prop_reg(fdt, m->pvpanic_base, A64_PVPANIC_SIZE));
        TRY(fdt_end_node(fdt));
    }
    for (int i = 0; i < m->nr_virtio; i++) {
        const struct fdt_mmio_dev *d = &m->virtio[i];

        TRY(begin_node_at(fdt, "virtio_mmio", d->base));
        TRY(fdt_property_string(fdt, "compatible", "virtio,mmio"));
        TRY(prop_reg(fdt, d->base, d->size));
        /* irqfd pulses the line: an edge. */
        TRY(prop_irq(fdt, GIC_SPI, d->spi, IRQ_EDGE_RISING));
        /* KVM guests see memory coherently: no cache maintenance for the rings. */
        TRY(fdt_property(fdt, "dma-coherent", NULL, 0));
        TRY(fdt_end_node(fdt));
    }
    return 0;
}

static int build(const struct fdt_machine *m, void *fdt, size_t cap)
{
    char uart_path[64] = "";

    if (m->uart.size)
        snprintf(uart_path, sizeof(uart_path), "/serial@%llx", (unsigned long long)m->uart.base);
    TRY(fdt_create(fdt, (int)cap));
    TRY(fdt_finish_reservemap(fdt));
    TRY(fdt_begin_node(fdt, ""));
    TRY(fdt_property_string(fdt, "compatible", "ember,microvm"));
    TRY(fdt_property_string(fdt, "model", "ember microVM"));
    TRY(fdt_property_u32(fdt, "#address-cells", 2));
    TRY(fdt_property_u32(fdt, "#size-cells", 2));
    TRY(fdt_property_u32(fdt, "interrupt-parent", GIC_PHANDLE));
    TRY(add_chosen(fdt, m, uart_path));
    if (uart_path[0]) {
        /* serial0: Linux numbers the port ttyS0 by it. */
        TRY(fdt_begin_node(fdt, "aliases"));
        TRY(fdt_property_string(fdt, "serial0", uart_path));
        TRY(fdt_end_node(fdt));
    }
    TRY(begin_node_at(fdt, "memory", m->ram_base));
    TRY(fdt_property_string(fdt, "device_type", "memory"));
    TRY(prop_reg(fdt, m->ram_base, m->ram_size));
    TRY(fdt_end_node(fdt));
    TRY(add_cpus(fdt, m));
    TRY(fdt_begin_node(fdt, "psci"));
    TRY(fdt_property_string(fdt, "compatible", "arm,psci-0.2"));
    TRY(fdt_property_string(fdt, "method", "hvc"));
    TRY(fdt_end_node(fdt));
    TRY(add_gic(fdt, m));
    TRY(add_timer(fdt));
    TRY(add_devices(fdt, m));
    TRY(fdt_end_node(fdt));
    return fdt_finish(fdt);
}

int fdt_build(const struct fdt_machine *m, void *buf, size_t cap)
{
    int err;

    if (m->nr_cpus < 1 || m->nr_cpus > FDT_MAX_CPUS || m->nr_virtio < 0 ||
        m->nr_virtio > FDT_MAX_VIRTIO || !m->bootargs || m->ram_size == 0 || cap > INT32_MAX)
        return -EINVAL;
    err = build(m, buf, cap);
    if (err == -FDT_ERR_NOSPACE)
        return -ENOSPC;
    if (err < 0)
        return -EINVAL;
    return (int)fdt_totalsize(buf);
}
