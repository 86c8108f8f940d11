/* Unit tests for the aarch64 device tree: parse the blob back with libfdt and compare it node by
 * node, property by property, with what the description asks for; dtc must decompile it
 * without a warning. */
#include "boot/aarch64/fdt.h"
#include "boot/aarch64/layout.h"
#include "check.h"

#include <errno.h>
#include <libfdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint8_t blob[A64_DTB_MAX] __attribute__((aligned(8)));

/* ---- an expected tree: nodes by path, each with its exact property list ---- */

#define MAX_PROPS 12
#define MAX_NODES 120

struct want_prop {
    const char *name;
    uint8_t value[256];
    int len;
};

struct want_node {
    char path[96];
    struct want_prop prop[MAX_PROPS];
    int nr_props;
    int seen;
};

static struct want_node want[MAX_NODES];
static int nr_want;

static struct want_node *node(const char *fmt, unsigned long long a)
{
    struct want_node *n = &want[nr_want++];

    memset(n, 0, sizeof(*n));
    snprintf(n->path, sizeof(n->path), fmt, a);
    return n;
}

static struct want_prop *prop(struct want_node *n, const char *name)
{
    struct want_prop *p = &n->prop[n->nr_props++];

    p->name = name;
    p->len = 0;
    return p;
}

static void p_empty(struct want_node *n, const char *name)
{
    prop(n, name);
}

static void p_str(struct want_node *n, const char *name, const char *s)
{
    struct want_prop *p = prop(n, name);

    p->len = (int)strlen(s) + 1;
    memcpy(p->value, s, (size_t)p->len);
}

/* Big-endian cells: n 32-bit values. */
static void p_cells(struct want_node *n, const char *name, int count, const uint32_t *cells)
{
    struct want_prop *p = prop(n, name);

    for (int i = 0; i < count; i++) {
        fdt32_t be = cpu_to_fdt32(cells[i]);

        memcpy(p->value + 4 * i, &be, 4);
    }
    p->len = 4 * count;
}

static void p_u32(struct want_node *n, const char *name, uint32_t v)
{
    p_cells(n, name, 1, &v);
}

static void p_u64(struct want_node *n, const char *name, uint64_t v)
{
    uint32_t c[2] = {(uint32_t)(v >> 32), (uint32_t)v};

    p_cells(n, name, 2, c);
}

static void p_reg(struct want_node *n, uint64_t base, uint64_t size)
{
    uint32_t c[4] = {(uint32_t)(base >> 32), (uint32_t)base, (uint32_t)(size >> 32),
                     (uint32_t)size};

    p_cells(n, "reg", 4, c);
}

static void p_bytes(struct want_node *n, const char *name, const uint8_t *b, int len)
{
    struct want_prop *p = prop(n, name);

    memcpy(p->value, b, (size_t)len);
    p->len = len;
}

/* The tree fdt_build must make for m, written out independently of fdt.c. */
static void expect_tree(const struct fdt_machine *m)
{
    struct want_node *n;
    char uart[64];

    nr_want = 0;
    snprintf(uart, sizeof(uart), "/serial@%llx", (unsigned long long)m->uart.base);
    n = node("/", 0);
    p_str(n, "compatible", "ember,microvm");
    p_str(n, "model", "ember microVM");
    p_u32(n, "#address-cells", 2);
    p_u32(n, "#size-cells", 2);
    p_u32(n, "interrupt-parent", 1);

    n = node("/chosen", 0);
    p_str(n, "bootargs", m->bootargs);
    if (m->uart.size)
        p_str(n, "stdout-path", uart);
    if (m->initrd_size) {
        p_u64(n, "linux,initrd-start", m->initrd_start);
        p_u64(n, "linux,initrd-end", m->initrd_start + m->initrd_size);
    }
    p_bytes(n, "rng-seed", m->rng_seed, FDT_RNG_SEED);
    if (m->uart.size) {
        n = node("/aliases", 0);
        p_str(n, "serial0", uart);
    }

    n = node("/memory@%llx", m->ram_base);
    p_str(n, "device_type", "memory");
    p_reg(n, m->ram_base, m->ram_size);

    n = node("/cpus", 0);
    p_u32(n, "#address-cells", 1);
    p_u32(n, "#size-cells", 0);
    for (int i = 0; i < m->nr_cpus; i++) {
        uint32_t hwid = (uint32_t)(m->mpidr[i] & 0xffffff);

        n = node("/cpus/cpu@%llx", hwid);
        p_str(n, "device_type", "cpu");
        p_str(n, "compatible", "arm,arm-v8");
        p_u32(n, "reg", hwid);
        p_str(n, "enable-method", "psci");
    }

    n = node("/psci", 0);
    p_str(n, "compatible", "arm,psci-0.2");
    p_str(n, "method", "hvc");

    n = node("/interrupt-controller@%llx", m->gicd_base);
    p_str(n, "compatible", "arm,gic-v3");
    p_u32(n, "#interrupt-cells", 3);
    p_empty(n, "interrupt-controller");
    p_u32(n, "#address-cells", 0);
    {
        uint32_t c[8] = {(uint32_t)(m->gicd_base >> 32), (uint32_t)m->gicd_base,
                         (uint32_t)(m->gicd_size >> 32), (uint32_t)m->gicd_size,
                         (uint32_t)(m->gicr_base >> 32), (uint32_t)m->gicr_base,
                         (uint32_t)(m->gicr_size >> 32), (uint32_t)m->gicr_size};

        p_cells(n, "reg", 8, c);
    }
    p_u32(n, "phandle", 1);

    n = node("/timer", 0);
    p_str(n, "compatible", "arm,armv8-timer");
    {
        /* PPI 13, 14, 11, 10 (secure, non-secure, virtual, hyp), level high. */
        uint32_t c[12] = {1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4};

        p_cells(n, "interrupts", 12, c);
    }
    p_empty(n, "always-on");

    if (m->uart.size) {
        uint32_t irq[3] = {0, m->uart.spi, 4};

        n = node("/serial@%llx", m->uart.base);
        p_str(n, "compatible", "ns16550a");
        p_reg(n, m->uart.base, m->uart.size);
        p_u32(n, "clock-frequency", 1843200);
        p_cells(n, "interrupts", 3, irq);
    }
    if (m->pvpanic_base) {
        n = node("/pvpanic@%llx", m->pvpanic_base);
        p_str(n, "compatible", "qemu,pvpanic-mmio");
        p_reg(n, m->pvpanic_base, 2);
    }
    for (int i = 0; i < m->nr_virtio; i++) {
        uint32_t irq[3] = {0, m->virtio[i].spi, 1}; /* edge rising */

        n = node("/virtio_mmio@%llx", m->virtio[i].base);
        p_str(n, "compatible", "virtio,mmio");
        p_reg(n, m->virtio[i].base, m->virtio[i].size);
        p_cells(n, "interrupts", 3, irq);
        p_empty(n, "dma-coherent");
    }
}

/* Walk every node of the blob: each must be expected, with exactly the expected properties;
 * every expected node must be there. */
static void compare_tree(const void *fdt)
{
    char path[128];
    int off = 0, depth = 0, nodes = 0;

    for (int i = 0; i < nr_want; i++)
        want[i].seen = 0;
    CHECK_EQ(fdt_check_header(fdt), 0);
    while (off >= 0 && depth >= 0) {
        struct want_node *w = NULL;
        int poff, nprops = 0;

        nodes++;
        CHECK_EQ(fdt_get_path(fdt, off, path, sizeof(path)), 0);
        for (int i = 0; i < nr_want; i++)
            if (strcmp(want[i].path, path) == 0)
                w = &want[i];
        if (!w) {
            fprintf(stderr, "unexpected node %s\n", path);
            CHECK(w != NULL);
            off = fdt_next_node(fdt, off, &depth);
            continue;
        }
        CHECK_EQ(w->seen, 0);
        w->seen = 1;
        fdt_for_each_property_offset(poff, fdt, off)
        {
            const char *name;
            int len;
            const void *val = fdt_getprop_by_offset(fdt, poff, &name, &len);
            const struct want_prop *p = NULL;

            nprops++;
            for (int i = 0; i < w->nr_props; i++)
                if (strcmp(w->prop[i].name, name) == 0)
                    p = &w->prop[i];
            if (!p) {
                fprintf(stderr, "%s: unexpected property %s\n", path, name);
                CHECK(p != NULL);
                continue;
            }
            if (len != p->len || memcmp(val, p->value, (size_t)len) != 0) {
                fprintf(stderr, "%s: property %s differs (length %d, want %d)\n", path, name, len,
                        p->len);
                CHECK(0);
            }
        }
        if (nprops != w->nr_props)
            fprintf(stderr, "%s: %d properties, want %d\n", path, nprops, w->nr_props);
        CHECK_EQ(nprops, w->nr_props);
        off = fdt_next_node(fdt, off, &depth);
    }
    CHECK_EQ(nodes, nr_want);
    for (int i = 0; i < nr_want; i++) {
        if (!want[i].seen)
            fprintf(stderr, "missing node %s\n", want[i].path);
        CHECK(want[i].seen);
    }
}

/* dtc must read the blob back without a single warning. */
static void check_dtc(const void *fdt, int size)
{
    char path[] = "/tmp/ember-test-fdt-XXXXXX", cmd[256], out[4096];
    int fd = mkstemp(path);
    size_t got;
    FILE *p;

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK_EQ(write(fd, fdt, (size_t)size), size);
    close(fd);
    snprintf(cmd, sizeof(cmd), "dtc -I dtb -O dts -o /dev/null %s 2>&1", path);
    p = popen(cmd, "r");
    CHECK(p != NULL);
    if (p) {
        int st;

        got = fread(out, 1, sizeof(out) - 1, p);
        out[got] = '\0';
        st = pclose(p);
        if (st != 0 || got)
            fprintf(stderr, "%s: exit status %d, said: %s%s\n", cmd, st, out,
                    st == 127 << 8 ? " (install device-tree-compiler)" : "");
        CHECK_EQ(st, 0);
        CHECK_EQ(got, 0);
    }
    unlink(path);
}

/* A machine like the one ember builds: 2 vCPUs, UART, pvpanic, three virtio devices, initrd. */
static void typical(struct fdt_machine *m)
{
    memset(m, 0, sizeof(*m));
    m->ram_base = A64_RAM_BASE;
    m->ram_size = 512ULL << 20;
    m->nr_cpus = 2;
    m->mpidr[0] = 0x80000000ULL;
    m->mpidr[1] = 0x80000001ULL;
    m->gicd_base = A64_GICD_BASE;
    m->gicd_size = A64_GICD_SIZE;
    m->gicr_base = A64_GICR_BASE;
    m->gicr_size = 2 * A64_GICR_STRIDE;
    m->uart = (struct fdt_mmio_dev){A64_UART_GPA, A64_UART_SIZE, A64_SPI_UART};
    m->pvpanic_base = A64_PVPANIC_GPA;
    m->nr_virtio = 3;
    for (int i = 0; i < 3; i++)
        m->virtio[i] =
                (struct fdt_mmio_dev){A64_VIRTIO_MMIO_BASE + (uint64_t)i * A64_VIRTIO_MMIO_SIZE,
                                      A64_VIRTIO_MMIO_SIZE, (uint32_t)(A64_SPI_VIRTIO_FIRST + i)};
    m->bootargs = "console=ttyS0 quiet -- sh -c \"echo 'hi'\"";
    m->initrd_start = A64_RAM_BASE + (400ULL << 20);
    m->initrd_size = 12345;
    for (int i = 0; i < FDT_RNG_SEED; i++)
        m->rng_seed[i] = (uint8_t)(0xa5 ^ i);
}

static void build_and_compare(const struct fdt_machine *m, const char *what)
{
    int size = fdt_build(m, blob, sizeof(blob));

    if (size <= 0)
        fprintf(stderr, "%s: fdt_build returned %d\n", what, size);
    CHECK(size > 0);
    if (size <= 0)
        return;
    CHECK_EQ(fdt_totalsize(blob), (uint32_t)size);
    CHECK_EQ(fdt_version(blob), 17);
    CHECK_EQ(fdt_num_mem_rsv(blob), 0);
    expect_tree(m);
    compare_tree(blob);
    check_dtc(blob, size);
}

static void test_typical(void)
{
    struct fdt_machine m;

    typical(&m);
    build_and_compare(&m, "typical");
    /* The kernel finds the console and the initrd where /chosen says. */
    CHECK_EQ(fdt_path_offset(blob, "/serial@c0040000") > 0, 1);
    CHECK_EQ(fdt_node_offset_by_compatible(blob, -1, "virtio,mmio") > 0, 1);
    CHECK_EQ(fdt_node_offset_by_phandle(blob, 1),
             fdt_path_offset(blob, "/interrupt-controller@fff00000"));
}

/* Nothing optional: no UART (no stdout-path, no aliases), no pvpanic, no virtio, no initrd. */
static void test_minimal(void)
{
    struct fdt_machine m;

    typical(&m);
    m.nr_cpus = 1;
    m.gicr_size = A64_GICR_STRIDE;
    m.uart.size = 0;
    m.pvpanic_base = 0;
    m.nr_virtio = 0;
    m.initrd_size = 0;
    m.bootargs = "";
    build_and_compare(&m, "minimal");
    CHECK(fdt_path_offset(blob, "/aliases") < 0);
    CHECK(fdt_getprop(blob, fdt_path_offset(blob, "/chosen"), "linux,initrd-start", NULL) == NULL);
}

/* The largest machine: 64 vCPUs in 4 clusters of 16 (KVM's MPIDR: Aff1 = index / 16), 32 virtio
 * devices; it fits well inside the 2 MiB a device tree may take. */
static void test_largest(void)
{
    struct fdt_machine m;
    int size;

    typical(&m);
    m.nr_cpus = FDT_MAX_CPUS;
    for (int i = 0; i < FDT_MAX_CPUS; i++)
        m.mpidr[i] = 0x80000000ULL | (uint64_t)(i / 16) << 8 | (uint64_t)(i % 16);
    m.gicr_size = FDT_MAX_CPUS * A64_GICR_STRIDE;
    m.nr_virtio = FDT_MAX_VIRTIO;
    for (int i = 0; i < FDT_MAX_VIRTIO; i++)
        m.virtio[i] =
                (struct fdt_mmio_dev){A64_VIRTIO_MMIO_BASE + (uint64_t)i * A64_VIRTIO_MMIO_SIZE,
                                      A64_VIRTIO_MMIO_SIZE, (uint32_t)(A64_SPI_VIRTIO_FIRST + i)};
    build_and_compare(&m, "largest");
    CHECK(fdt_path_offset(blob, "/cpus/cpu@30f") > 0);
    size = fdt_build(&m, blob, sizeof(blob));
    CHECK(size > 0 && size < 64 * 1024);
}

/* A buffer too small is -ENOSPC at every size below the blob's, never an overrun. */
static void test_no_space(void)
{
    struct fdt_machine m;
    static uint8_t small[A64_DTB_MAX + 64];
    int size;

    typical(&m);
    size = fdt_build(&m, blob, sizeof(blob));
    CHECK(size > 0);
    for (int cap = 0; cap < size; cap += cap < 128 ? 1 : 61) {
        memset(small, 0x5a, sizeof(small));
        CHECK_EQ(fdt_build(&m, small, (size_t)cap), -ENOSPC);
        for (size_t i = (size_t)cap; i < (size_t)cap + 64; i++)
            if (small[i] != 0x5a) {
                CHECK(small[i] == 0x5a);
                break;
            }
    }
    CHECK_EQ(fdt_build(&m, small, (size_t)size), size);
}

static void test_invalid(void)
{
    struct fdt_machine m;

    typical(&m);
    m.nr_cpus = 0;
    CHECK_EQ(fdt_build(&m, blob, sizeof(blob)), -EINVAL);
    m.nr_cpus = FDT_MAX_CPUS + 1;
    CHECK_EQ(fdt_build(&m, blob, sizeof(blob)), -EINVAL);
    typical(&m);
    m.nr_virtio = FDT_MAX_VIRTIO + 1;
    CHECK_EQ(fdt_build(&m, blob, sizeof(blob)), -EINVAL);
    m.nr_virtio = -1;
    CHECK_EQ(fdt_build(&m, blob, sizeof(blob)), -EINVAL);
    typical(&m);
    m.bootargs = NULL;
    CHECK_EQ(fdt_build(&m, blob, sizeof(blob)), -EINVAL);
    typical(&m);
    m.ram_size = 0;
    CHECK_EQ(fdt_build(&m, blob, sizeof(blob)), -EINVAL);
}

int main(void)
{
    test_typical();
    test_minimal();
    test_largest();
    test_no_space();
    test_invalid();
    return check_done("fdt");
}
