/* ember's snapshot file: a header, then tagged sections, each with its own version, size and
 * checksum; a little-endian writer, and a parser that trusts nothing it reads. */
#ifndef EMBER_SNAPSHOT_FORMAT_H
#define EMBER_SNAPSHOT_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAP_MAGIC          "EMBERSNP"
#define SNAP_FORMAT_VERSION 1
#define SNAP_HEADER_SIZE    48
#define SNAP_SECTION_HDR    32
#define SNAP_MAX_SECTIONS   256
#define SNAP_STATE_MAX      (16u << 20) /* the state file (memory is a file of its own) */

/* The architecture whose vCPU and VM state the snapshot holds. */
enum snap_arch { SNAP_ARCH_X86_64 = 1, SNAP_ARCH_AARCH64 = 2 };

/* Section tags (four bytes). Every section is named in messages (snap_section_name). */
#define SNAP_TAG_MACHINE "MACH" /* machine shape: arch, vCPUs, RAM, devices */
#define SNAP_TAG_CONFIG  "CONF" /* the configuration, as `query-config` gives it */
#define SNAP_TAG_MEMORY  "MEMR" /* how the memory file holds guest RAM */
#define SNAP_TAG_VCPU    "VCPU" /* one per vCPU (instance = index): architecture state */
#define SNAP_TAG_VM      "ARVM" /* the VM's architecture state (irqchips, timers, clock) */
#define SNAP_TAG_SERIAL  "UART"
#define SNAP_TAG_CTRL    "CTRL" /* control page */
#define SNAP_TAG_GED     "GED_"
#define SNAP_TAG_VIRTIO  "VIRT" /* one per virtio device (instance = slot) */

/* ---- writing ---- */

struct snap_buf {
    uint8_t *p;
    size_t len, cap;
    int err;          /* -ENOMEM once an allocation failed; everything after is dropped */
    size_t sec_start; /* offset of the open section's header, 0 when none is open */
    uint32_t nr_sections;
};

/* Starts with room for the header. */
void snap_buf_init(struct snap_buf *b);
void snap_buf_free(struct snap_buf *b);
void snap_put_u8(struct snap_buf *b, uint8_t v);
void snap_put_u16(struct snap_buf *b, uint16_t v);
void snap_put_u32(struct snap_buf *b, uint32_t v);
void snap_put_u64(struct snap_buf *b, uint64_t v);
void snap_put_bytes(struct snap_buf *b, const void *p, size_t n);
/* A u32 length, then the bytes (no NUL). */
void snap_put_str(struct snap_buf *b, const char *s);
void snap_section_begin(struct snap_buf *b, const char *tag, uint32_t instance, uint32_t version);
void snap_section_end(struct snap_buf *b);
/* Fill in the header; 0, or -errno if anything failed on the way. */
int snap_buf_finish(struct snap_buf *b, uint32_t arch);

/* ---- reading ---- */

struct snap_section {
    char tag[5];
    uint32_t instance, version;
    const uint8_t *data;
    size_t size;
    size_t offset; /* of the section header in the file, for messages */
};

struct snap_file {
    uint32_t version, arch;
    int nr;
    struct snap_section sec[SNAP_MAX_SECTIONS];
};

/* Check the header and every section's size and checksum. 0, or -EINVAL with one line in err
 * naming what is wrong ("section vcpu1 at byte 612: checksum mismatch ..."). */
int snap_file_parse(const uint8_t *buf, size_t len, struct snap_file *f, char *err, size_t errlen);
/* The section with this tag and instance, or NULL. */
const struct snap_section *snap_find(const struct snap_file *f, const char *tag, uint32_t instance);
/* Put one line saying what is wrong into err; returns -EINVAL (the checks' common ending). */
__attribute__((format(printf, 3, 4))) int snap_fail(char *err, size_t errlen, const char *fmt, ...);
/* "machine", "vcpu1", "virtio2", ...: how messages name a section. */
void snap_section_name(const char *tag, uint32_t instance, char *buf, size_t n);

/* A bounds-checked cursor over one section's payload: reading past the end sets bad and
 * returns zeros, so a decoder checks once at the end. */
struct snap_reader {
    const uint8_t *p;
    size_t len, pos;
    bool bad;
};

void snap_reader_init(struct snap_reader *r, const struct snap_section *s);
uint8_t snap_get_u8(struct snap_reader *r);
uint16_t snap_get_u16(struct snap_reader *r);
uint32_t snap_get_u32(struct snap_reader *r);
uint64_t snap_get_u64(struct snap_reader *r);
void snap_get_bytes(struct snap_reader *r, void *dst, size_t n);
/* A pointer to the next n bytes (NULL and bad when fewer are left). */
const uint8_t *snap_get_ptr(struct snap_reader *r, size_t n);
/* A string of at most cap-1 bytes without NUL bytes, NUL-terminated into buf; bad otherwise. */
void snap_get_str(struct snap_reader *r, char *buf, size_t cap);
/* The payload was read exactly: no short read, no bytes left over. */
bool snap_reader_done(const struct snap_reader *r);

#endif
