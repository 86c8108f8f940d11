/* Building the spec the guest init reads from the stdin port (`ember exec`, ember-oci). */
#include "exec_spec.h"
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER 8 /* magic and length */

void exec_spec_init(struct exec_spec *s)
{
    *s = (struct exec_spec){.cap = 4096};
    s->buf = malloc(s->cap);
    if (!s->buf)
        s->err = -ENOMEM;
    s->len = HEADER;
}

void exec_spec_add(struct exec_spec *s, char kind, const char *val)
{
    size_t n = strlen(val) + 2;

    if (s->err)
        return;
    if (s->len + n > s->cap) {
        size_t cap = (s->len + n) * 2 + 256;
        uint8_t *b = realloc(s->buf, cap);

        if (!b) {
            s->err = -ENOMEM;
            return;
        }
        s->buf = b;
        s->cap = cap;
    }
    s->buf[s->len] = (uint8_t)kind;
    memcpy(s->buf + s->len + 1, val, n - 1);
    s->len += n;
}

void exec_spec_addf(struct exec_spec *s, char kind, const char *fmt, ...)
{
    char val[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(val, sizeof(val), fmt, ap);
    va_end(ap);
    exec_spec_add(s, kind, val);
}

void exec_spec_copy(struct exec_spec *s, const uint8_t *spec, size_t len)
{
    exec_spec_init(s);
    if (s->err || len < HEADER)
        return;
    if (s->len + (len - HEADER) > s->cap) {
        uint8_t *b = realloc(s->buf, len + 256);

        if (!b) {
            s->err = -ENOMEM;
            return;
        }
        s->buf = b;
        s->cap = len + 256;
    }
    memcpy(s->buf + HEADER, spec + HEADER, len - HEADER);
    s->len = len;
}

int exec_spec_finish(struct exec_spec *s)
{
    uint32_t body;

    if (s->err) {
        log_err("exec: out of memory for the command spec");
        return s->err;
    }
    if (s->len - HEADER > SPEC_MAX) {
        log_err("exec: the command, environment and settings take %zu bytes; at most %d",
                s->len - HEADER, SPEC_MAX);
        return -E2BIG;
    }
    body = (uint32_t)(s->len - HEADER);
    memcpy(s->buf, SPEC_MAGIC, 4);
    memcpy(s->buf + 4, &body, 4);
    return 0;
}

void exec_spec_free(struct exec_spec *s)
{
    free(s->buf);
    s->buf = NULL;
}
