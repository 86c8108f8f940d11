/* `ember exec`'s cache of "ready for a command" snapshots (vmm/exec_snapshot.c). */
#ifndef EMBER_EXEC_SNAPSHOT_H
#define EMBER_EXEC_SNAPSHOT_H

#include <limits.h>

#include "snapshot.h"

struct exec_config;

struct exec_cache {
    char dir[PATH_MAX / 2];     /* the entry: <cache>/exec-snapshots/<key> */
    char staging[PATH_MAX / 2]; /* a new entry being written, or "" */
    struct snap_out out;        /* its files, opened before any jail */
};

/* Find the snapshot for this exec's kernel, initramfs, ember build, host and machine shape
 * (vCPUs, RAM, --rootfs, --copy-in, --net). 1: there is one (x->vm.snap set, read and
 * checked); 0: there is none, this exec boots and saves one (x->vm.snap_out set); -1: no
 * cache to use (a warning said why). */
int exec_cache_prepare(struct exec_config *x, struct exec_cache *c);
/* After the exec (outside the jail): publish a complete new snapshot, drop anything else. */
void exec_cache_finish(struct exec_cache *c);

#endif
