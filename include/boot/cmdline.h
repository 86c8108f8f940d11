/* Kernel command line assembly: defaults, user text, device parameters and init arguments. */
#ifndef EMBER_CMDLINE_H
#define EMBER_CMDLINE_H

#include <stddef.h>

#include "config.h"

/* The default command line, tuned for a fast boot on ember's devices. */
const char *cmdline_default(enum console_kind console);

/* Build "<base> <user kernel part> <extra> -- <user init part> <init args>" into out.
 * base, user and extra may be NULL. The user text may itself contain " -- ": what follows
 * goes to init, before init_args. Init arguments with spaces are quoted; ones the kernel
 * cannot carry (a double quote, control characters) give -EINVAL with *bad_arg set.
 * Returns the length, -E2BIG if it does not fit in cap (including the NUL). */
int cmdline_build(char *out, size_t cap, const char *base, const char *user, const char *extra,
                  char *const *init_args, int nr_init_args, int *bad_arg);

#endif
