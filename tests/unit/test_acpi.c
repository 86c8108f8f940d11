/* Unit tests for the ACPI tables (boot/acpi.c) and the AML builder (boot/aml.c), with iasl. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strcasestr, memmem */
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "acpi.h"
#include "aml.h"
#include "check.h"
#include "layout.h"
#include "virtio.h"

extern char **environ;

#define TEST_GED_ADDR 0xc0000f00ULL
#define TEST_GED_IRQ  3
#define GUARD         64
#define GUARD_BYTE    0xa5
#define DIR_MAX       1024 /* temporary directory path, with its NUL */

enum { T_RSDP, T_XSDT, T_FACP, T_APIC, T_DSDT, T_COUNT };
static const char *const table_file[T_COUNT] = {"rsdp", "xsdt", "facp", "apic", "dsdt"};

struct tables {
    size_t off[T_COUNT];
    size_t len[T_COUNT];
};

struct test_cfg {
    struct acpi_config c;
    struct acpi_mmio_dev v[ACPI_MAX_VIRTIO];
};

static int iasl_missing;

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16;
}

static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static uint8_t sum8(const uint8_t *p, size_t n)
{
    uint8_t s = 0;

    while (n--)
        s = (uint8_t)(s + *p++);
    return s;
}

static size_t count_mem(const uint8_t *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle), count = 0;

    for (size_t i = 0; i + k <= n; i++)
        count += memcmp(hay + i, needle, k) == 0;
    return count;
}

static size_t count_str(const char *hay, const char *needle)
{
    return count_mem((const uint8_t *)hay, strlen(hay), needle);
}

static int all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != v)
            return 0;
    }
    return 1;
}

static void make_cfg(struct test_cfg *t, int ncpus, int nvirtio, int serial, int pvpanic, int ged)
{
    memset(t, 0, sizeof(*t));
    for (int i = 0; i < nvirtio && i < ACPI_MAX_VIRTIO; i++) {
        t->v[i].addr = VIRTIO_MMIO_BASE + (uint64_t)i * VIRTIO_MMIO_SIZE;
        t->v[i].size = VIRTIO_MMIO_SIZE;
        t->v[i].irq = VIRTIO_IRQ_FIRST + (uint32_t)i;
    }
    t->c.ncpus = ncpus;
    t->c.virtio = t->v;
    t->c.nr_virtio = nvirtio;
    if (serial) {
        t->c.serial_port = COM1_PORT;
        t->c.serial_irq = COM1_IRQ;
    }
    if (pvpanic)
        t->c.pvpanic_port = PVPANIC_PORT;
    t->c.sleep_ctl_port = ACPI_SLEEP_CTL_PORT;
    t->c.sleep_sts_port = ACPI_SLEEP_STS_PORT;
    if (ged) {
        t->c.ged_addr = TEST_GED_ADDR;
        t->c.ged_irq = TEST_GED_IRQ;
    }
}

/* ---------------------------------------------------------------- AML builder */

static int aml_is(const struct aml *a, const uint8_t *exp, size_t n)
{
    return a->err == 0 && a->len == n && memcmp(a->buf, exp, n) == 0;
}

static void test_pkglen(void)
{
    static const struct {
        uint32_t v;
        size_t n;
        uint8_t b[4];
    } cases[] = {
            {0, 1, {0x00}},
            {63, 1, {0x3f}},
            {64, 2, {0x40, 0x04}},
            {0xfff, 2, {0x4f, 0xff}},
            {0x1000, 3, {0x80, 0x00, 0x01}},
            {0xfffff, 3, {0x8f, 0xff, 0xff}},
            {0x100000, 4, {0xc0, 0x00, 0x00, 0x01}},
            {0xfffffff, 4, {0xcf, 0xff, 0xff, 0xff}},
    };
    uint8_t out[4];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = aml_pkglen_encode(out, cases[i].v);

        CHECK_EQ(n, cases[i].n);
        CHECK(memcmp(out, cases[i].b, cases[i].n) == 0);
    }
    CHECK_EQ(aml_pkglen_encode(out, 0x10000000), 0);
}

static void test_integers(void)
{
    static const struct {
        uint64_t v;
        size_t n;
        uint8_t b[9];
    } cases[] = {
            {0, 1, {0x00}},
            {1, 1, {0x01}},
            {2, 2, {0x0a, 0x02}},
            {0xff, 2, {0x0a, 0xff}},
            {0x100, 3, {0x0b, 0x00, 0x01}},
            {0xffff, 3, {0x0b, 0xff, 0xff}},
            {0x10000, 5, {0x0c, 0x00, 0x00, 0x01, 0x00}},
            {0xffffffff, 5, {0x0c, 0xff, 0xff, 0xff, 0xff}},
            {0x100000000ULL, 9, {0x0e, 0, 0, 0, 0, 1, 0, 0, 0}},
            {UINT64_MAX - 1, 9, {0x0e, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
            {UINT64_MAX, 1, {0xff}},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t buf[16];
        struct aml a;

        aml_init(&a, buf, sizeof(buf));
        aml_integer(&a, cases[i].v);
        CHECK(aml_is(&a, cases[i].b, cases[i].n));
    }
}

static void expect_name(const char *path, const uint8_t *exp, size_t n)
{
    uint8_t buf[32];
    struct aml a;

    aml_init(&a, buf, sizeof(buf));
    aml_name_string(&a, path);
    CHECK(aml_is(&a, exp, n));
}

static void expect_bad(void (*emit)(struct aml *, const char *), const char *arg)
{
    uint8_t buf[32];
    struct aml a;

    aml_init(&a, buf, sizeof(buf));
    emit(&a, arg);
    CHECK_EQ(a.err, -EINVAL);
}

static void test_names(void)
{
    expect_name("_HID", (const uint8_t *)"_HID", 4);
    expect_name("_S5", (const uint8_t *)"_S5_", 4);
    expect_name("\\_SB.PWRB", (const uint8_t *)"\\\x2e_SB_PWRB", 10);
    expect_name("^^AB", (const uint8_t *)"^^AB__", 6);
    expect_name("\\", (const uint8_t *)"\\\0", 2);
    expect_name("A.B.C",
                (const uint8_t *)"\x2f\x03"
                                 "A___B___C___",
                14);
    expect_bad(aml_name_string, "1ABC");
    expect_bad(aml_name_string, "ABCDE");
    expect_bad(aml_name_string, "ab");
    expect_bad(aml_name_string, "A..B");
    expect_bad(aml_name_string, "A.");
    expect_bad(aml_name_string, NULL);
}

static void test_eisaid_and_strings(void)
{
    static const uint8_t pwrb[] = {0x0c, 0x41, 0xd0, 0x0c, 0x0c};
    static const uint8_t com[] = {0x0c, 0x41, 0xd0, 0x05, 0x01};
    static const uint8_t str[] = "\x0dQEMU0001";
    uint8_t buf[32];
    struct aml a;

    aml_init(&a, buf, sizeof(buf));
    aml_eisaid(&a, "PNP0C0C");
    CHECK(aml_is(&a, pwrb, sizeof(pwrb)));
    aml_init(&a, buf, sizeof(buf));
    aml_eisaid(&a, "PNP0501");
    CHECK(aml_is(&a, com, sizeof(com)));
    aml_init(&a, buf, sizeof(buf));
    aml_string(&a, "QEMU0001");
    CHECK(aml_is(&a, str, sizeof(str))); /* prefix, 8 characters and the NUL */
    expect_bad(aml_eisaid, "pnp0501");
    expect_bad(aml_eisaid, "PNP050");
    expect_bad(aml_eisaid, "PNP05G1");
    expect_bad(aml_string, "\x80");
}

/* Decode the PkgLength at p: its value and how many bytes it takes. */
static uint32_t pkglen_decode(const uint8_t *p, size_t *n)
{
    uint32_t v;

    *n = (size_t)(p[0] >> 6) + 1;
    if (*n == 1)
        return p[0] & 0x3f;
    v = p[0] & 0x0f;
    for (size_t i = 1; i < *n; i++)
        v |= (uint32_t)p[i] << (4 + 8 * (i - 1));
    return v;
}

/* A Device whose body grows across the 1/2-byte PkgLength boundary, and Buffers of every
 * size up to 5000 bytes: the PkgLength must cover exactly the rest and be minimal. */
static void test_package_lengths(void)
{
    static uint8_t buf[8192];
    uint8_t filler[5000], enc[4];
    int bad = 0;
    struct aml a;
    size_t m, n;

    memset(filler, 0x01, sizeof(filler));
    aml_init(&a, buf, sizeof(buf));
    m = aml_device_begin(&a, "ABCD");
    aml_bytes(&a, filler, 58); /* body 62: PkgLength 63 fits one byte */
    aml_device_end(&a, m);
    CHECK_EQ(a.len, 65);
    CHECK(buf[0] == 0x5b && buf[1] == 0x82 && buf[2] == 0x3f);

    aml_init(&a, buf, sizeof(buf));
    m = aml_device_begin(&a, "ABCD");
    aml_bytes(&a, filler, 59); /* body 63: needs two bytes, PkgLength 65 */
    aml_device_end(&a, m);
    CHECK_EQ(a.len, 67);
    CHECK(buf[2] == 0x41 && buf[3] == 0x04);

    for (size_t k = 0; k <= sizeof(filler); k++) {
        uint32_t v;

        aml_init(&a, buf, sizeof(buf));
        m = aml_buffer_begin(&a);
        aml_bytes(&a, filler, k);
        aml_buffer_end(&a, m);
        v = pkglen_decode(buf + 1, &n);
        bad += a.err != 0 || buf[0] != 0x11 || v != a.len - 1 || aml_pkglen_encode(enc, v) != n;
    }
    CHECK_EQ(bad, 0);
}

/* A small but nested piece of AML, as the DSDT uses. */
static void emit_sample(struct aml *a)
{
    size_t dev = aml_device_begin(a, "GED0"), crs, meth, cond, pkg;

    aml_name_str(a, "_HID", "ACPI0013");
    aml_name(a, "_CRS");
    crs = aml_restemplate_begin(a);
    aml_interrupt(a, AML_IRQ_EDGE, 9);
    aml_restemplate_end(a, crs);
    meth = aml_method_begin(a, "_EVT", 1, 1);
    cond = aml_if_begin(a);
    aml_lequal(a);
    aml_arg(a, 0);
    aml_integer(a, 9);
    aml_notify(a);
    aml_name_string(a, "^PWRB");
    aml_integer(a, 0x80);
    aml_if_end(a, cond);
    aml_method_end(a, meth);
    aml_device_end(a, dev);
    aml_name(a, "PKG");
    pkg = aml_package_begin(a);
    aml_integer(a, 5);
    aml_string(a, "x");
    aml_package_end(a, pkg, 2);
}

/* Measuring gives the exact size; every smaller buffer fails with -ENOSPC, reports the same
 * size and writes nothing past its capacity. */
static void test_builder_space(void)
{
    uint8_t full[256], buf[256 + GUARD];
    struct aml a;
    size_t need;
    int bad = 0;

    aml_init(&a, NULL, 0);
    emit_sample(&a);
    CHECK_EQ(a.err, 0);
    need = a.len;
    aml_init(&a, full, sizeof(full));
    emit_sample(&a);
    CHECK_EQ(a.err, 0);
    CHECK_EQ(a.len, need);
    for (size_t cap = 0; cap < need; cap++) {
        memset(buf, GUARD_BYTE, sizeof(buf));
        aml_init(&a, buf, cap);
        emit_sample(&a);
        bad += a.err != -ENOSPC || a.len != need || !all_bytes(buf + cap, GUARD, GUARD_BYTE);
    }
    CHECK_EQ(bad, 0);
}

/* ---------------------------------------------------------------- table checks */

/* A System Description Table at gpa: inside the buffer, right signature, summing to zero. */
static int check_table(const uint8_t *buf, size_t used, uint64_t base, uint64_t gpa,
                       const char *sig, struct tables *tb, int idx)
{
    size_t off, len;

    CHECK(gpa >= base && gpa - base + 36 <= used);
    if (!(gpa >= base && gpa - base + 36 <= used))
        return 0;
    off = gpa - base;
    len = rd32(buf + off + 4);
    CHECK(memcmp(buf + off, sig, 4) == 0);
    CHECK(len >= 36 && off + len <= used);
    if (len < 36 || off + len > used)
        return 0;
    CHECK_EQ(sum8(buf + off, len), 0);
    CHECK(memcmp(buf + off + 10, "EMBER ", 6) == 0);
    CHECK(memcmp(buf + off + 16, "EMBERVM ", 8) == 0);
    CHECK_EQ(off % 8, 0);
    tb->off[idx] = off;
    tb->len[idx] = len;
    return 1;
}

static void check_rsdp(const uint8_t *p)
{
    CHECK(memcmp(p, "RSD PTR ", 8) == 0);
    CHECK_EQ(sum8(p, 20), 0);
    CHECK_EQ(sum8(p, 36), 0);
    CHECK_EQ(p[15], 2);
    CHECK_EQ(rd32(p + 20), 36);
    CHECK(memcmp(p + 9, "EMBER ", 6) == 0);
}

static void check_fadt(const uint8_t *f, const struct acpi_config *c, uint64_t dsdt_gpa)
{
    CHECK_EQ(rd32(f + 4), 276);
    CHECK_EQ(f[8], 6);
    CHECK(rd32(f + 112) & (1u << 20)); /* HW_REDUCED_ACPI */
    CHECK_EQ(rd32(f + 36), 0);         /* no FACS */
    CHECK_EQ(rd64(f + 132), 0);
    CHECK_EQ(rd32(f + 40), dsdt_gpa);
    CHECK_EQ(rd64(f + 140), dsdt_gpa);
    CHECK_EQ(f[244], c->sleep_ctl_port ? 1 : 0); /* System I/O */
    CHECK_EQ(f[245], c->sleep_ctl_port ? 8 : 0);
    CHECK_EQ(f[247], c->sleep_ctl_port ? 1 : 0);
    CHECK_EQ(rd64(f + 248), c->sleep_ctl_port);
    CHECK_EQ(f[256], c->sleep_sts_port ? 1 : 0);
    CHECK_EQ(rd64(f + 260), c->sleep_sts_port);
    CHECK(memcmp(f + 268, "EMBERVMM", 8) == 0);
}

static void check_madt(const uint8_t *m, size_t len, int ncpus)
{
    int lapics = 0, ioapics = 0, order_ok = 1;
    size_t off = 44;

    CHECK_EQ(len, 44 + 8 * (size_t)ncpus + 12);
    CHECK_EQ(rd32(m + 36), LAPIC_GPA);
    CHECK_EQ(rd32(m + 40), 1); /* PCAT_COMPAT */
    while (off + 2 <= len && m[off + 1] >= 2 && off + m[off + 1] <= len) {
        const uint8_t *e = m + off;

        if (e[0] == 0 && e[1] == 8) {
            order_ok &= e[2] == lapics && e[3] == lapics && rd32(e + 4) == 1;
            lapics++;
        } else if (e[0] == 1 && e[1] == 12) {
            CHECK_EQ(rd32(e + 4), IOAPIC_GPA);
            CHECK_EQ(rd32(e + 8), 0);
            ioapics++;
        } else {
            CHECK(!"unexpected MADT entry");
        }
        off += e[1];
    }
    CHECK_EQ(off, len);
    CHECK_EQ(lapics, ncpus);
    CHECK_EQ(ioapics, 1);
    CHECK(order_ok);
}

static void check_dsdt(const uint8_t *d, size_t len, const struct acpi_config *c)
{
    static const uint8_t com1[] = {0x41, 0xd0, 0x05, 0x01};

    CHECK_EQ(d[8], 2);
    CHECK_EQ(count_mem(d, len, "LNRO0005"), (size_t)c->nr_virtio);
    CHECK_EQ(count_mem(d, len, "QEMU0001"), c->pvpanic_port ? 1 : 0);
    CHECK_EQ(count_mem(d, len, "ACPI0013"), c->ged_addr ? 1 : 0);
    CHECK_EQ(memmem(d, len, com1, sizeof(com1)) != NULL, c->serial_port != 0);
    CHECK_EQ(count_mem(d, len, "_S5_"), 1);
    CHECK_EQ(count_mem(d, len, "\\_SB_"), 1);                           /* Scope */
    CHECK_EQ(count_mem(d, len, "\\\x2e_SB_PWRB"), c->ged_addr ? 1 : 0); /* Notify target */
}

/* Follow RSDP -> XSDT -> FADT, MADT and FADT -> DSDT, checking everything on the way. */
static int verify(const struct acpi_config *c, uint64_t base, const uint8_t *buf, size_t used,
                  struct tables *tb)
{
    const uint8_t *x, *f;
    int ok = 1;

    memset(tb, 0, sizeof(*tb));
    CHECK(used >= 36);
    if (used < 36)
        return 0;
    check_rsdp(buf);
    tb->len[T_RSDP] = 36;
    ok &= check_table(buf, used, base, rd64(buf + 24), "XSDT", tb, T_XSDT);
    if (!ok)
        return 0;
    x = buf + tb->off[T_XSDT];
    CHECK_EQ(tb->len[T_XSDT], 52);
    ok &= check_table(buf, used, base, rd64(x + 36), "FACP", tb, T_FACP);
    ok &= check_table(buf, used, base, rd64(x + 44), "APIC", tb, T_APIC);
    if (!ok)
        return 0;
    f = buf + tb->off[T_FACP];
    ok &= check_table(buf, used, base, rd64(f + 140), "DSDT", tb, T_DSDT);
    if (!ok)
        return 0;
    check_fadt(f, c, base + tb->off[T_DSDT]);
    check_madt(buf + tb->off[T_APIC], tb->len[T_APIC], c->ncpus);
    check_dsdt(buf + tb->off[T_DSDT], tb->len[T_DSDT], c);
    return 1;
}

/* ---------------------------------------------------------------- iasl round trip */

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *s = NULL;
    long n;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        s = malloc((size_t)n + 1);
        if (s && fread(s, 1, (size_t)n, f) == (size_t)n) {
            s[n] = 0;
        } else {
            free(s);
            s = NULL;
        }
    }
    fclose(f);
    return s;
}

static int write_file(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    int ok;

    if (!f)
        return -errno;
    ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -EIO;
}

/* Run "iasl -d path" with its output in log; returns its exit status, or -1. */
static int run_iasl(const char *path, const char *log)
{
    char *argv[] = {"iasl", "-d", (char *)path, NULL};
    posix_spawn_file_actions_t fa;
    int err, status;
    pid_t pid;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
    err = posix_spawnp(&pid, "iasl", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (err) {
        if (!iasl_missing)
            fprintf(stderr,
                    "test_acpi: cannot run iasl (%s): install it with "
                    "`apt-get install acpica-tools`\n",
                    strerror(err));
        iasl_missing = 1;
        return -1;
    }
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    if (WEXITSTATUS(status) == 127 && !iasl_missing) {
        fprintf(stderr, "test_acpi: iasl not found: install it with "
                        "`apt-get install acpica-tools`\n");
        iasl_missing = 1;
    }
    return WEXITSTATUS(status);
}

static void remove_dir(const char *dir)
{
    char path[DIR_MAX + 256];
    struct dirent *de;
    DIR *d = opendir(dir);

    if (d) {
        while ((de = readdir(d))) {
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
                snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
                unlink(path);
            }
        }
        closedir(d);
    }
    CHECK_EQ(rmdir(dir), 0);
}

/* Disassemble one table; returns the .dsl text (caller frees) or NULL. The RSDP is not
 * fed to iasl: ACPICA only loads tables with a standard header from files. */
static char *disassemble(const char *dir, int idx, const uint8_t *buf, const struct tables *tb)
{
    char dat[DIR_MAX + 16], dsl[DIR_MAX + 16], log[DIR_MAX + 16];
    char *text, *out;
    int rc;

    snprintf(dat, sizeof(dat), "%s/%s.dat", dir, table_file[idx]);
    snprintf(dsl, sizeof(dsl), "%s/%s.dsl", dir, table_file[idx]);
    snprintf(log, sizeof(log), "%s/%s.log", dir, table_file[idx]);
    CHECK_EQ(write_file(dat, buf + tb->off[idx], tb->len[idx]), 0);
    rc = run_iasl(dat, log);
    if (iasl_missing)
        return NULL; /* reported once, and counted as a failure by the caller */
    CHECK_EQ(rc, 0);
    text = read_text(log);
    CHECK(text != NULL);
    if (text) {
        CHECK(!strcasestr(text, "error"));
        CHECK(!strcasestr(text, "warning"));
        CHECK(!strcasestr(text, "incorrect"));
        if (rc != 0 || strcasestr(text, "error") || strcasestr(text, "warning"))
            fprintf(stderr, "iasl -d %s said:\n%s\n", dat, text);
        free(text);
    }
    out = read_text(dsl);
    CHECK(out != NULL);
    if (out) {
        CHECK(!strcasestr(out, "incorrect"));
        CHECK(!strcasestr(out, "error"));
    }
    return out;
}

static void check_dsdt_dsl(const char *s, const struct acpi_config *c)
{
    int irqs = c->nr_virtio + (c->serial_port != 0) + (c->ged_addr != 0);
    char want[128];

    CHECK_EQ(count_str(s, "\"LNRO0005\""), (size_t)c->nr_virtio);
    for (int i = 0; i < c->nr_virtio; i++) {
        snprintf(want, sizeof(want), "0x%08X,         // Address Base",
                 (unsigned)c->virtio[i].addr);
        CHECK_EQ(count_str(s, want), 1);
        snprintf(want, sizeof(want), "Device (V%03d)", i);
        CHECK_EQ(count_str(s, want), 1);
    }
    CHECK_EQ(count_str(s, "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )"),
             (size_t)irqs);
    CHECK_EQ(count_str(s, "EisaId (\"PNP0501\")"), c->serial_port ? 1 : 0);
    CHECK_EQ(count_str(s, "\"QEMU0001\""), c->pvpanic_port ? 1 : 0);
    CHECK_EQ(count_str(s, "\"ACPI0013\""), c->ged_addr ? 1 : 0);
    CHECK_EQ(count_str(s, "EisaId (\"PNP0C0C\")"), c->ged_addr ? 1 : 0);
    CHECK_EQ(count_str(s, "Notify (\\_SB.PWRB, 0x80)"), c->ged_addr ? 1 : 0);
    CHECK_EQ(count_str(s, "Method (_EVT, 1, Serialized)"), c->ged_addr ? 1 : 0);
    if (c->ged_addr) {
        snprintf(want, sizeof(want), "OperationRegion (GDST, SystemMemory, 0x%08llX, One)",
                 (unsigned long long)c->ged_addr);
        CHECK_EQ(count_str(s, want), 1);
    }
    CHECK_EQ(count_str(s, "Name (\\_S5, Package (0x04)"), 1);
    CHECK_EQ(count_str(s, "// _S5_: S5 System State"), 1);
}

static void check_other_dsl(int idx, const char *s, const struct acpi_config *c)
{
    char want[128];

    switch (idx) {
    case T_XSDT:
        CHECK_EQ(count_str(s, "ACPI Table Address"), 2);
        break;
    case T_FACP:
        CHECK_EQ(count_str(s, "Hardware Reduced (V5) : 1"), 1);
        CHECK_EQ(count_str(s, "Control Method Power Button (V1) : 1"), 1);
        CHECK_EQ(count_str(s, "FADT Minor Revision : 03"), 1);
        if (c->sleep_ctl_port) {
            snprintf(want, sizeof(want), "Address : %016X", (unsigned)c->sleep_ctl_port);
            CHECK_EQ(count_str(s, want), 1);
            snprintf(want, sizeof(want), "Address : %016X", (unsigned)c->sleep_sts_port);
            CHECK_EQ(count_str(s, want), 1);
        }
        break;
    case T_APIC:
        CHECK_EQ(count_str(s, "[Processor Local APIC]"), (size_t)c->ncpus);
        CHECK_EQ(count_str(s, "[I/O APIC]"), 1);
        CHECK_EQ(count_str(s, "Local Apic Address : FEE00000"), 1);
        CHECK_EQ(count_str(s, "PC-AT Compatibility : 1"), 1);
        break;
    }
}

static void iasl_roundtrip(const struct acpi_config *c, const uint8_t *buf, const struct tables *tb)
{
    const char *tmp = getenv("TMPDIR");
    char dir[DIR_MAX];
    int n;

    if (!tmp || !*tmp)
        tmp = "/tmp";
    n = snprintf(dir, sizeof(dir), "%s/ember-acpi-XXXXXX", tmp);
    if (n < 0 || (size_t)n >= sizeof(dir))
        snprintf(dir, sizeof(dir), "/tmp/ember-acpi-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    for (int idx = T_XSDT; idx < T_COUNT && !iasl_missing; idx++) {
        char *dsl = disassemble(dir, idx, buf, tb);

        if (!dsl)
            continue;
        if (idx == T_DSDT)
            check_dsdt_dsl(dsl, c);
        else
            check_other_dsl(idx, dsl, c);
        free(dsl);
    }
    CHECK(!iasl_missing);
    remove_dir(dir);
}

/* ---------------------------------------------------------------- acpi_build */

static size_t build_and_verify(const struct acpi_config *c, int with_iasl, struct tables *tb)
{
    static uint8_t buf[ACPI_TABLES_MAX];
    size_t used = 0;
    int rc;

    rc = acpi_build(c, ACPI_TABLES_GPA, buf, sizeof(buf), &used);
    CHECK_EQ(rc, 0);
    if (rc)
        return 0;
    if (verify(c, ACPI_TABLES_GPA, buf, used, tb) && with_iasl)
        iasl_roundtrip(c, buf, tb);
    return used;
}

static void test_configs(void)
{
    static const struct {
        int ncpus, nvirtio, serial, pvpanic, ged;
    } cases[] = {
            {1, 0, 0, 0, 0},   {1, 1, 1, 0, 0},  {2, 1, 1, 0, 0},
            {1, 4, 1, 1, 1},   {4, 4, 1, 1, 1},  {4, 19, 0, 1, 0},
            {64, 19, 1, 1, 1}, {64, 0, 0, 0, 1}, {255, 19, 1, 1, 1},
    };
    struct test_cfg t;
    struct tables tb;
    size_t used;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        make_cfg(&t, cases[i].ncpus, cases[i].nvirtio, cases[i].serial, cases[i].pvpanic,
                 cases[i].ged);
        build_and_verify(&t.c, 1, &tb);
    }

    /* no sleep registers: all-zero GAS in the FADT */
    make_cfg(&t, 2, 2, 1, 1, 1);
    t.c.sleep_ctl_port = t.c.sleep_sts_port = 0;
    build_and_verify(&t.c, 1, &tb);

    /* the sizes quoted in the commit report */
    make_cfg(&t, 1, 4, 0, 0, 0);
    used = build_and_verify(&t.c, 0, &tb);
    printf("acpi: 1 CPU + 4 virtio: %zu bytes (RSDP %zu, XSDT %zu, FADT %zu, MADT %zu, "
           "DSDT %zu)\n",
           used, tb.len[T_RSDP], tb.len[T_XSDT], tb.len[T_FACP], tb.len[T_APIC], tb.len[T_DSDT]);
    make_cfg(&t, 1, 4, 1, 1, 1);
    used = build_and_verify(&t.c, 0, &tb);
    printf("acpi: 1 CPU + 4 virtio + COM1 + pvpanic + GED: %zu bytes (DSDT %zu)\n", used,
           tb.len[T_DSDT]);
    make_cfg(&t, 255, 19, 1, 1, 1);
    used = build_and_verify(&t.c, 0, &tb);
    printf("acpi: 255 CPUs + 19 virtio + all: %zu bytes (MADT %zu, DSDT %zu)\n", used,
           tb.len[T_APIC], tb.len[T_DSDT]);
}

/* Every capacity below the need fails with -ENOSPC, reports the need and writes nothing. */
static void test_nospace(void)
{
    struct test_cfg t;
    size_t need = 0, used;
    uint8_t *buf;
    int bad = 0;

    make_cfg(&t, 64, 19, 1, 1, 1);
    CHECK_EQ(acpi_build(&t.c, ACPI_TABLES_GPA, NULL, 0, &need), -ENOSPC);
    CHECK(need > 0);
    for (size_t cap = 0; cap < need; cap++) {
        buf = malloc(cap + GUARD);
        if (!buf)
            abort();
        memset(buf, GUARD_BYTE, cap + GUARD);
        used = 0;
        bad += acpi_build(&t.c, ACPI_TABLES_GPA, buf, cap, &used) != -ENOSPC;
        bad += used != need || !all_bytes(buf, cap + GUARD, GUARD_BYTE);
        free(buf);
        /* exactly cap bytes, so that ASan sees any write past the end */
        buf = malloc(cap ? cap : 1);
        if (!buf)
            abort();
        bad += acpi_build(&t.c, ACPI_TABLES_GPA, buf, cap, &used) != -ENOSPC;
        free(buf);
    }
    CHECK_EQ(bad, 0);

    buf = malloc(need);
    if (!buf)
        abort();
    CHECK_EQ(acpi_build(&t.c, ACPI_TABLES_GPA, buf, need, &used), 0);
    CHECK_EQ(used, need);
    free(buf);
}

static int build_rc(const struct acpi_config *c, uint64_t base)
{
    static uint8_t buf[ACPI_TABLES_MAX];
    size_t used = 12345;
    int rc;

    memset(buf, GUARD_BYTE, sizeof(buf));
    rc = acpi_build(c, base, buf, sizeof(buf), &used);
    if (rc == -EINVAL) {
        CHECK_EQ(used, 12345);
        CHECK(all_bytes(buf, sizeof(buf), GUARD_BYTE));
    }
    return rc;
}

#define EXPECT_EINVAL(stmt)                                                                        \
    do {                                                                                           \
        make_cfg(&t, 4, 4, 1, 1, 1);                                                               \
        stmt;                                                                                      \
        CHECK_EQ(build_rc(&t.c, ACPI_TABLES_GPA), -EINVAL);                                        \
    } while (0)

static void test_invalid(void)
{
    static uint8_t buf[4096];
    struct test_cfg t;
    size_t used;

    make_cfg(&t, 4, 4, 1, 1, 1);
    CHECK_EQ(build_rc(&t.c, ACPI_TABLES_GPA), 0);
    CHECK_EQ(acpi_build(NULL, ACPI_TABLES_GPA, buf, sizeof(buf), &used), -EINVAL);
    CHECK_EQ(acpi_build(&t.c, ACPI_TABLES_GPA, buf, sizeof(buf), NULL), -EINVAL);
    CHECK_EQ(acpi_build(&t.c, ACPI_TABLES_GPA, NULL, sizeof(buf), &used), -EINVAL);
    CHECK_EQ(build_rc(&t.c, ACPI_TABLES_GPA + 8), -EINVAL);
    CHECK_EQ(build_rc(&t.c, UINT64_MAX & ~15ULL), -EINVAL);

    EXPECT_EINVAL(t.c.ncpus = 0);
    EXPECT_EINVAL(t.c.ncpus = -1);
    EXPECT_EINVAL(t.c.ncpus = 256);
    EXPECT_EINVAL(t.c.nr_virtio = -1);
    EXPECT_EINVAL(t.c.nr_virtio = ACPI_MAX_VIRTIO + 1);
    EXPECT_EINVAL(t.c.virtio = NULL);
    EXPECT_EINVAL(t.v[1].size = 0);
    EXPECT_EINVAL(t.v[1].addr = 0);
    EXPECT_EINVAL(t.v[1].addr = 0xfffff000ULL; t.v[1].size = 0x2000);
    EXPECT_EINVAL(t.v[1].addr = 0x100000000ULL);
    EXPECT_EINVAL(t.v[1].addr = t.v[0].addr + 0x800);
    EXPECT_EINVAL(t.v[1].addr = IOAPIC_GPA);
    EXPECT_EINVAL(t.v[1].addr = LAPIC_GPA - 0x800);
    EXPECT_EINVAL(t.v[1].irq = ACPI_IOAPIC_PINS);
    EXPECT_EINVAL(t.v[1].irq = 0);
    EXPECT_EINVAL(t.v[1].irq = 2);
    EXPECT_EINVAL(t.v[1].irq = t.v[0].irq);
    EXPECT_EINVAL(t.c.serial_irq = t.v[2].irq);
    EXPECT_EINVAL(t.c.ged_irq = t.c.serial_irq);
    EXPECT_EINVAL(t.c.serial_port = 0xfffc);
    EXPECT_EINVAL(t.c.pvpanic_port = COM1_PORT + 1);
    EXPECT_EINVAL(t.c.sleep_sts_port = t.c.sleep_ctl_port);
    EXPECT_EINVAL(t.c.sleep_sts_port = 0);
    EXPECT_EINVAL(t.c.sleep_ctl_port = 0);
    EXPECT_EINVAL(t.c.ged_addr = UINT64_MAX);
    EXPECT_EINVAL(t.c.ged_addr = t.v[3].addr + 4);

    /* what is ignored when its device is absent */
    make_cfg(&t, 4, 4, 0, 0, 0);
    t.c.serial_irq = 99;
    t.c.ged_irq = 99;
    CHECK_EQ(build_rc(&t.c, ACPI_TABLES_GPA), 0);
    make_cfg(&t, 1, 0, 0, 0, 0);
    t.c.virtio = NULL;
    CHECK_EQ(build_rc(&t.c, ACPI_TABLES_GPA), 0);
}

/* The same config gives the same bytes; another base moves only the pointers. */
static void test_deterministic(void)
{
    static uint8_t a[8192], b[8192];
    const uint64_t other = 0x7fff0000ULL;
    struct test_cfg t;
    struct tables tb;
    size_t ua, ub;

    make_cfg(&t, 8, 8, 1, 1, 1);
    memset(a, 1, sizeof(a));
    memset(b, 2, sizeof(b));
    CHECK_EQ(acpi_build(&t.c, ACPI_TABLES_GPA, a, sizeof(a), &ua), 0);
    CHECK_EQ(acpi_build(&t.c, ACPI_TABLES_GPA, b, sizeof(b), &ub), 0);
    CHECK_EQ(ua, ub);
    CHECK(memcmp(a, b, ua) == 0);
    CHECK_EQ(acpi_build(&t.c, other, b, sizeof(b), &ub), 0);
    CHECK_EQ(ua, ub);
    CHECK(verify(&t.c, other, b, ub, &tb));
    CHECK(memcmp(a + tb.off[T_APIC], b + tb.off[T_APIC], tb.len[T_APIC]) == 0);
    CHECK(memcmp(a + tb.off[T_DSDT], b + tb.off[T_DSDT], tb.len[T_DSDT]) == 0);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

/* Random, mostly valid configs: whatever comes back must be consistent. */
static void test_random(void)
{
    static uint8_t buf[8192];
    int bad = 0, outcome[3] = {0};

    for (int iter = 0; iter < 3000; iter++) {
        struct test_cfg t;
        struct tables tb;
        size_t cap = rnd(2) ? sizeof(buf) : rnd(sizeof(buf)), used = 0;
        int ncpus = (int)rnd(260) - 2, nvirtio = (int)rnd(22) - 1;
        int serial = (int)rnd(2), pvpanic = (int)rnd(2), ged = (int)rnd(2);
        int rc;

        make_cfg(&t, ncpus, nvirtio, serial, pvpanic, ged);
        for (int k = rnd(3); k > 0; k--) {
            struct acpi_mmio_dev *d = &t.v[rnd(ACPI_MAX_VIRTIO)];

            d->irq = rnd(26);
            d->size = rnd(2) ? d->size : rnd(0x3000);
        }
        t.c.ged_irq = rnd(4) ? t.c.ged_irq : rnd(26);
        rc = acpi_build(&t.c, ACPI_TABLES_GPA, buf, cap, &used);
        if (rc == 0)
            bad += !verify(&t.c, ACPI_TABLES_GPA, buf, used, &tb) || used > cap;
        else if (rc == -ENOSPC)
            bad += used <= cap;
        else
            bad += rc != -EINVAL;
        outcome[rc == 0 ? 0 : rc == -ENOSPC ? 1 : 2]++;
    }
    CHECK_EQ(bad, 0);
    /* all three outcomes are exercised */
    CHECK(outcome[0] > 100 && outcome[1] > 100 && outcome[2] > 100);
}

static void test_sleep_decode(void)
{
    CHECK(acpi_sleep_ctl_is_poweroff((5 << 2) | 0x20));
    CHECK(acpi_sleep_ctl_is_poweroff(0x80 | (5 << 2) | 0x20));
    CHECK(!acpi_sleep_ctl_is_poweroff(5 << 2));
    CHECK(!acpi_sleep_ctl_is_poweroff((3 << 2) | 0x20));
    CHECK(!acpi_sleep_ctl_is_poweroff(0x20));
}

int main(void)
{
    test_pkglen();
    test_integers();
    test_names();
    test_eisaid_and_strings();
    test_package_lengths();
    test_builder_space();
    test_sleep_decode();
    test_configs();
    test_nospace();
    test_invalid();
    test_deterministic();
    test_random();
    return check_done("acpi");
}
