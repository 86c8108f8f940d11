// ember guest init: helpers shared by exec mode (exec.c) and the OCI agent (oci*.c).
#ifndef EMBER_INIT_UTIL_H
#define EMBER_INIT_UTIL_H

#include <stddef.h>
#include <sys/types.h>

// Where fail() writes: the stderr port once it is open (-1: init's own stderr).
void set_error_fd(int fd);
// Instead of the error descriptor, give each message to hook (the OCI agent: to the host).
void set_error_hook(void (*hook)(const char *msg));
// One line "ember-init: <message>" on the error descriptor (or to the hook).
void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// A small file's first line-ish content, trailing newlines and spaces cut. 0 or -1.
int read_file(const char *path, char *buf, size_t size);
// Exactly len bytes from fd (retries EINTR). 0, or -1 on error or end of file.
int read_full(int fd, void *buf, size_t len);
// Exactly len bytes to fd. 0 or -1.
int write_full(int fd, const void *buf, size_t len);
// mkdir -p, the last component with mode.
void mkdirs(const char *path, mode_t mode);
// Make sure fds 0-2 exist (without a console the kernel opened none).
void std_fds(void);
// /dev/vportNpM of the virtio-console port named `name`, waiting for the driver to name it.
int find_port(const char *name, char *dev, size_t devlen);
// /dev/vdX whose virtio-blk serial is `serial`.
int find_disk(const char *serial, char *dev, size_t devlen);
// A guest restored from a snapshot may find a disk swapped for another file: wait until the
// kernel knows its new size (bytes, as ember says; 0: do not wait), drop what it cached.
void disk_settle(const char *dev, long long bytes);
// Mix the host's entropy for this VM alone (64 hex digits) into the kernel's pool, credited,
// and reseed at once: guests restored from one snapshot stop sharing their random numbers.
void reseed(const char *hex);
// Set the clock to the host's time ("SEC.NSEC"): a restored guest's stood still.
void set_clock(const char *v);
// Unpack the newc cpio archive on the disk with serial ember-copyin (of bytes, as for
// disk_settle) under dir ("/": the root).
int unpack_files(const char *dir, long long bytes);

#endif
