/* The snapshot state file: header and sections (sizes, versions, XXH3 checksums), the
 * little-endian writer and the parser that checks every byte count before using it. */
#include "snapshot_format.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the format is little-endian");

/* Header: magic[8] version arch header_size nr_sections (u32) file_size reserved checksum
 * (u64); the checksum covers the 40 bytes before it. */
#define HDR_CHECKED 40
/* Section header: tag[4] instance version flags (u32) size checksum (u64); the checksum
 * covers the first 24 bytes and the payload. */
#define SEC_CHECKED 24

static const struct {
    const char *tag;
    const char *name;
    bool numbered;
} names[] = {
        {SNAP_TAG_MACHINE, "machine", false},
        {SNAP_TAG_CONFIG, "config", false},
        {SNAP_TAG_MEMORY, "memory", false},
        {SNAP_TAG_VCPU, "vcpu", true},
        {SNAP_TAG_VM, "vm", false},
        {SNAP_TAG_SERIAL, "serial", false},
        {SNAP_TAG_CTRL, "control-page", false},
        {SNAP_TAG_GED, "ged", false},
        {SNAP_TAG_VIRTIO, "virtio", true},
};

void snap_section_name(const char *tag, uint32_t instance, char *buf, size_t n)
{
    char shown[5];

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (memcmp(names[i].tag, tag, 4) != 0)
            continue;
        if (names[i].numbered)
            snprintf(buf, n, "%s%u", names[i].name, instance);
        else
            snprintf(buf, n, "%s", names[i].name);
        return;
    }
    for (int i = 0; i < 4; i++) /* an unknown tag is shown printable */
        shown[i] = tag[i] >= 0x20 && tag[i] < 0x7f ? tag[i] : '?';
    shown[4] = '\0';
    snprintf(buf, n, "'%s'/%u", shown, instance);
}

/* ---- writing ---- */

static uint8_t *grow(struct snap_buf *b, size_t n)
{
    if (b->err)
        return NULL;
    if (n > SIZE_MAX / 2 - b->len) {
        b->err = -E2BIG;
        return NULL;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        uint8_t *p;

        while (cap < b->len + n)
            cap *= 2;
        p = realloc(b->p, cap);
        if (!p) {
            b->err = -ENOMEM;
            return NULL;
        }
        b->p = p;
        b->cap = cap;
    }
    b->len += n;
    return b->p + b->len - n;
}

void snap_buf_init(struct snap_buf *b)
{
    uint8_t *h;

    memset(b, 0, sizeof(*b));
    h = grow(b, SNAP_HEADER_SIZE);
    if (h)
        memset(h, 0, SNAP_HEADER_SIZE);
}

void snap_buf_free(struct snap_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

void snap_put_bytes(struct snap_buf *b, const void *p, size_t n)
{
    uint8_t *d = grow(b, n);

    if (d && n)
        memcpy(d, p, n);
}

void snap_put_u8(struct snap_buf *b, uint8_t v)
{
    snap_put_bytes(b, &v, 1);
}

void snap_put_u16(struct snap_buf *b, uint16_t v)
{
    snap_put_bytes(b, &v, 2);
}

void snap_put_u32(struct snap_buf *b, uint32_t v)
{
    snap_put_bytes(b, &v, 4);
}

void snap_put_u64(struct snap_buf *b, uint64_t v)
{
    snap_put_bytes(b, &v, 8);
}

void snap_put_str(struct snap_buf *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;

    snap_put_u32(b, (uint32_t)n);
    snap_put_bytes(b, s, n);
}

void snap_section_begin(struct snap_buf *b, const char *tag, uint32_t instance, uint32_t version)
{
    uint32_t flags = 0;
    uint64_t zero = 0;

    if (b->sec_start && !b->err)
        b->err = -EINVAL; /* sections do not nest */
    b->sec_start = b->len;
    snap_put_bytes(b, tag, 4);
    snap_put_u32(b, instance);
    snap_put_u32(b, version);
    snap_put_u32(b, flags);
    snap_put_u64(b, zero); /* size and checksum, filled in by snap_section_end */
    snap_put_u64(b, zero);
}

static uint64_t section_checksum(const uint8_t *hdr, const uint8_t *payload, size_t size)
{
    return XXH3_64bits_withSeed(payload, size, XXH3_64bits(hdr, SEC_CHECKED));
}

void snap_section_end(struct snap_buf *b)
{
    uint8_t *h;
    uint64_t size, sum;

    if (!b->sec_start) {
        if (!b->err)
            b->err = -EINVAL;
        return;
    }
    if (!b->err) {
        h = b->p + b->sec_start;
        size = b->len - b->sec_start - SNAP_SECTION_HDR;
        memcpy(h + 16, &size, 8);
        sum = section_checksum(h, h + SNAP_SECTION_HDR, size);
        memcpy(h + 24, &sum, 8);
        b->nr_sections++;
    }
    b->sec_start = 0;
}

int snap_buf_finish(struct snap_buf *b, uint32_t arch)
{
    uint32_t version = SNAP_FORMAT_VERSION, hsize = SNAP_HEADER_SIZE;
    uint64_t size = b->len, sum;

    if (!b->err && (b->sec_start || b->nr_sections > SNAP_MAX_SECTIONS || b->len > SNAP_STATE_MAX))
        b->err = -E2BIG;
    if (b->err)
        return b->err;
    memset(b->p, 0, SNAP_HEADER_SIZE);
    memcpy(b->p, SNAP_MAGIC, 8);
    memcpy(b->p + 8, &version, 4);
    memcpy(b->p + 12, &arch, 4);
    memcpy(b->p + 16, &hsize, 4);
    memcpy(b->p + 20, &b->nr_sections, 4);
    memcpy(b->p + 24, &size, 8);
    sum = XXH3_64bits(b->p, HDR_CHECKED);
    memcpy(b->p + 40, &sum, 8);
    return 0;
}

/* ---- reading ---- */

int snap_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, 4);
    return v;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, 8);
    return v;
}

static int parse_header(const uint8_t *buf, size_t len, struct snap_file *f, uint32_t *nr,
                        char *err, size_t errlen)
{
    uint64_t size;

    if (len < SNAP_HEADER_SIZE)
        return snap_fail(err, errlen, "header: truncated (%zu bytes, the header alone takes %d)",
                         len, SNAP_HEADER_SIZE);
    if (memcmp(buf, SNAP_MAGIC, 8) != 0)
        return snap_fail(err, errlen, "header: not an ember snapshot (bad magic)");
    if (XXH3_64bits(buf, HDR_CHECKED) != rd64(buf + 40))
        return snap_fail(err, errlen, "header: checksum mismatch: the file is corrupted");
    f->version = rd32(buf + 8);
    f->arch = rd32(buf + 12);
    *nr = rd32(buf + 20);
    size = rd64(buf + 24);
    if (f->version != SNAP_FORMAT_VERSION)
        return snap_fail(err, errlen,
                         "header: format version %u; this ember reads version %d only (take the "
                         "snapshot again with this ember)",
                         f->version, SNAP_FORMAT_VERSION);
    if (rd32(buf + 16) != SNAP_HEADER_SIZE || rd64(buf + 32) != 0)
        return snap_fail(err, errlen, "header: unknown header layout");
    if (*nr > SNAP_MAX_SECTIONS)
        return snap_fail(err, errlen, "header: %u sections, at most %d", *nr, SNAP_MAX_SECTIONS);
    if (size != len)
        return snap_fail(err, errlen, "header: the file is %zu bytes, the header says %llu (%s)",
                         len, (unsigned long long)size,
                         len < size ? "truncated" : "trailing bytes");
    return 0;
}

int snap_file_parse(const uint8_t *buf, size_t len, struct snap_file *f, char *err, size_t errlen)
{
    size_t pos = SNAP_HEADER_SIZE;
    uint32_t nr = 0;
    int r;

    memset(f, 0, sizeof(*f));
    if (len > SNAP_STATE_MAX)
        return snap_fail(err, errlen, "header: the file is %zu bytes, at most %u", len,
                         SNAP_STATE_MAX);
    r = parse_header(buf, len, f, &nr, err, errlen);
    if (r)
        return r;
    for (uint32_t i = 0; i < nr; i++) {
        struct snap_section *s = &f->sec[i];
        const uint8_t *h = buf + pos;
        char name[48];
        uint64_t size;

        if (len - pos < SNAP_SECTION_HDR)
            return snap_fail(err, errlen, "section %u of %u at byte %zu: truncated header", i + 1,
                             nr, pos);
        memcpy(s->tag, h, 4);
        s->tag[4] = '\0';
        s->instance = rd32(h + 4);
        s->version = rd32(h + 8);
        size = rd64(h + 16);
        s->offset = pos;
        snap_section_name(s->tag, s->instance, name, sizeof(name));
        if (size > len - pos - SNAP_SECTION_HDR)
            return snap_fail(
                    err, errlen,
                    "section %s at byte %zu: truncated (%llu bytes of payload, %zu left in "
                    "the file)",
                    name, pos, (unsigned long long)size, len - pos - SNAP_SECTION_HDR);
        if (rd32(h + 12) != 0)
            return snap_fail(err, errlen, "section %s at byte %zu: unknown flags %#x", name, pos,
                             rd32(h + 12));
        s->data = h + SNAP_SECTION_HDR;
        s->size = (size_t)size;
        if (section_checksum(h, s->data, s->size) != rd64(h + 24))
            return snap_fail(err, errlen,
                             "section %s at byte %zu: checksum mismatch: the file is corrupted",
                             name, pos);
        for (uint32_t j = 0; j < i; j++)
            if (memcmp(f->sec[j].tag, s->tag, 4) == 0 && f->sec[j].instance == s->instance)
                return snap_fail(err, errlen, "section %s at byte %zu: appears twice", name, pos);
        pos += SNAP_SECTION_HDR + s->size;
        f->nr = (int)i + 1;
    }
    if (pos != len)
        return snap_fail(err, errlen, "header: %zu bytes after the last section", len - pos);
    return 0;
}

const struct snap_section *snap_find(const struct snap_file *f, const char *tag, uint32_t instance)
{
    for (int i = 0; i < f->nr && i < SNAP_MAX_SECTIONS; i++)
        if (memcmp(f->sec[i].tag, tag, 4) == 0 && f->sec[i].instance == instance)
            return &f->sec[i];
    return NULL;
}

void snap_reader_init(struct snap_reader *r, const struct snap_section *s)
{
    r->p = s ? s->data : NULL;
    r->len = s ? s->size : 0;
    r->pos = 0;
    r->bad = s == NULL;
}

const uint8_t *snap_get_ptr(struct snap_reader *r, size_t n)
{
    const uint8_t *p;

    if (r->bad || n > r->len - r->pos) {
        r->bad = true;
        return NULL;
    }
    p = r->p + r->pos;
    r->pos += n;
    return p;
}

void snap_get_bytes(struct snap_reader *r, void *dst, size_t n)
{
    const uint8_t *p = snap_get_ptr(r, n);

    if (p)
        memcpy(dst, p, n);
    else
        memset(dst, 0, n);
}

uint8_t snap_get_u8(struct snap_reader *r)
{
    uint8_t v;

    snap_get_bytes(r, &v, 1);
    return v;
}

uint16_t snap_get_u16(struct snap_reader *r)
{
    uint16_t v;

    snap_get_bytes(r, &v, 2);
    return v;
}

uint32_t snap_get_u32(struct snap_reader *r)
{
    uint32_t v;

    snap_get_bytes(r, &v, 4);
    return v;
}

uint64_t snap_get_u64(struct snap_reader *r)
{
    uint64_t v;

    snap_get_bytes(r, &v, 8);
    return v;
}

void snap_get_str(struct snap_reader *r, char *buf, size_t cap)
{
    uint32_t n = snap_get_u32(r);
    const uint8_t *p;

    buf[0] = '\0';
    if (r->bad || n >= cap) {
        r->bad = true;
        return;
    }
    p = snap_get_ptr(r, n);
    if (!p || memchr(p, '\0', n)) {
        r->bad = true;
        return;
    }
    memcpy(buf, p, n);
    buf[n] = '\0';
}

bool snap_reader_done(const struct snap_reader *r)
{
    return !r->bad && r->pos == r->len;
}
