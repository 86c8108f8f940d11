/* io_uring rings that can do only what their owner submits: seccomp does not see io_uring's
 * operations, so each ring is limited with IORING_REGISTER_RESTRICTIONS (devices/uring.c). */
#ifndef EMBER_URING_H
#define EMBER_URING_H

#include <liburing.h>
#include <stdint.h>

/* io_uring_queue_init with the ring disabled: it runs nothing until uring_restrict, and its
 * owner may still register an eventfd or probe it. 0 or -errno. */
int uring_init_disabled(struct io_uring *ring, unsigned entries);

/* Allow only these SQE opcodes, without SQE flags, and no further register operation; then
 * enable the ring. Any other operation completes with -EACCES. 0 or -errno. */
int uring_restrict(struct io_uring *ring, const uint8_t *ops, unsigned nops);

#endif
