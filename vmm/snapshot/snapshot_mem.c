/* Writing guest RAM into a snapshot: pages the guest never touched (pagemap) or that hold only
 * zeros become holes; the rest is written at its RAM offset, a budget per call. */
#include "snapshot_mem.h"
#include "log.h"

#include <cap-ng.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PAGE       4096ULL
#define WINDOW     (2ULL << 20) /* pages looked up in pagemap at once */
#define PM_PRESENT (1ULL << 63)
#define PM_SWAPPED (1ULL << 62)

static int pagemap_fd = -1;

void snap_mem_prepare(void)
{
    int admin;

    if (pagemap_fd >= 0)
        return;
    /* Which pages are present is all we read: opened without CAP_SYS_ADMIN, the file shows
     * no physical frame numbers (the kernel checks the opener's capabilities). */
    capng_get_caps_process();
    admin = capng_have_capability(CAPNG_EFFECTIVE, CAP_SYS_ADMIN);
    if (admin) {
        capng_update(CAPNG_DROP, CAPNG_EFFECTIVE, CAP_SYS_ADMIN);
        capng_apply(CAPNG_SELECT_CAPS);
    }
    pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (admin) {
        capng_update(CAPNG_ADD, CAPNG_EFFECTIVE, CAP_SYS_ADMIN);
        capng_apply(CAPNG_SELECT_CAPS);
    }
}

int snap_mem_writer_start(struct snap_mem_writer *w, const struct guest_mem *gm, int out_fd,
                          int src_fd)
{
    memset(w, 0, sizeof(*w));
    w->gm = gm;
    w->out_fd = out_fd;
    w->src_fd = src_fd;
    w->scratch = malloc((WINDOW / PAGE) * sizeof(uint64_t));
    if (!w->scratch) {
        log_err("snapshot: out of memory");
        return -ENOMEM;
    }
    if (ftruncate(out_fd, 0) < 0 || ftruncate(out_fd, (off_t)gm->mapping_size) < 0) {
        int err = -errno;

        log_err("snapshot: sizing the memory file: %s", strerror(-err));
        return err;
    }
    return 0;
}

void snap_mem_writer_end(struct snap_mem_writer *w)
{
    free(w->scratch);
    w->scratch = NULL;
}

static bool all_zero(const uint8_t *p)
{
    const uint64_t *q = (const uint64_t *)(const void *)p;

    for (size_t i = 0; i < PAGE / sizeof(*q); i++)
        if (q[i])
            return false;
    return true;
}

/* Bit i set in *maybe when page i of the window may hold data: touched (pagemap), or backed
 * by data in the file this VM was restored from. Without pagemap, every page may. */
static void candidates(struct snap_mem_writer *w, uint64_t start, uint64_t n, bool *maybe)
{
    const uint8_t *host = (const uint8_t *)w->gm->mapping + start;
    off_t data, hole;
    ssize_t got = -1;

    if (pagemap_fd >= 0)
        got = pread(pagemap_fd, w->scratch, n * sizeof(uint64_t),
                    (off_t)(((uintptr_t)host / PAGE) * sizeof(uint64_t)));
    for (uint64_t i = 0; i < n; i++)
        maybe[i] = got != (ssize_t)(n * sizeof(uint64_t)) ||
                   (((uint64_t *)(void *)w->scratch)[i] & (PM_PRESENT | PM_SWAPPED));
    if (w->src_fd < 0 || got != (ssize_t)(n * sizeof(uint64_t)))
        return;
    for (off_t at = (off_t)start; at < (off_t)(start + n * PAGE); at = hole) {
        data = lseek(w->src_fd, at, SEEK_DATA);
        if (data < 0 || data >= (off_t)(start + n * PAGE))
            return;
        hole = lseek(w->src_fd, data, SEEK_HOLE);
        if (hole < 0)
            hole = (off_t)(start + n * PAGE);
        for (off_t p = data & ~(off_t)(PAGE - 1); p < hole && p < (off_t)(start + n * PAGE);
             p += PAGE)
            maybe[(p - (off_t)start) / PAGE] = true;
    }
}

static int write_run(struct snap_mem_writer *w, uint64_t off, uint64_t len)
{
    const uint8_t *p = (const uint8_t *)w->gm->mapping + off;

    while (len > 0) {
        ssize_t n = pwrite(w->out_fd, p, len, (off_t)off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int err = n < 0 ? -errno : -EIO;

            log_err("snapshot: writing guest memory: %s", strerror(-err));
            return err;
        }
        p += n;
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return 0;
}

int snap_mem_writer_step(struct snap_mem_writer *w, uint64_t budget)
{
    uint64_t size = w->gm->mapping_size, end;
    bool maybe[WINDOW / PAGE];

    if (budget < WINDOW)
        budget = WINDOW;
    end = w->pos + budget < size ? w->pos + budget : size;
    while (w->pos < end) {
        uint64_t n = (end - w->pos < WINDOW ? end - w->pos : WINDOW) / PAGE;
        uint64_t run = 0, run_start = 0;

        candidates(w, w->pos, n, maybe);
        for (uint64_t i = 0; i <= n; i++) {
            uint64_t off = w->pos + i * PAGE;
            bool data = i < n && maybe[i] && !all_zero((const uint8_t *)w->gm->mapping + off);

            if (data) {
                if (!run)
                    run_start = off;
                run += PAGE;
                w->data_pages++;
                continue;
            }
            if (run) {
                int err = write_run(w, run_start, run);

                if (err)
                    return err;
                run = 0;
            }
        }
        w->pos += n * PAGE;
    }
    return w->pos < size;
}
