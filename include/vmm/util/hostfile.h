/* Host files named by the user or a control client (kernel, initrd, disks, --config): opened
 * without blocking and checked for their type before anything else is done with them. */
#ifndef EMBER_HOSTFILE_H
#define EMBER_HOSTFILE_H

#include <stdbool.h>
#include <stdint.h>

/* Types a caller accepts. */
#define HOSTFILE_REGULAR 1u
#define HOSTFILE_BLOCK   2u

struct host_file {
    int fd;
    uint64_t size; /* bytes: st_size, or BLKGETSIZE64 for a block device */
    bool is_blkdev;
};

/* Open path with flags (O_RDONLY or O_RDWR; O_CLOEXEC, O_NOCTTY and, until the type is known,
 * O_NONBLOCK are added): a FIFO, socket, directory or character device is refused at once
 * instead of blocking the caller (an open of a FIFO waits for a writer). 0 with f filled, or
 * -errno with *why saying what is wrong, for "<flag> <path>: <why>". */
int host_file_open(const char *path, int flags, unsigned types, struct host_file *f,
                   const char **why);

#endif
