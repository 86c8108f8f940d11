/* Host side of the guest console: raw terminal handling, bounded output ring, stdin input. */
#include "console.h"
#include "clock.h"
#include "log.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
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

static int foreground = -1; /* console_terminal_foreground, decided once */

int console_terminal_foreground(void)
{
    if (foreground < 0)
        foreground = isatty(STDIN_FILENO) && tcgetpgrp(STDIN_FILENO) == getpgrp();
    return foreground;
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

int console_init(struct console *c, enum console_mode mode, int wake_fd, struct out_stream *out)
{
    int err;

    /* Everything but the ring, whose bytes are never read before they are written: its 64 KiB
     * stay untouched (not resident) until the guest prints that much. */
    memset(c, 0, offsetof(struct console, ring));
    memset(&c->ring[CONSOLE_RING_SIZE], 0,
           sizeof(*c) - offsetof(struct console, ring) - CONSOLE_RING_SIZE);
    c->mode = mode;
    c->in_fd = -1;
    c->out.fd = -1;
    c->wake_fd = wake_fd;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->space, NULL);
    if (mode == CONSOLE_OFF)
        return 0;
    c->out = *out;
    out->fd = -1;
    c->in_fd = STDIN_FILENO;
    if (isatty(STDIN_FILENO) && !console_terminal_foreground()) {
        /* `ember run ... &`: reading the terminal would stop us (SIGTTIN), so would changing
         * its mode (SIGTTOU); the foreground job keeps both. */
        log_info("console: started in the background; the terminal's input is not read and "
                 "its mode is left as it is");
        c->in_fd = -1;
    } else if (isatty(STDIN_FILENO) && isatty(STDOUT_FILENO)) {
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
    out_stream_close(&c->out);
}

void console_wake(struct console *c)
{
    uint64_t one = 1;

    (void)!write(c->wake_fd, &one, sizeof(one));
}

/* Copy what fits of buf into the ring (lock held); returns bytes taken. *was_empty: the ring
 * was empty and now holds output, so the event loop must be woken to drain it. */
static size_t ring_put(struct console *c, const uint8_t *buf, size_t n, int *was_empty)
{
    size_t done = 0;

    *was_empty = c->head == c->tail;
    while (done < n) {
        size_t room = CONSOLE_RING_SIZE - (c->head - c->tail);
        size_t pos = c->head % CONSOLE_RING_SIZE;
        size_t chunk = n - done;

        if (room == 0)
            break;
        if (chunk > room)
            chunk = room;
        if (chunk > CONSOLE_RING_SIZE - pos)
            chunk = CONSOLE_RING_SIZE - pos;
        memcpy(&c->ring[pos], buf + done, chunk);
        c->head += chunk;
        done += chunk;
    }
    *was_empty = *was_empty && done;
    return done;
}

void console_write(struct console *c, const uint8_t *buf, size_t n)
{
    if (c->mode == CONSOLE_OFF)
        return;
    pthread_mutex_lock(&c->lock);
    while (n && !c->closed && !c->stopping) {
        int was_empty;
        size_t done = ring_put(c, buf, n, &was_empty);

        buf += done;
        n -= done;
        if (was_empty)
            console_wake(c);
        if (n)
            pthread_cond_wait(&c->space, &c->lock);
    }
    c->dropped += n; /* what is left could not be queued */
    pthread_mutex_unlock(&c->lock);
}

size_t console_write_nb(struct console *c, const uint8_t *buf, size_t n)
{
    int was_empty = 0;
    size_t done = n;

    if (c->mode == CONSOLE_OFF)
        return n;
    pthread_mutex_lock(&c->lock);
    if (c->closed || c->stopping) {
        c->dropped += n;
    } else {
        done = ring_put(c, buf, n, &was_empty);
        if (done < n)
            c->space_wanted = 1;
    }
    pthread_mutex_unlock(&c->lock);
    if (was_empty)
        console_wake(c);
    return done;
}

/* Write out what the ring holds without blocking (lock held). */
static void drain_ring(struct console *c)
{
    while (c->head != c->tail && c->out.fd >= 0) {
        size_t pos = c->tail % CONSOLE_RING_SIZE;
        size_t chunk = c->head - c->tail;
        ssize_t w;

        if (chunk > CONSOLE_RING_SIZE - pos)
            chunk = CONSOLE_RING_SIZE - pos;
        w = out_stream_write(&c->out, &c->ring[pos], chunk);
        if (w == -EINTR)
            continue;
        if (w == -EAGAIN)
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
}

size_t console_drain(struct console *c)
{
    size_t left;
    int space;

    pthread_mutex_lock(&c->lock);
    drain_ring(c);
    space = c->space_wanted && c->head - c->tail < CONSOLE_RING_SIZE;
    if (space)
        c->space_wanted = 0;
    left = c->head - c->tail;
    pthread_mutex_unlock(&c->lock);
    if (space && c->output_space) {
        c->output_space(c->output_space_opaque); /* may queue more */
        pthread_mutex_lock(&c->lock);
        left = c->head - c->tail;
        pthread_mutex_unlock(&c->lock);
    }
    return left;
}

void console_flush(struct console *c, int64_t deadline)
{
    if (c->out.fd < 0)
        return;
    while (console_drain(c)) {
        int left = clock_ms_left(deadline);

        if (left == 0) {
            log_warn("console: the reader of stdout is stuck; dropped %zu bytes of guest output",
                     c->head - c->tail);
            break;
        }
        out_stream_wait(&c->out, left);
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

size_t console_input_room(struct console *c)
{
    return c->input_room ? c->input_room(c->input_opaque) : 0;
}

int console_read_input(struct console *c, size_t room)
{
    struct pollfd p = {.fd = c->in_fd, .events = POLLIN};
    uint8_t buf[256];
    ssize_t n;

    if (c->in_fd < 0 || room == 0)
        return 0;
    /* stdin is shared with our parent, so it stays blocking: read only what is there. */
    if (poll(&p, 1, 0) <= 0)
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
