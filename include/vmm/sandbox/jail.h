/* The jail: namespaces, pivot_root into a directory holding only what the VM needs, rlimits,
 * cgroup limits, an unprivileged user; a small supervisor outside waits and relays signals. */
#ifndef EMBER_JAIL_H
#define EMBER_JAIL_H

#include "config.h"

/* Enter the jail of cfg->jail (no-op without --jail). Forks: returns 0 in the jailed child,
 * which goes on building the VM (cfg's paths now point into the jail), and 1 in the
 * supervisor with *code set to the child's exit code once it ended. -errno after one error
 * line naming what the host lacks. */
int jail_enter(struct vm_config *cfg, int *code);

/* In the jail, after /dev/kvm is open: become --uid/--gid with no supplementary groups and
 * an empty bounding set. 0 or -errno. */
int jail_drop_ids(const struct vm_config *cfg);

/* In the jail: the pipe the supervisor writes relayed signal numbers to (one byte each), or -1. */
int jail_signal_fd(void);

#endif
