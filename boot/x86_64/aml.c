/* A small AML byte-code builder: names, data objects, packages, resource templates. */
#include <errno.h>
#include <string.h>

#include "aml.h"

/* AML opcodes and prefixes (ACPI 6.5, section 20.3). */
enum {
    AML_ZERO_OP = 0x00,
    AML_ONE_OP = 0x01,
    AML_NAME_OP = 0x08,
    AML_BYTE_PREFIX = 0x0a,
    AML_WORD_PREFIX = 0x0b,
    AML_DWORD_PREFIX = 0x0c,
    AML_STRING_PREFIX = 0x0d,
    AML_QWORD_PREFIX = 0x0e,
    AML_SCOPE_OP = 0x10,
    AML_BUFFER_OP = 0x11,
    AML_PACKAGE_OP = 0x12,
    AML_METHOD_OP = 0x14,
    AML_DUAL_NAME_PREFIX = 0x2e,
    AML_MULTI_NAME_PREFIX = 0x2f,
    AML_EXT_OP_PREFIX = 0x5b,
    AML_ROOT_CHAR = 0x5c,
    AML_PARENT_PREFIX_CHAR = 0x5e,
    AML_LOCAL0_OP = 0x60,
    AML_ARG0_OP = 0x68,
    AML_STORE_OP = 0x70,
    AML_AND_OP = 0x7b,
    AML_NOTIFY_OP = 0x86,
    AML_LEQUAL_OP = 0x93,
    AML_IF_OP = 0xa0,
    AML_ONES_OP = 0xff,
    /* second byte after AML_EXT_OP_PREFIX */
    AML_EXT_OPREGION_OP = 0x80,
    AML_EXT_FIELD_OP = 0x81,
    AML_EXT_DEVICE_OP = 0x82,
};

/* Resource descriptor tags (ACPI 6.5, section 6.4). */
enum {
    RES_IO = 0x47,             /* small item 0x08, 7 bytes */
    RES_END_TAG = 0x79,        /* small item 0x0f, 1 byte */
    RES_MEMORY32_FIXED = 0x86, /* large item 0x06 */
    RES_EXT_IRQ = 0x89,        /* large item 0x09 */
};

#define NAME_SEG_LEN 4
#define PKGLEN_LIMIT (1u << 28)
#define IRQ_CONSUMER 0x01

void aml_init(struct aml *a, uint8_t *buf, size_t cap)
{
    a->buf = buf;
    a->cap = buf ? cap : 0;
    a->len = 0;
    a->err = 0;
}

static void aml_fail(struct aml *a, int err)
{
    if (!a->err)
        a->err = err;
}

/* Insert n bytes at pos (<= len), moving what follows. Only stores while there is no error
 * and the result fits: the length is counted either way. */
static void aml_insert(struct aml *a, size_t pos, const uint8_t *p, size_t n)
{
    if (pos > a->len) {
        aml_fail(a, -EINVAL);
        return;
    }
    if (a->buf && !a->err) {
        if (n > a->cap - a->len) {
            aml_fail(a, -ENOSPC);
        } else {
            memmove(a->buf + pos + n, a->buf + pos, a->len - pos);
            memcpy(a->buf + pos, p, n);
        }
    }
    a->len += n;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
    aml_insert(a, a->len, p, n);
}

void aml_byte(struct aml *a, uint8_t v)
{
    aml_insert(a, a->len, &v, 1);
}

static void put_le(uint8_t *out, uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(v >> (8 * i));
}

size_t aml_pkglen_encode(uint8_t out[4], uint32_t value)
{
    size_t n;

    if (value < 0x40) {
        out[0] = (uint8_t)value;
        return 1;
    }
    if (value >= PKGLEN_LIMIT)
        return 0;
    n = value < (1u << 12) ? 2 : value < (1u << 20) ? 3 : 4;
    /* lead byte: count of following bytes in bits 7-6, low nibble of the value in 3-0 */
    out[0] = (uint8_t)(((n - 1) << 6) | (value & 0x0f));
    put_le(out + 1, value >> 4, n - 1);
    return n;
}

/* Integer in its smallest encoding; returns the number of bytes (1..9). */
static size_t encode_integer(uint8_t out[9], uint64_t v)
{
    if (v == 0 || v == 1 || v == UINT64_MAX) {
        out[0] = v == 0 ? AML_ZERO_OP : v == 1 ? AML_ONE_OP : AML_ONES_OP;
        return 1;
    }
    if (v <= UINT8_MAX) {
        out[0] = AML_BYTE_PREFIX;
        put_le(out + 1, v, 1);
        return 2;
    }
    if (v <= UINT16_MAX) {
        out[0] = AML_WORD_PREFIX;
        put_le(out + 1, v, 2);
        return 3;
    }
    if (v <= UINT32_MAX) {
        out[0] = AML_DWORD_PREFIX;
        put_le(out + 1, v, 4);
        return 5;
    }
    out[0] = AML_QWORD_PREFIX;
    put_le(out + 1, v, 8);
    return 9;
}

/* Ones is all 64 bits set: ember's DSDT is revision 2 (64-bit integers). */
void aml_integer(struct aml *a, uint64_t v)
{
    uint8_t enc[9];

    aml_bytes(a, enc, encode_integer(enc, v));
}

void aml_string(struct aml *a, const char *s)
{
    if (!s) {
        aml_fail(a, -EINVAL);
        return;
    }
    for (const char *c = s; *c; c++) {
        if ((unsigned char)*c > 0x7f) {
            aml_fail(a, -EINVAL);
            return;
        }
    }
    aml_byte(a, AML_STRING_PREFIX);
    aml_bytes(a, s, strlen(s) + 1);
}

static int is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Compressed EISA id: three letters of 5 bits and four hex digits, stored big-endian. */
void aml_eisaid(struct aml *a, const char *id)
{
    uint32_t v = 0;
    uint8_t enc[5];

    if (!id || strlen(id) != 7) {
        aml_fail(a, -EINVAL);
        return;
    }
    for (int i = 0; i < 3; i++) {
        if (!is_upper(id[i])) {
            aml_fail(a, -EINVAL);
            return;
        }
        v = (v << 5) | (uint32_t)(id[i] - '@');
    }
    for (int i = 3; i < 7; i++) {
        int d = hex_digit(id[i]);

        if (d < 0) {
            aml_fail(a, -EINVAL);
            return;
        }
        v = (v << 4) | (uint32_t)d;
    }
    enc[0] = AML_DWORD_PREFIX; /* always a DWord, as the EISAID() macro yields */
    enc[1] = (uint8_t)(v >> 24);
    enc[2] = (uint8_t)(v >> 16);
    enc[3] = (uint8_t)(v >> 8);
    enc[4] = (uint8_t)v;
    aml_bytes(a, enc, sizeof(enc));
}

/* One NameSeg of 1..4 characters, padded with '_'. Returns 0 or -EINVAL. */
static int name_seg(const char *s, size_t n, uint8_t out[NAME_SEG_LEN])
{
    if (n < 1 || n > NAME_SEG_LEN)
        return -EINVAL;
    for (size_t i = 0; i < NAME_SEG_LEN; i++) {
        char c = i < n ? s[i] : '_';
        int ok = is_upper(c) || c == '_' || (i > 0 && c >= '0' && c <= '9');

        if (!ok)
            return -EINVAL;
        out[i] = (uint8_t)c;
    }
    return 0;
}

static size_t count_segments(const char *p)
{
    size_t n = *p ? 1 : 0;

    for (; *p; p++)
        n += *p == '.';
    return n;
}

void aml_name_string(struct aml *a, const char *path)
{
    size_t nsegs;

    if (!path) {
        aml_fail(a, -EINVAL);
        return;
    }
    if (*path == '\\') {
        aml_byte(a, AML_ROOT_CHAR);
        path++;
    } else {
        for (; *path == '^'; path++)
            aml_byte(a, AML_PARENT_PREFIX_CHAR);
    }
    nsegs = count_segments(path);
    if (nsegs > UINT8_MAX) {
        aml_fail(a, -EINVAL);
        return;
    }
    if (nsegs == 0) {
        aml_byte(a, AML_ZERO_OP); /* NullName */
        return;
    }
    if (nsegs == 2) {
        aml_byte(a, AML_DUAL_NAME_PREFIX);
    } else if (nsegs > 2) {
        aml_byte(a, AML_MULTI_NAME_PREFIX);
        aml_byte(a, (uint8_t)nsegs);
    }
    while (nsegs--) {
        const char *end = strchr(path, '.');
        size_t n = end ? (size_t)(end - path) : strlen(path);
        uint8_t seg[NAME_SEG_LEN];

        if (name_seg(path, n, seg) < 0) {
            aml_fail(a, -EINVAL);
            return;
        }
        aml_bytes(a, seg, sizeof(seg));
        path += n + (end != NULL);
    }
}

void aml_name(struct aml *a, const char *name)
{
    aml_byte(a, AML_NAME_OP);
    aml_name_string(a, name);
}

void aml_name_integer(struct aml *a, const char *name, uint64_t v)
{
    aml_name(a, name);
    aml_integer(a, v);
}

void aml_name_str(struct aml *a, const char *name, const char *s)
{
    aml_name(a, name);
    aml_string(a, s);
}

void aml_name_eisaid(struct aml *a, const char *name, const char *id)
{
    aml_name(a, name);
    aml_eisaid(a, id);
}

/* Close a package started at mark: insert op and the PkgLength of the body before it.
 * The PkgLength counts its own bytes, so pick the smallest size n that holds body + n. */
static void aml_pkg_end(struct aml *a, size_t mark, const uint8_t *op, size_t oplen)
{
    uint8_t hdr[2 + 4];
    size_t body, n;

    if (mark > a->len) {
        aml_fail(a, -EINVAL);
        return;
    }
    body = a->len - mark;
    if (body >= PKGLEN_LIMIT) {
        aml_fail(a, -EINVAL);
        return;
    }
    for (n = 1; n <= 4; n++) {
        if (aml_pkglen_encode(hdr + oplen, (uint32_t)(body + n)) == n)
            break;
    }
    if (n > 4) {
        aml_fail(a, -EINVAL);
        return;
    }
    memcpy(hdr, op, oplen);
    aml_insert(a, mark, hdr, oplen + n);
}

size_t aml_scope_begin(struct aml *a, const char *path)
{
    size_t mark = a->len;

    aml_name_string(a, path);
    return mark;
}

void aml_scope_end(struct aml *a, size_t mark)
{
    static const uint8_t op[] = {AML_SCOPE_OP};

    aml_pkg_end(a, mark, op, sizeof(op));
}

size_t aml_device_begin(struct aml *a, const char *name)
{
    size_t mark = a->len;

    aml_name_string(a, name);
    return mark;
}

void aml_device_end(struct aml *a, size_t mark)
{
    static const uint8_t op[] = {AML_EXT_OP_PREFIX, AML_EXT_DEVICE_OP};

    aml_pkg_end(a, mark, op, sizeof(op));
}

size_t aml_method_begin(struct aml *a, const char *name, unsigned nargs, int serialized)
{
    size_t mark = a->len;

    if (nargs > 7)
        aml_fail(a, -EINVAL);
    aml_name_string(a, name);
    /* MethodFlags: ArgCount in bits 2-0, SerializeFlag in bit 3, SyncLevel 0 */
    aml_byte(a, (uint8_t)((nargs & 7) | (serialized ? 0x08 : 0)));
    return mark;
}

void aml_method_end(struct aml *a, size_t mark)
{
    static const uint8_t op[] = {AML_METHOD_OP};

    aml_pkg_end(a, mark, op, sizeof(op));
}

size_t aml_if_begin(struct aml *a)
{
    return a->len;
}

void aml_if_end(struct aml *a, size_t mark)
{
    static const uint8_t op[] = {AML_IF_OP};

    aml_pkg_end(a, mark, op, sizeof(op));
}

size_t aml_package_begin(struct aml *a)
{
    return a->len;
}

void aml_package_end(struct aml *a, size_t mark, uint8_t nelems)
{
    static const uint8_t op[] = {AML_PACKAGE_OP};

    aml_insert(a, mark, &nelems, 1);
    aml_pkg_end(a, mark, op, sizeof(op));
}

size_t aml_buffer_begin(struct aml *a)
{
    return a->len;
}

void aml_buffer_end(struct aml *a, size_t mark)
{
    static const uint8_t op[] = {AML_BUFFER_OP};
    uint8_t size[9];

    if (mark > a->len) {
        aml_fail(a, -EINVAL);
        return;
    }
    aml_insert(a, mark, size, encode_integer(size, a->len - mark));
    aml_pkg_end(a, mark, op, sizeof(op));
}

void aml_opregion(struct aml *a, const char *name, uint8_t space, uint64_t offset, uint64_t len)
{
    aml_byte(a, AML_EXT_OP_PREFIX);
    aml_byte(a, AML_EXT_OPREGION_OP);
    aml_name_string(a, name);
    aml_byte(a, space);
    aml_integer(a, offset);
    aml_integer(a, len);
}

size_t aml_field_begin(struct aml *a, const char *region, uint8_t flags)
{
    size_t mark = a->len;

    aml_name_string(a, region);
    aml_byte(a, flags);
    return mark;
}

/* NamedField: a NameSeg followed by its width in bits, encoded as a PkgLength. */
void aml_field_unit(struct aml *a, const char *name, uint32_t bits)
{
    uint8_t seg[NAME_SEG_LEN], len[4];
    size_t n = aml_pkglen_encode(len, bits);

    if (!name || name_seg(name, strlen(name), seg) < 0 || bits == 0 || n == 0) {
        aml_fail(a, -EINVAL);
        return;
    }
    aml_bytes(a, seg, sizeof(seg));
    aml_bytes(a, len, n);
}

void aml_field_end(struct aml *a, size_t mark)
{
    static const uint8_t op[] = {AML_EXT_OP_PREFIX, AML_EXT_FIELD_OP};

    aml_pkg_end(a, mark, op, sizeof(op));
}

void aml_store(struct aml *a)
{
    aml_byte(a, AML_STORE_OP);
}

void aml_and(struct aml *a)
{
    aml_byte(a, AML_AND_OP);
}

void aml_lequal(struct aml *a)
{
    aml_byte(a, AML_LEQUAL_OP);
}

void aml_notify(struct aml *a)
{
    aml_byte(a, AML_NOTIFY_OP);
}

void aml_local(struct aml *a, unsigned n)
{
    if (n > 7) {
        aml_fail(a, -EINVAL);
        return;
    }
    aml_byte(a, (uint8_t)(AML_LOCAL0_OP + n));
}

void aml_arg(struct aml *a, unsigned n)
{
    if (n > 6) {
        aml_fail(a, -EINVAL);
        return;
    }
    aml_byte(a, (uint8_t)(AML_ARG0_OP + n));
}

void aml_null_target(struct aml *a)
{
    aml_byte(a, AML_ZERO_OP); /* NullName */
}

size_t aml_restemplate_begin(struct aml *a)
{
    return aml_buffer_begin(a);
}

/* End tag with a zero checksum ("treat the template as correctly summed"). */
void aml_restemplate_end(struct aml *a, size_t mark)
{
    static const uint8_t end_tag[] = {RES_END_TAG, 0x00};

    aml_bytes(a, end_tag, sizeof(end_tag));
    aml_buffer_end(a, mark);
}

void aml_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len)
{
    uint8_t d[8] = {RES_IO, 0x01 /* 16-bit decode */};

    put_le(d + 2, min, 2);
    put_le(d + 4, max, 2);
    d[6] = align;
    d[7] = len;
    aml_bytes(a, d, sizeof(d));
}

void aml_memory32_fixed(struct aml *a, int writable, uint32_t base, uint32_t len)
{
    uint8_t d[12] = {RES_MEMORY32_FIXED, 9, 0};

    d[3] = writable ? 0x01 : 0x00;
    put_le(d + 4, base, 4);
    put_le(d + 8, len, 4);
    aml_bytes(a, d, sizeof(d));
}

void aml_interrupt(struct aml *a, uint8_t flags, uint32_t gsi)
{
    uint8_t d[9] = {RES_EXT_IRQ, 6, 0};

    d[3] = (uint8_t)(flags | IRQ_CONSUMER);
    d[4] = 1; /* interrupt table length */
    put_le(d + 5, gsi, 4);
    aml_bytes(a, d, sizeof(d));
}
