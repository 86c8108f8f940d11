/* Guest RAM in a snapshot: a sparse file as large as RAM (RAM offset = file offset) holding
 * only pages that are not zero, written a budget at a time. */
#ifndef EMBER_SNAPSHOT_MEM_H
#define EMBER_SNAPSHOT_MEM_H

#include <stdint.h>

#include "guest_mem.h"

struct snap_mem_writer {
    const struct guest_mem *gm;
    int out_fd;
    int src_fd;   /* the memory file this VM was restored from (its data may not be mapped
                     in yet), or -1 */
    uint64_t pos; /* RAM offset of the next page to look at */
    uint64_t data_pages;
    uint8_t *scratch; /* pagemap entries of one window */
};

/* Open /proc/self/pagemap once, while /proc is there (before a jail hides it): it says
 * which pages the guest ever touched (it is opened without CAP_SYS_ADMIN, so it shows no
 * physical addresses). Without it every page is read and compared to zero. Only where
 * snapshots may be saved: a control socket, or `ember exec`'s ready snapshot. */
void snap_mem_prepare(void);

/* Make out_fd an empty file of RAM's size (all holes). 0 or -errno after one error line. */
int snap_mem_writer_start(struct snap_mem_writer *w, const struct guest_mem *gm, int out_fd,
                          int src_fd);
/* Write the pages that are not zero among the next `budget` bytes of RAM: 1 while RAM is
 * left, 0 when all of it is written, or -errno after one error line. */
int snap_mem_writer_step(struct snap_mem_writer *w, uint64_t budget);
void snap_mem_writer_end(struct snap_mem_writer *w);

#endif
