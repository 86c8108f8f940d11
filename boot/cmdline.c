/* Kernel command line assembly: defaults, user text, device parameters and init arguments. */
#include "cmdline.h"
#include "arch.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *cmdline_default(enum console_kind console)
{
    /* The console, then the architecture's options for a fast boot on its devices. */
    static char buf[3][512];
    int k = console == CONSOLE_KIND_SERIAL ? 0 : console == CONSOLE_KIND_VIRTIO ? 1 : 2;
    static const char *const con[] = {"console=ttyS0 ", "console=hvc0 ", ""};

    if (!buf[k][0])
        snprintf(buf[k], sizeof(buf[k]), "%s%s", con[k], arch_map.cmdline_default);
    return buf[k];
}

struct buf {
    char *p;
    size_t cap, len;
    int overflow;
};

static void put(struct buf *b, const char *s, size_t n)
{
    if (b->overflow || n >= b->cap - b->len) {
        b->overflow = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* Append a space-separated word list, skipping empty input. */
static void put_words(struct buf *b, const char *s, size_t n)
{
    while (n && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (!n)
        return;
    if (b->len)
        put(b, " ", 1);
    put(b, s, n);
}

static int arg_ok(const char *a)
{
    for (const unsigned char *p = (const unsigned char *)a; *p; p++)
        if (*p == '"' || *p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

/* Where the init part of a user command line starts: after " -- " or a leading "-- ". */
static const char *find_separator(const char *user, size_t *kernel_len)
{
    const char *sep;

    if (strncmp(user, "-- ", 3) == 0 || strcmp(user, "--") == 0) {
        *kernel_len = 0;
        return user + 2;
    }
    sep = strstr(user, " -- ");
    if (!sep) {
        size_t n = strlen(user);
        if (n >= 3 && strcmp(user + n - 3, " --") == 0) {
            *kernel_len = n - 3;
            return user + n;
        }
        *kernel_len = n;
        return NULL;
    }
    *kernel_len = (size_t)(sep - user);
    return sep + 3;
}

int cmdline_build(char *out, size_t cap, const char *base, const char *user, const char *extra,
                  char *const *init_args, int nr_init_args, int *bad_arg)
{
    struct buf b = {.p = out, .cap = cap};
    const char *init_part = NULL;
    size_t kernel_len = 0;

    if (cap == 0)
        return -E2BIG;
    out[0] = '\0';
    for (int i = 0; i < nr_init_args; i++) {
        if (!arg_ok(init_args[i])) {
            if (bad_arg)
                *bad_arg = i;
            return -EINVAL;
        }
    }
    if (base)
        put_words(&b, base, strlen(base));
    if (user) {
        init_part = find_separator(user, &kernel_len);
        put_words(&b, user, kernel_len);
    }
    if (extra)
        put_words(&b, extra, strlen(extra));
    if ((init_part && *init_part) || nr_init_args) {
        put_words(&b, "--", 2);
        if (init_part)
            put_words(&b, init_part, strlen(init_part));
        for (int i = 0; i < nr_init_args; i++) {
            const char *a = init_args[i];
            int quote = *a == '\0' || strpbrk(a, " \t") != NULL;

            put(&b, " ", 1);
            if (quote)
                put(&b, "\"", 1);
            put(&b, a, strlen(a));
            if (quote)
                put(&b, "\"", 1);
        }
    }
    if (b.overflow)
        return -E2BIG;
    return (int)b.len;
}
