/* Host side of the guest console: raw terminal handling, bounded output ring, stdin input. */
#include "console.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CTRL_A 0x01

static struct console *restore_target; /* for the fatal-signal handler */

static void fatal_signal(int sig)
{
    if (restore_target && restore_target->tty)
        tcsetattr(STDIN_FILENO, TCSANOW, &restore_target->saved);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* A descriptor for stdout that we may make non-blocking without touching the file
 * description our parent shares (a shell would otherwise see O_NONBLOCK on its terminal). */
static int open_output(struct console *c)
{
    struct stat st;

    if (fstat(STDOUT_FILENO, &st) < 0)
        return log_errno("console: fstat of stdout");
    if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
        c->out_fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3); /* files never block long */
    } else if (S_ISSOCK(st.st_mode)) {
        c->out_fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
        c->out_is_sock = 1;
    } else {
        c->out_fd = open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (c->out_fd < 0)
            c->out_fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    }
    if (c->out_fd < 0)
        return log_errno("console: cannot open stdout");
    return 0;
}

static int make_raw(struct console *c)
{
    struct termios raw;
    struct sigaction sa = {.sa_handler = fatal_signal};
    static const int fatal[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGQUIT};

    if (tcgetattr(STDIN_FILENO, &c->saved) < 0)
        return 0; /* not really a terminal: leave it */
    raw = c->saved;
    cfmakeraw(&raw);
    raw.c_oflag |= OPOST | ONLCR; /* keep \n -> \r\n for ember's own messages */
    if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) < 0)
        return log_errno("console: cannot put the terminal in raw mode");
    c->tty = 1;
    restore_target = c;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
        sigaction(fatal[i], &sa, NULL);
    return 0;
}

int console_init(struct console *c, enum console_mode mode, int wake_fd)
{
    int err;

    memset(c, 0, sizeof(*c));
    c->mode = mode;
    c->in_fd = -1;
    c->out_fd = -1;
    c->wake_fd = wake_fd;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->space, NULL);
    if (mode == CONSOLE_OFF)
        return 0;
    err = open_output(c);
    if (err)
        return err;
    c->in_fd = STDIN_FILENO;
    if (isatty(STDIN_FILENO) && isatty(STDOUT_FILENO)) {
        err = make_raw(c);
        if (err)
            return err;
    }
    return 0;
}

void console_restore(struct console *c)
{
    if (c->tty) {
        tcsetattr(STDIN_FILENO, TCSANOW, &c->saved);
        c->tty = 0;
        restore_target = NULL;
    }
}

void console_close(struct console *c)
{
    console_restore(c);
    if (c->out_fd >= 0)
        close(c->out_fd);
    c->out_fd = -1;
}

void console_write(struct console *c, const uint8_t *buf, size_t n)
{
    int wake = 0;

    if (c->mode == CONSOLE_OFF)
        return;
    pthread_mutex_lock(&c->lock);
    while (n && !c->closed && !c->stopping) {
        size_t used = c->head - c->tail;
        size_t room = CONSOLE_RING_SIZE - used;
        size_t pos = c->head % CONSOLE_RING_SIZE;
        size_t chunk = n < room ? n : room;

        if (chunk == 0) {
            pthread_cond_wait(&c->space, &c->lock);
            continue;
        }
        if (chunk > CONSOLE_RING_SIZE - pos)
            chunk = CONSOLE_RING_SIZE - pos;
        memcpy(&c->ring[pos], buf, chunk);
        if (used == 0)
            wake = 1;
        c->head += chunk;
        buf += chunk;
        n -= chunk;
        if (wake && n) {
            uint64_t one = 1;
            (void)!write(c->wake_fd, &one, sizeof(one));
            wake = 0;
        }
    }
    c->dropped += n; /* what is left could not be queued */
    pthread_mutex_unlock(&c->lock);
    if (wake) {
        uint64_t one = 1;
        (void)!write(c->wake_fd, &one, sizeof(one));
    }
}

size_t console_drain(struct console *c)
{
    size_t left;

    pthread_mutex_lock(&c->lock);
    while (c->head != c->tail && c->out_fd >= 0) {
        size_t pos = c->tail % CONSOLE_RING_SIZE;
        size_t chunk = c->head - c->tail;
        ssize_t w;

        if (chunk > CONSOLE_RING_SIZE - pos)
            chunk = CONSOLE_RING_SIZE - pos;
        if (c->out_is_sock)
            w = send(c->out_fd, &c->ring[pos], chunk, MSG_DONTWAIT | MSG_NOSIGNAL);
        else
            w = write(c->out_fd, &c->ring[pos], chunk);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (w <= 0) {
            /* The reader went away (EPIPE): drop output from now on, keep the VM running. */
            c->dropped += c->head - c->tail;
            c->tail = c->head;
            c->closed = 1;
            break;
        }
        c->tail += (size_t)w;
        pthread_cond_broadcast(&c->space);
    }
    left = c->head - c->tail;
    pthread_mutex_unlock(&c->lock);
    return left;
}

void console_flush(struct console *c, int timeout_ms)
{
    struct timespec start, now;

    if (c->out_fd < 0)
        return;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (console_drain(c)) {
        struct pollfd p = {.fd = c->out_fd, .events = POLLOUT};
        long elapsed;

        clock_gettime(CLOCK_MONOTONIC, &now);
        elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (elapsed >= timeout_ms) {
            log_warn("console: the reader of stdout is stuck; dropped %zu bytes of guest output",
                     c->head - c->tail);
            break;
        }
        poll(&p, 1, (int)(timeout_ms - elapsed));
    }
}

void console_shutdown(struct console *c)
{
    pthread_mutex_lock(&c->lock);
    c->stopping = 1;
    pthread_cond_broadcast(&c->space);
    pthread_mutex_unlock(&c->lock);
}

void console_resume(struct console *c)
{
    pthread_mutex_lock(&c->lock);
    c->stopping = 0;
    pthread_mutex_unlock(&c->lock);
}

/* Terminal escapes: Ctrl-a x quits, Ctrl-a Ctrl-a sends one Ctrl-a. */
static size_t filter_escapes(struct console *c, uint8_t *buf, size_t n)
{
    size_t out = 0;

    for (size_t i = 0; i < n; i++) {
        uint8_t ch = buf[i];

        if (c->escape) {
            c->escape = 0;
            if (ch == 'x' || ch == 'X') {
                c->quit = 1;
                continue;
            }
            if (ch != CTRL_A)
                continue;
        } else if (ch == CTRL_A) {
            c->escape = 1;
            continue;
        }
        buf[out++] = ch;
    }
    return out;
}

int console_read_input(struct console *c, size_t room)
{
    uint8_t buf[256];
    ssize_t n;

    if (c->in_fd < 0 || room == 0)
        return 0;
    if (room > sizeof(buf))
        room = sizeof(buf);
    n = read(c->in_fd, buf, room);
    if (n < 0)
        return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    if (n == 0)
        return -1;
    if (c->tty)
        n = (ssize_t)filter_escapes(c, buf, (size_t)n);
    if (n && c->input)
        c->input(c->input_opaque, buf, (size_t)n);
    return 0;
}
