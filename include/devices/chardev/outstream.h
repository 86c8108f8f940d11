/* Host descriptors guest output is written to from the event loop (the console's stdout, `ember
 * exec`'s stdout and stderr): never blocking, whatever they are. */
#ifndef EMBER_OUTSTREAM_H
#define EMBER_OUTSTREAM_H

#include <stddef.h>
#include <sys/types.h>

enum out_kind {
    OUT_NONBLOCK, /* our own non-blocking file description (pipe, terminal) or a file */
    OUT_SOCKET,   /* a socket: send(MSG_DONTWAIT) */
    OUT_GUARDED,  /* a shared blocking description we could not reopen: poll, then write
                   * at most PIPE_BUF bytes (which a pipe with room takes without waiting) */
};

struct out_stream {
    int fd; /* -1: no stream (closed, or output dropped) */
    enum out_kind kind;
};

/* A stream of our own for fd (STDOUT_FILENO, STDERR_FILENO): a socket is duplicated (written
 * with MSG_DONTWAIT), a regular file or block device duplicated (writes to it do not wait for a
 * reader), anything else (pipe, terminal) reopened through /proc/self/fd with O_NONBLOCK, a
 * file description of our own, so the parent's terminal never turns non-blocking. Call it
 * before a jail's pivot_root: /proc is gone after it. 0, or -errno (o->fd is then -1). */
int out_stream_open(struct out_stream *o, int fd);
/* Write without blocking: bytes written, -EAGAIN when the reader is behind, another -errno
 * when it is gone (EPIPE). */
ssize_t out_stream_write(const struct out_stream *o, const void *buf, size_t len);
/* Wait up to timeout_ms for room (poll); 1 when there may be some. */
int out_stream_wait(const struct out_stream *o, int timeout_ms);
void out_stream_close(struct out_stream *o);

#endif
