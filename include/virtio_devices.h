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

#endif
