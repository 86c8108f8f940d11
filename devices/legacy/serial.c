/* 8250/16550A UART on COM1: transmit to the console, receive from stdin, interrupts. */
#include "devices.h"
#include "log.h"
#include "snapshot_format.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define UART_IER_RDI        0x01 /* receive data available */
#define UART_IER_THRI       0x02 /* transmitter holding register empty */
#define UART_IIR_NO_INT     0x01
#define UART_IIR_THRI       0x02
#define UART_IIR_RDI        0x04
#define UART_IIR_FIFO       0xc0
#define UART_FCR_ENABLE     0x01
#define UART_FCR_CLEAR_RCVR 0x02
#define UART_LCR_DLAB       0x80
#define UART_MCR_DTR        0x01
#define UART_MCR_RTS        0x02
#define UART_MCR_OUT1       0x04
#define UART_MCR_OUT2       0x08
#define UART_MCR_LOOP       0x10
#define UART_LSR_DR         0x01
#define UART_LSR_THRE       0x20
#define UART_LSR_TEMT       0x40
#define UART_MSR_CTS        0x10
#define UART_MSR_DSR        0x20
#define UART_MSR_RI         0x40
#define UART_MSR_DCD        0x80

static unsigned rx_count(const struct serial *s)
{
    return s->rx_head - s->rx_tail;
}

/* Raise the line while an enabled interrupt is pending (an edge for the IOAPIC). */
static void update_irq(struct serial *s)
{
    uint8_t iir = UART_IIR_NO_INT;
    int level;

    if ((s->ier & UART_IER_RDI) && rx_count(s))
        iir = UART_IIR_RDI;
    else if ((s->ier & UART_IER_THRI) && s->thri_pending)
        iir = UART_IIR_THRI;
    s->iir = iir;
    level = iir != UART_IIR_NO_INT;
    if (level != s->irq_level) {
        s->irq_level = level;
        vm_irq_line(s->vm, s->irq, level);
    }
}

static void rx_push(struct serial *s, uint8_t ch)
{
    if (rx_count(s) < SERIAL_RX_SIZE)
        s->rx[s->rx_head++ % SERIAL_RX_SIZE] = ch;
}

size_t serial_rx_room(struct serial *s)
{
    size_t room;

    pthread_mutex_lock(&s->lock);
    room = SERIAL_RX_SIZE - rx_count(s);
    pthread_mutex_unlock(&s->lock);
    return room;
}

static size_t serial_input_room(void *opaque)
{
    return serial_rx_room(opaque);
}

/* Console input, from the event loop thread. */
static size_t serial_input(void *opaque, const uint8_t *buf, size_t n)
{
    struct serial *s = opaque;
    size_t i;

    pthread_mutex_lock(&s->lock);
    for (i = 0; i < n && rx_count(s) < SERIAL_RX_SIZE; i++)
        rx_push(s, buf[i]);
    update_irq(s);
    pthread_mutex_unlock(&s->lock);
    return i;
}

/* A byte written to THR (lock held). Returns 1 when it goes to the console: the caller writes
 * it there after dropping the lock, since a full ring blocks the writing vCPU (a slow reader
 * slows the guest down) and nobody else may wait for that. */
static int serial_tx(struct serial *s, uint8_t ch)
{
    s->thri_pending = 1; /* transmitted at once: the holding register is empty again */
    if (!(s->mcr & UART_MCR_LOOP))
        return 1;
    rx_push(s, ch);
    return 0;
}

static uint8_t read_msr(const struct serial *s)
{
    uint8_t mcr = s->mcr;

    if (!(mcr & UART_MCR_LOOP))
        return s->msr;
    /* Loopback: the modem inputs follow the modem outputs (Linux probes this). */
    return (uint8_t)(((mcr & UART_MCR_RTS) ? UART_MSR_CTS : 0) |
                     ((mcr & UART_MCR_DTR) ? UART_MSR_DSR : 0) |
                     ((mcr & UART_MCR_OUT1) ? UART_MSR_RI : 0) |
                     ((mcr & UART_MCR_OUT2) ? UART_MSR_DCD : 0));
}

static void serial_read(void *opaque, uint64_t offset, uint8_t *data, uint32_t len)
{
    struct serial *s = opaque;
    uint8_t v = 0;

    if (len != 1)
        return;
    pthread_mutex_lock(&s->lock);
    switch (offset) {
    case 0:
        if (s->lcr & UART_LCR_DLAB) {
            v = s->dll;
        } else if (rx_count(s)) {
            v = s->rx[s->rx_tail++ % SERIAL_RX_SIZE];
            if (rx_count(s) == 0 && s->rx_wake_fd >= 0) {
                uint64_t one = 1;
                (void)!write(s->rx_wake_fd, &one, sizeof(one));
            }
        }
        break;
    case 1:
        v = (s->lcr & UART_LCR_DLAB) ? s->dlm : s->ier;
        break;
    case 2:
        v = s->iir | ((s->fcr & UART_FCR_ENABLE) ? UART_IIR_FIFO : 0);
        if (s->iir == UART_IIR_THRI)
            s->thri_pending = 0; /* reading IIR acknowledges THRE */
        break;
    case 3:
        v = s->lcr;
        break;
    case 4:
        v = s->mcr;
        break;
    case 5:
        v = UART_LSR_THRE | UART_LSR_TEMT | (rx_count(s) ? UART_LSR_DR : 0);
        break;
    case 6:
        v = read_msr(s);
        break;
    case 7:
        v = s->scr;
        break;
    }
    data[0] = v;
    update_irq(s);
    pthread_mutex_unlock(&s->lock);
}

static void serial_write(void *opaque, uint64_t offset, const uint8_t *data, uint32_t len)
{
    struct serial *s = opaque;
    uint8_t v = data[0];
    int out = 0;

    if (len != 1)
        return;
    pthread_mutex_lock(&s->lock);
    switch (offset) {
    case 0:
        if (s->lcr & UART_LCR_DLAB)
            s->dll = v;
        else
            out = serial_tx(s, v);
        break;
    case 1:
        if (s->lcr & UART_LCR_DLAB) {
            s->dlm = v;
        } else {
            /* Enabling THRI with an empty holding register raises it at once. */
            if ((v & UART_IER_THRI) && !(s->ier & UART_IER_THRI))
                s->thri_pending = 1;
            s->ier = v & 0x0f;
        }
        break;
    case 2:
        s->fcr = v;
        if (v & UART_FCR_CLEAR_RCVR)
            s->rx_tail = s->rx_head;
        break;
    case 3:
        s->lcr = v;
        break;
    case 4:
        s->mcr = v & 0x1f;
        break;
    case 7:
        s->scr = v;
        break;
    default: /* LSR and MSR are read-only */
        break;
    }
    update_irq(s);
    pthread_mutex_unlock(&s->lock);
    if (out)
        console_write(s->con, &v, 1); /* may block this vCPU, holding no lock */
}

static const struct bus_ops serial_ops = {.read = serial_read, .write = serial_write};

int serial_init(struct serial *s, struct vm *vm, struct console *con, uint16_t port, uint32_t irq,
                int rx_wake_fd)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->vm = vm;
    s->con = con;
    s->irq = irq;
    s->iir = UART_IIR_NO_INT;
    s->msr = UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS;
    s->rx_wake_fd = rx_wake_fd;
    con->input = serial_input;
    con->input_room = serial_input_room;
    con->input_opaque = s;
    return bus_register(&vm->pio, port, 8, &serial_ops, s, "serial");
}

/* ---- snapshots ---- */

void serial_save(struct serial *s, struct snap_buf *b)
{
    unsigned n;

    pthread_mutex_lock(&s->lock);
    n = rx_count(s);
    snap_put_u8(b, s->ier);
    snap_put_u8(b, s->iir);
    snap_put_u8(b, s->lcr);
    snap_put_u8(b, s->mcr);
    snap_put_u8(b, s->msr);
    snap_put_u8(b, s->scr);
    snap_put_u8(b, s->dll);
    snap_put_u8(b, s->dlm);
    snap_put_u8(b, s->fcr);
    snap_put_u8(b, (uint8_t)s->thri_pending);
    snap_put_u8(b, (uint8_t)s->irq_level);
    snap_put_u32(b, n);
    for (unsigned i = 0; i < n; i++)
        snap_put_u8(b, s->rx[(s->rx_tail + i) % SERIAL_RX_SIZE]);
    pthread_mutex_unlock(&s->lock);
}

int serial_restore(struct serial *s, struct snap_reader *r, char *err, size_t errlen)
{
    uint8_t reg[9], thri, level;
    const uint8_t *rx;
    uint32_t n;

    snap_get_bytes(r, reg, sizeof(reg));
    thri = snap_get_u8(r);
    level = snap_get_u8(r);
    n = snap_get_u32(r);
    if (n > SERIAL_RX_SIZE) {
        snprintf(err, errlen, "%u bytes of input queued, the FIFO holds %d", n, SERIAL_RX_SIZE);
        return -EINVAL;
    }
    rx = snap_get_ptr(r, n);
    if (!snap_reader_done(r) || thri > 1 || level > 1 ||
        (reg[1] != UART_IIR_NO_INT && reg[1] != UART_IIR_THRI && reg[1] != UART_IIR_RDI)) {
        snprintf(err, errlen, "%s", r->bad ? "truncated" : "bad register values or extra bytes");
        return -EINVAL;
    }
    s->ier = reg[0] & 0x0f;
    s->iir = reg[1];
    s->lcr = reg[2];
    s->mcr = reg[3] & 0x1f;
    s->msr = reg[4];
    s->scr = reg[5];
    s->dll = reg[6];
    s->dlm = reg[7];
    s->fcr = reg[8];
    s->thri_pending = thri;
    s->irq_level = level;
    s->rx_tail = 0;
    s->rx_head = n;
    memcpy(s->rx, rx, n);
    return 0;
}
