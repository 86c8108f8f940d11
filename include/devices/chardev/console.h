/* The guest console on the host side: terminal (raw), pipe or file, or off; bounded output. */
#ifndef EMBER_CONSOLE_H
#define EMBER_CONSOLE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <termios.h>

#include "outstream.h"

#define CONSOLE_RING_SIZE 65536

enum console_mode { CONSOLE_OFF, CONSOLE_STDIO };

/* Where guest input goes (the UART's receive FIFO, hvc0's receive buffers); returns bytes
 * taken. */
typedef size_t (*console_input_fn)(void *opaque, const uint8_t *buf, size_t n);
/* How many bytes the input function would take now; stdin is read only while there is room. */
typedef size_t (*console_room_fn)(void *opaque);
/* Event loop: the ring has room again after console_write_nb could not queue everything. */
typedef void (*console_space_fn)(void *opaque);

struct console {
    enum console_mode mode;
    int in_fd;             /* -1 when input is off or at EOF */
    struct out_stream out; /* stdout, never blocking (fd -1: none) */
    int tty;               /* stdin is a terminal we put in raw mode */
    struct termios saved;
    int escape; /* saw Ctrl-a, waiting for the command key */
    int quit;   /* user typed Ctrl-a x */

    pthread_mutex_t lock;
    pthread_cond_t space; /* signalled when the ring drains or on shutdown */
    uint8_t ring[CONSOLE_RING_SIZE];
    size_t head, tail; /* free-running: used = head - tail */
    int closed;        /* the reader went away (EPIPE): output is dropped for good */
    int stopping;      /* the VM is stopping: writers never wait, output is dropped */
    int wake_fd;       /* eventfd: tells the event loop there is output to drain */
    uint64_t dropped;  /* bytes dropped after the reader went away */
    int space_wanted;  /* console_write_nb ran out of room: call output_space after a drain */

    console_input_fn input;
    console_room_fn input_room;
    void *input_opaque; /* for input and input_room */
    console_space_fn output_space;
    void *output_space_opaque;
};

/* Whether stdin is a terminal and ember is in its foreground process group (only then may it
 * read it or change its mode). Decided at the first call: make it before the jail's PID
 * namespace, where process groups outside it all read as 0. */
int console_terminal_foreground(void);
/* CONSOLE_STDIO: out is stdout's stream (out_stream_open, opened before a jail), taken. */
int console_init(struct console *c, enum console_mode mode, int wake_fd, struct out_stream *out);
/* Put the terminal back as it was (idempotent, async-signal-safe part only). */
void console_restore(struct console *c);
void console_close(struct console *c);

/* Guest output from any thread. Blocks while the ring is full (the reader is slow): the
 * guest is slowed down, ember's memory never grows. */
void console_write(struct console *c, const uint8_t *buf, size_t n);
/* Guest output from the event loop thread, which must never block: queues what fits and
 * returns the bytes taken (all n when output is dropped anyway: console off, reader gone, VM
 * stopping). When it takes less than n, a later console_drain calls output_space once. */
size_t console_write_nb(struct console *c, const uint8_t *buf, size_t n);
/* Wake the event loop to drain output and read input again (e.g. the guest posted input
 * buffers). */
void console_wake(struct console *c);
/* Bytes the input function would take now (input_room; 0 without one). */
size_t console_input_room(struct console *c);
/* Event loop: write what the ring holds without blocking, then call output_space if a
 * console_write_nb is waiting for room. Returns bytes still queued. */
size_t console_drain(struct console *c);
/* Event loop: flush everything before exit, waiting for a slow reader until deadline (a
 * clock_ms() value). */
void console_flush(struct console *c, int64_t deadline);
/* Event loop: feed up to room bytes of stdin to the input function, if it has any ready (never
 * blocks). Returns 0, or -1 at EOF. */
int console_read_input(struct console *c, size_t room);
/* Wake any writer blocked on a full ring and drop further output (the VM is stopping). */
void console_shutdown(struct console *c);
/* Accept output again (the VM is restarting). */
void console_resume(struct console *c);

#endif
