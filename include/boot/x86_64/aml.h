/* A small AML (ACPI Machine Language) byte-code builder, enough for ember's DSDT. */
#ifndef EMBER_AML_H
#define EMBER_AML_H

#include <stddef.h>
#include <stdint.h>

/*
 * Output of the builder. With buf == NULL the builder only measures: nothing is stored and
 * len ends as the exact size the AML needs. With a buffer, bytes that would go past cap are
 * not stored and err becomes -ENOSPC (len still counts them). The first error sticks in err
 * (-ENOSPC, or -EINVAL for a bad name, string or value); every call after it is harmless.
 *
 * Objects with a PkgLength (Scope, Device, Method, If, Buffer, Package, Field) are built as
 * begin/end pairs: begin returns a mark, the body is emitted, end inserts the opcode and the
 * PkgLength in front of the body at the mark (so the output never grows past its final size).
 *
 * Statements and expressions are emitted in prefix order, as AML encodes them: emit the
 * operator (aml_store, aml_lequal...), then each of its operands.
 */
struct aml {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int err;
};

void aml_init(struct aml *a, uint8_t *buf, size_t cap);

/* Raw bytes (used by the resource descriptors and by tests). */
void aml_byte(struct aml *a, uint8_t v);
void aml_bytes(struct aml *a, const void *p, size_t n);

/* PkgLength encoding of a raw value (1..4 bytes); 0 if the value does not fit (>= 2^28). */
size_t aml_pkglen_encode(uint8_t out[4], uint32_t value);

/* Data objects. */
void aml_integer(struct aml *a, uint64_t v);           /* Zero/One/Ones or Byte..QWordConst */
void aml_string(struct aml *a, const char *s);         /* printable ASCII, NUL appended */
void aml_eisaid(struct aml *a, const char *id);        /* EISAID("PNP0501"): a DWordConst */
void aml_name_string(struct aml *a, const char *path); /* "\\_SB.COM1", "_HID", "^PWRB" */

/* Name (name, <object emitted next>) and shorthands. */
void aml_name(struct aml *a, const char *name);
void aml_name_integer(struct aml *a, const char *name, uint64_t v);
void aml_name_str(struct aml *a, const char *name, const char *s);
void aml_name_eisaid(struct aml *a, const char *name, const char *id);

/* Scope (path) { ... } */
size_t aml_scope_begin(struct aml *a, const char *path);
void aml_scope_end(struct aml *a, size_t mark);
/* Device (name) { ... } */
size_t aml_device_begin(struct aml *a, const char *name);
void aml_device_end(struct aml *a, size_t mark);
/* Method (name, nargs, Serialized/NotSerialized) { ... } */
size_t aml_method_begin(struct aml *a, const char *name, unsigned nargs, int serialized);
void aml_method_end(struct aml *a, size_t mark);
/* If (<predicate emitted first>) { ... } */
size_t aml_if_begin(struct aml *a);
void aml_if_end(struct aml *a, size_t mark);
/* Package () { <nelems objects> } */
size_t aml_package_begin(struct aml *a);
void aml_package_end(struct aml *a, size_t mark, uint8_t nelems);
/* Buffer () { <raw bytes> }: the BufferSize is the number of bytes emitted in between. */
size_t aml_buffer_begin(struct aml *a);
void aml_buffer_end(struct aml *a, size_t mark);

/* OperationRegion (name, space, offset, length) */
#define AML_SPACE_SYSTEM_MEMORY 0x00
#define AML_SPACE_SYSTEM_IO     0x01
void aml_opregion(struct aml *a, const char *name, uint8_t space, uint64_t offset, uint64_t len);
/* Field (region, flags) { name, bits; ... } */
#define AML_FIELD_BYTE_ACC 0x01 /* AccessType ByteAcc, NoLock, Preserve */
size_t aml_field_begin(struct aml *a, const char *region, uint8_t flags);
void aml_field_unit(struct aml *a, const char *name, uint32_t bits);
void aml_field_end(struct aml *a, size_t mark);

/* Operators, in prefix order. */
void aml_store(struct aml *a);             /* Store (<source>, <destination>) */
void aml_and(struct aml *a);               /* And (<operand>, <operand>, <target>) */
void aml_lequal(struct aml *a);            /* LEqual (<operand>, <operand>) */
void aml_notify(struct aml *a);            /* Notify (<object>, <value>) */
void aml_local(struct aml *a, unsigned n); /* Local0..Local7 */
void aml_arg(struct aml *a, unsigned n);   /* Arg0..Arg6 */
void aml_null_target(struct aml *a);       /* no target: the result is discarded */

/* ResourceTemplate () { ... }: a Buffer holding descriptors; end adds the end tag. */
size_t aml_restemplate_begin(struct aml *a);
void aml_restemplate_end(struct aml *a, size_t mark);
/* IO (Decode16, min, max, align, len) */
void aml_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len);
/* Memory32Fixed (ReadWrite or ReadOnly, base, len) */
void aml_memory32_fixed(struct aml *a, int writable, uint32_t base, uint32_t len);
/* Interrupt (ResourceConsumer, trigger, polarity, sharing) { gsi }: Extended Interrupt. */
#define AML_IRQ_EDGE       0x02 /* else level-triggered */
#define AML_IRQ_ACTIVE_LOW 0x04 /* else active high */
#define AML_IRQ_SHARED     0x08 /* else exclusive */
void aml_interrupt(struct aml *a, uint8_t flags, uint32_t gsi);

#endif
