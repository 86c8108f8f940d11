/* The command spec ember sends its guest init first on the stdin port (guest-images/init/proto.h
 * lists the entries): `ember exec`'s command and ember-oci's whole container. */
#ifndef EMBER_EXEC_SPEC_H
#define EMBER_EXEC_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include "../../../guest-images/init/proto.h" /* the entry kinds, shared with the guest init */

struct exec_spec {
    uint8_t *buf;
    size_t len, cap;
    int err; /* the first error (-ENOMEM); later adds do nothing */
};

/* Empty spec with room for the header. */
void exec_spec_init(struct exec_spec *s);
/* One entry: kind and a NUL-terminated value (no NUL inside, by construction). */
void exec_spec_add(struct exec_spec *s, char kind, const char *val);
__attribute__((format(printf, 3, 4))) void exec_spec_addf(struct exec_spec *s, char kind,
                                                          const char *fmt, ...);
/* An unfinished copy of a finished spec (its entries), to add more to. */
void exec_spec_copy(struct exec_spec *s, const uint8_t *spec, size_t len);
/* Fill in the header. 0, or -errno after one error line (out of memory, over SPEC_MAX). */
int exec_spec_finish(struct exec_spec *s);
void exec_spec_free(struct exec_spec *s);

#endif
