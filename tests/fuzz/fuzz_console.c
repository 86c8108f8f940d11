/* libFuzzer target: virtio-console output chains and host input into guest receive buffers. */
#include "console.h"
#include "fuzz_common.h"
#include "virtio_devices.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define RX_MODE 0x80 /* feature selector bit: fuzz the receive queue instead of transmit */

static struct fake_vm f;
static struct virtio_dev dev;
static struct console con;
static int out_pipe[2];

/* EVENT_IDX, INDIRECT_DESC (the console offers no features of its own). */
static const int con_bits[] = {VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

    (void)argc;
    (void)argv;
    fake_vm_init(&f, FZ_MEM);
    if (wake < 0 || pipe2(out_pipe, O_NONBLOCK | O_CLOEXEC) ||
        console_init(&con, CONSOLE_OFF, wake, NULL))
        abort();
    con.mode = CONSOLE_STDIO;
    con.out = (struct out_stream){.fd = out_pipe[1], .kind = OUT_NONBLOCK};
    if (virtio_console_create(&dev, &con, &f.loop) ||
        virtio_mmio_init(&dev, &f.vm, &f.loop, FZ_BASE, 5))
        abort();
    return 0;
}

/* Write what the console holds into the pipe and empty it, until nothing is left. */
static void drain(void)
{
    static uint8_t sink[65536];

    for (int i = 0; i < 8; i++) {
        size_t left = console_drain(&con);

        while (read(out_pipe[0], sink, sizeof(sink)) > 0)
            ;
        fake_vm_run(&f, 1, 0);
        if (!left)
            break;
    }
}

/* Input: [features, nr_avail, window...]. In RX_MODE a one-byte output chain on the transmit
 * queue marks the port ready, then the input's last bytes (up to 4 KiB) are typed in. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct fake_buf hello = {FZ_OTHER + 0x3000, 1, 0};
    struct fake_queue fuzzed, other;
    bool rx = size && (data[0] & RX_MODE);
    int fq = rx ? 0 : 1;
    struct fz_input in;

    if (fz_parse(data, size, &in))
        return 0;
    fz_start_two_queues(&f, fz_features(&f, FZ_BASE, in.features, con_bits, 2), fq, &in, &fuzzed,
                        &other);
    if (rx) { /* the other queue transmits: one byte of output makes the port ready */
        fake_queue_post(&other, &hello, 1);
        fake_queue_kick(&other);
    }
    drain();
    if (rx && con.input_room && con.input_room(con.input_opaque) > 0) {
        size_t len = in.window_len < 4096 ? in.window_len : 4096;

        con.input(con.input_opaque, in.window + in.window_len - len, len);
        drain();
    }
    fz_check_status(&f, FZ_BASE);
    if (fake_used_idx(&fuzzed) > in.nr_avail)
        abort();
    return 0;
}
