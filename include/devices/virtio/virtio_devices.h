/* Constructors of ember's virtio devices: each fills a virtio_dev for virtio_mmio_init. */
#ifndef EMBER_VIRTIO_DEVICES_H
#define EMBER_VIRTIO_DEVICES_H

#include "config.h"
#include "console.h"
#include "eventloop.h"
#include "virtio.h"

/* Each returns 0 or -errno after printing one error line naming the flag/file. The device
 * may use `loop` for its backend descriptors (registered in ops->activate or here). */
int virtio_blk_create(struct virtio_dev *d, const struct disk_config *cfg, struct loop *loop);
int virtio_net_create(struct virtio_dev *d, const struct net_config *cfg, struct loop *loop);
int virtio_console_create(struct virtio_dev *d, struct console *con, struct loop *loop);
int virtio_rng_create(struct virtio_dev *d, struct loop *loop);

/* virtio-blk and the control socket (query-block, blockdev-change-medium, BLOCK_IO_ERROR). */
struct blk_info {
    char path[4096];
    char id[21];
    int readonly;
    uint64_t size; /* bytes */
};
/* Backend failures of a request (event loop thread); op is "read" or "write". */
typedef void (*blk_error_fn)(void *opaque, struct virtio_dev *d, const char *op, int err);
void virtio_blk_set_error_hook(struct virtio_dev *d, blk_error_fn fn, void *opaque);
void virtio_blk_info(struct virtio_dev *d, struct blk_info *info);
/* Swap the backing file (after the requests in flight finish) and tell the guest the new
 * size. 0 or -errno after one error line naming the file. */
int virtio_blk_change(struct virtio_dev *d, const char *path, int readonly);

#endif
