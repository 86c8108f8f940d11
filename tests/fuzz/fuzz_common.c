/* Shared by ember's libFuzzer targets: a ring image in fake guest RAM, quiet logs, checks. */
#include "fuzz_common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ember's log functions, silenced: a fuzzer feeds millions of bad inputs and each would print
 * a line. Weak, and linked before ember-core: vmm/log.c is not pulled in for them (and if
 * something else pulls it in, its definitions win and the fuzzer is just noisier).
 * EMBER_FUZZ_LOG=1 prints them, to see what a crashing input did. */
static int verbose = -1;

static void vlog(const char *fmt, va_list ap)
{
    if (verbose < 0)
        verbose = getenv("EMBER_FUZZ_LOG") != NULL;
    if (!verbose)
        return;
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

#define QUIET_LOG(name)                                                                            \
    __attribute__((weak)) void name(const char *fmt, ...)                                          \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        vlog(fmt, ap);                                                                             \
        va_end(ap);                                                                                \
    }

QUIET_LOG(log_err)
QUIET_LOG(log_warn)
QUIET_LOG(log_info)
QUIET_LOG(log_debug)

__attribute__((weak)) void log_guest(struct log_limit *lim, enum log_level level, const char *fmt,
                                     ...)
{
    va_list ap;

    (void)lim;
    (void)level;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
}

__attribute__((weak)) int log_errno(const char *what)
{
    int err = errno;

    log_err("%s: %s", what, strerror(err));
    return -err;
}

int fz_parse(const uint8_t *data, size_t size, struct fz_input *in)
{
    if (size < 2)
        return -1;
    in->features = data[0];
    in->nr_avail = data[1];
    in->window = data + 2;
    in->window_len = size - 2 < FZ_WIN_SIZE ? size - 2 : FZ_WIN_SIZE;
    return 0;
}

uint64_t fz_features(struct fake_vm *f, uint64_t base, uint8_t sel, const int *bits, int nbits)
{
    uint64_t offered = fake_offered(f, base), want = 1ULL << VIRTIO_F_VERSION_1;

    for (int i = 0; i < nbits && i < 8; i++)
        if (sel & (1u << i))
            want |= 1ULL << bits[i];
    return want & offered;
}

void fz_load(struct fake_vm *f, const struct fz_input *in)
{
    uint8_t *win = guest_ptr(&f->vm.mem, FZ_DESC, FZ_WIN_SIZE);

    memcpy(win, in->window, in->window_len);
    memset(win + in->window_len, 0, FZ_WIN_SIZE - in->window_len);
    fake_put16(f, FZ_AVAIL + 2, in->nr_avail);
    fake_put16(f, FZ_USED + 2, 0); /* the device never reads it; tests compare against it */
}

void fz_start_two_queues(struct fake_vm *f, uint64_t features, int fuzzed,
                         const struct fz_input *in, struct fake_queue *fq, struct fake_queue *other)
{
    if (fake_negotiate(f, FZ_BASE, features) != (S_ACK | S_DRV | S_FOK) ||
        fake_queue_setup(other, f, FZ_BASE, 1 - fuzzed, FZ_QSIZE, FZ_OTHER, FZ_OTHER + 0x1000,
                         FZ_OTHER + 0x2000) != 1 ||
        fake_queue_setup(fq, f, FZ_BASE, fuzzed, FZ_QSIZE, FZ_DESC, FZ_AVAIL, FZ_USED) != 1)
        abort();
    fz_load(f, in);
    fake_wr(f, FZ_BASE, R_STATUS, S_DRIVER_UP);
    fake_queue_kick(fq);
}

void fz_check_chain(struct fake_vm *f, const struct virtq_chain *c)
{
    const uint8_t *lo = f->vm.mem.mapping, *hi = lo + f->vm.mem.mapping_size;
    uint64_t out = 0, in = 0;

    if (c->nbufs > VIRTQ_MAX_SIZE)
        abort();
    for (uint32_t i = 0; i < c->nbufs; i++) {
        const struct virtq_buf *b = &c->buf[i];
        const uint8_t *p = b->host;

        if (p < lo || p > hi || b->len > (uint64_t)(hi - p) || b->len == 0)
            abort(); /* a buffer outside guest RAM */
        *(b->write ? &in : &out) += b->len;
    }
    if (out != c->out_len || in != c->in_len)
        abort();
}

void fz_check_status(struct fake_vm *f, uint64_t base)
{
    uint32_t st = fake_rd(f, base, R_STATUS);

    if (st & S_FAIL)
        abort();
}
