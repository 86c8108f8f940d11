/* Kernel and initrd files: opened with their type checked, read whole, never mapped (a file
 * truncated under ember gives an error, not SIGBUS). Any architecture's loader uses them. */
#ifndef EMBER_KERNEL_FILE_H
#define EMBER_KERNEL_FILE_H

#include <stdint.h>

#include "guest_mem.h"

#define KERNEL_FILE_MAX (512ULL << 20) /* the largest kernel file ember reads into memory */

struct kernel_file {
    const uint8_t *data;
    uint64_t size;
};

/* Open path read-only, a non-empty regular file; returns the fd (size in *size) or -errno after
 * one error line "<what> <path>: <why>". */
int kernel_file_open(const char *path, const char *what, uint64_t *size);
/* Read the whole file into an anonymous mapping (its memory goes back to the host when freed).
 * 0 or -errno after one error line. */
int kernel_file_read(const char *path, const char *what, struct kernel_file *m);
void kernel_file_free(struct kernel_file *m);
/* Read exactly size bytes of fd into guest memory at gpa. 0 or -errno (one error line naming
 * path). */
int kernel_file_to_guest(const struct guest_mem *gm, int fd, uint64_t gpa, uint64_t size,
                         const char *what, const char *path);

#endif
