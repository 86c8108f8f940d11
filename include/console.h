/* The guest console on the host side: terminal (raw), pipe or file, or off; bounded output. */
#ifndef EMBER_CONSOLE_H
#define EMBER_CONSOLE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <termios.h>

#define CONSOLE_RING_SIZE 65536

enum console_mode { CONSOLE_OFF, CONSOLE_STDIO };

/* Where guest input goes (the UART's receive FIFO); returns bytes taken. */
typedef size_t (*console_input_fn)(void *opaque, const uint8_t *buf, size_t n);

struct console {
    enum console_mode mode;
    int in_fd;       /* -1 when input is off or at EOF */
    int out_fd;      /* non-blocking descriptor of our own for stdout, or -1 */
    int out_is_sock; /* use send(MSG_DONTWAIT) */
    int tty;         /* stdin is a terminal we put in raw mode */
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

    console_input_fn input;
    void *input_opaque;
};

int console_init(struct console *c, enum console_mode mode, int wake_fd);
/* Put the terminal back as it was (idempotent, async-signal-safe part only). */
void console_restore(struct console *c);
void console_close(struct console *c);

/* Guest output from any thread. Blocks while the ring is full (the reader is slow): the
 * guest is slowed down, ember's memory never grows. */
void console_write(struct console *c, const uint8_t *buf, size_t n);
/* Event loop: write what the ring holds without blocking. Returns bytes still queued. */
size_t console_drain(struct console *c);
/* Event loop: flush everything before exit, blocking up to timeout_ms. */
void console_flush(struct console *c, int timeout_ms);
/* Event loop: stdin is readable; feeds the input function. Returns 0, or -1 at EOF. */
int console_read_input(struct console *c, size_t room);
/* Wake any writer blocked on a full ring and drop further output (the VM is stopping). */
void console_shutdown(struct console *c);
/* Accept output again (the VM is restarting). */
void console_resume(struct console *c);

#endif
