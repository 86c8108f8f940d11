/* Shared by ember's libFuzzer targets: a ring image in fake guest RAM, quiet logs, checks. */
#ifndef EMBER_FUZZ_COMMON_H
#define EMBER_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "fake_vm.h"

/* Fake RAM and where a device target's input lands in it: the fuzzed queue's rings (16
 * entries) first, then buffers. Descriptors in the seeds point into FZ_DATA. */
#define FZ_MEM      (1ULL << 20)
#define FZ_QSIZE    16
#define FZ_DESC     0x1000ULL
#define FZ_AVAIL    0x1100ULL
#define FZ_USED     0x1200ULL
#define FZ_DATA     0x1300ULL
#define FZ_WIN_SIZE 0xf000ULL  /* input bytes beyond this are ignored */
#define FZ_OTHER    0x20000ULL /* rings of the queues not fuzzed: valid, empty */
#define FZ_BASE     FAKE_VIRTIO_BASE

/* A device target's input: one header byte each for the features the driver takes (bit i:
 * the i-th offered feature bit... see fz_features), how many chains it makes available, and
 * then the bytes of the window at FZ_DESC. */
struct fz_input {
    uint8_t features; /* selects driver features among those offered */
    uint8_t nr_avail; /* avail idx published: chains made available */
    const uint8_t *window;
    size_t window_len;
};

/* Split data into an fz_input; 0, or -1 when it is too short to mean anything. */
int fz_parse(const uint8_t *data, size_t size, struct fz_input *in);
/* The features a target's driver accepts: VERSION_1 always, each of `bits` (up to 8 device
 * feature bit numbers) when the matching bit of sel is set, if offered. */
uint64_t fz_features(struct fake_vm *f, uint64_t base, uint8_t sel, const int *bits, int nbits);
/* Copy the window into RAM at FZ_DESC (zeroing the rest of it) and publish nr_avail. The
 * rings of the fuzzed queue must be at FZ_DESC/FZ_AVAIL/FZ_USED. */
void fz_load(struct fake_vm *f, const struct fz_input *in);
/* A driver brings the device at FZ_BASE up with `features` and queues 0 and 1: queue `fuzzed`
 * on the rings at FZ_DESC, loaded with the input, the other one valid and empty; then
 * DRIVER_OK and a kick for the fuzzed queue. Aborts if the device refuses the set-up. */
void fz_start_two_queues(struct fake_vm *f, uint64_t features, int fuzzed,
                         const struct fz_input *in, struct fake_queue *fq,
                         struct fake_queue *other);
/* Abort unless every buffer of the chain lies inside guest RAM. */
void fz_check_chain(struct fake_vm *f, const struct virtq_chain *c);
/* Abort unless the device either is fine or says NEEDS_RESET (never FAILED by itself). */
void fz_check_status(struct fake_vm *f, uint64_t base);

#endif
