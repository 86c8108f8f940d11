/* Unit tests for the PL061 GPIO controller (the aarch64 power button): ID registers, masked
 * data reads, edge and level interrupts as Linux's pl061 driver sets them up, the press and its
 * timed release through the event loop. */
#include "check.h"
#include "fake_vm.h"
#include "pl061.h"

#include <errno.h>
#include <time.h>

#define BASE 0xc0042000ULL

static struct fake_vm fv;
static struct pl061 g;

static uint8_t rd(uint64_t off)
{
    return (uint8_t)fake_rdn(&fv, BASE, off, 1);
}

static void wr(uint64_t off, uint8_t v)
{
    fake_wrn(&fv, BASE, off, v, 1);
}

/* The AMBA bus identifies the PrimeCell by these before the driver binds. */
static void test_ids(void)
{
    static const uint8_t want[8] = {0x61, 0x10, 0x04, 0x00, 0x0d, 0xf0, 0x05, 0xb1};

    for (int i = 0; i < 8; i++)
        CHECK_EQ((uint32_t)fake_rdn(&fv, BASE, 0xfe0 + 4ULL * i, 4), want[i]);
}

/* gpio-keys on line 3: both edges, as the driver asks (IS = 0, IBE = 1), unmasked. */
static void test_both_edges(void)
{
    const uint8_t bit = 1u << PL061_POWER_LINE;

    wr(0x404, 0);   /* IS: edge */
    wr(0x408, bit); /* IBE: both edges */
    wr(0x410, bit); /* IE */
    CHECK_EQ(rd(0x414), 0);
    CHECK_EQ(g.irq_level, 0);
    pl061_set_input(&g, PL061_POWER_LINE, 1);
    CHECK_EQ(rd(0x414), bit);
    CHECK_EQ(rd(0x418), bit);
    CHECK_EQ(g.irq_level, 1);
    /* The data register reads a line only when its address bit selects it. */
    CHECK_EQ(rd(bit << 2), bit);
    CHECK_EQ(rd(0x3fc), bit);
    CHECK_EQ(rd((bit >> 1) << 2), 0);
    wr(0x41c, bit); /* IC: acknowledged */
    CHECK_EQ(rd(0x414), 0);
    CHECK_EQ(g.irq_level, 0);
    pl061_set_input(&g, PL061_POWER_LINE, 0); /* the falling edge interrupts too */
    CHECK_EQ(rd(0x418), bit);
    CHECK_EQ(g.irq_level, 1);
    wr(0x41c, bit);
    /* Masked: latched in RIS, no interrupt. */
    wr(0x410, 0);
    pl061_set_input(&g, PL061_POWER_LINE, 1);
    CHECK_EQ(rd(0x414), bit);
    CHECK_EQ(rd(0x418), 0);
    CHECK_EQ(g.irq_level, 0);
    wr(0x41c, bit);
    pl061_set_input(&g, PL061_POWER_LINE, 0);
    wr(0x41c, bit);
}

/* Rising edge only, then a high level: the level stays pending until the line drops. */
static void test_rising_and_level(void)
{
    const uint8_t bit = 1u << 5;

    wr(0x408, 0);   /* IBE off */
    wr(0x40c, bit); /* IEV: rising / high */
    wr(0x410, bit);
    pl061_set_input(&g, 5, 1);
    CHECK_EQ(g.irq_level, 1);
    wr(0x41c, bit);
    pl061_set_input(&g, 5, 0); /* falling: not asked for */
    CHECK_EQ(g.irq_level, 0);
    wr(0x404, bit); /* IS: level */
    pl061_set_input(&g, 5, 1);
    CHECK_EQ(g.irq_level, 1);
    wr(0x41c, bit); /* a level cannot be acknowledged away */
    CHECK_EQ(g.irq_level, 1);
    pl061_set_input(&g, 5, 0);
    CHECK_EQ(g.irq_level, 0);
    wr(0x410, 0);
    wr(0x404, 0);
}

/* Output lines read back what was written, through the same address mask. */
static void test_outputs(void)
{
    wr(0x400, 0x03); /* lines 0 and 1 are outputs */
    wr(0x3fc, 0xff); /* write all: only outputs keep it */
    CHECK_EQ(rd(0x3fc), 0x03);
    wr(0x1 << 2, 0x00); /* clear line 0 only */
    CHECK_EQ(rd(0x3fc), 0x02);
    wr(0x400, 0);
}

static double now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* Read the power line the way Linux's driver does (its address bit only). */
static int line_high(void)
{
    return rd((1u << PL061_POWER_LINE) << 2) != 0;
}

/* A press raises the line at once; the key stays down until the guest has read the line (a
 * slow guest must not miss it), then comes up at the next PL061_PRESS_MS tick of the loop. */
static void test_press(void)
{
    const uint8_t bit = 1u << PL061_POWER_LINE;
    double t0 = now_ms();

    wr(0x408, bit);
    wr(0x410, bit);
    CHECK_EQ(pl061_power_button(&g), 0);
    CHECK_EQ(g.irq_level, 1);
    wr(0x41c, bit);
    /* Nobody reads the line: the key stays down over several ticks. */
    while (now_ms() - t0 < 3 * PL061_PRESS_MS)
        CHECK_EQ(fake_vm_run(&fv, 1, 20), 0);
    CHECK(g.in & bit);
    CHECK(line_high()); /* the driver samples it ... */
    t0 = now_ms();
    while ((g.in & bit) && now_ms() - t0 < 2000)
        CHECK_EQ(fake_vm_run(&fv, 1, 50), 0);
    CHECK(!line_high()); /* ... and at the next tick the key comes up */
    CHECK(now_ms() - t0 <= 2 * PL061_PRESS_MS + 50);
    CHECK_EQ(g.irq_level, 1); /* the release is an edge the driver sees too */
    CHECK_EQ(g.presses, 1);
    wr(0x41c, bit);
    /* Stays up: the timer was stopped. */
    CHECK_EQ(fake_vm_run(&fv, 3, 2 * PL061_PRESS_MS), 0);
    CHECK(!(g.in & bit));
}

int main(void)
{
    struct pl061 none = {0};

    fake_vm_init(&fv, 1ULL << 20);
    CHECK_EQ(pl061_power_button(&none), -ENODEV);
    CHECK_EQ(pl061_init(&g, &fv.vm, &fv.loop, BASE, 2), 0);
    test_ids();
    test_both_edges();
    test_rising_and_level();
    test_outputs();
    test_press();
    pl061_destroy(&g);
    pl061_destroy(&g); /* twice is harmless */
    fake_vm_free(&fv);
    return check_done("pl061");
}
