/* Host output descriptors that never block the event loop: reopened non-blocking, sockets
 * written with MSG_DONTWAIT, and a poll-guarded fallback. */
#include "outstream.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

int out_stream_open(struct out_stream *o, int fd)
{
    struct stat st;
    char path[32];

    *o = (struct out_stream){.fd = -1, .kind = OUT_NONBLOCK};
    if (fstat(fd, &st) < 0)
        return -errno; /* closed: the stream is dropped */
    if (S_ISSOCK(st.st_mode)) {
        o->kind = OUT_SOCKET;
        o->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    } else if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
        o->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    } else {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        o->fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (o->fd < 0) { /* no /proc: never block all the same */
            o->kind = OUT_GUARDED;
            o->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        }
    }
    return o->fd < 0 ? -errno : 0;
}

ssize_t out_stream_write(const struct out_stream *o, const void *buf, size_t len)
{
    struct pollfd p = {.fd = o->fd, .events = POLLOUT};
    ssize_t n;

    if (o->fd < 0)
        return -EBADF;
    switch (o->kind) {
    case OUT_SOCKET:
        n = send(o->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        break;
    case OUT_GUARDED:
        if (poll(&p, 1, 0) <= 0 || !(p.revents & POLLOUT))
            return p.revents & (POLLERR | POLLHUP) ? -EPIPE : -EAGAIN;
        n = write(o->fd, buf, len < PIPE_BUF ? len : PIPE_BUF);
        break;
    default:
        n = write(o->fd, buf, len);
        break;
    }
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return n;
}

int out_stream_wait(const struct out_stream *o, int timeout_ms)
{
    struct pollfd p = {.fd = o->fd, .events = POLLOUT};

    if (o->fd < 0)
        return 0;
    return poll(&p, 1, timeout_ms < 0 ? 0 : timeout_ms) > 0;
}

void out_stream_close(struct out_stream *o)
{
    if (o->fd >= 0)
        close(o->fd);
    o->fd = -1;
}
