/* The jail's root directory (vmm/jail_root.c): checked, filled with empty files to mount on,
 * entered, and emptied again, all through descriptors and never through a symlink. */
#ifndef EMBER_JAIL_ROOT_H
#define EMBER_JAIL_ROOT_H

#include <limits.h>

#include "config.h"

#define JAIL_MAX_ENTRIES (CONFIG_MAX_DISKS + 4)
#define JAIL_MAX_DIRS    4

/* A host file or device, bind-mounted in the jail under name. */
struct jail_entry {
    char host[PATH_MAX];
    char name[32]; /* in the jail, from / */
    int readonly;
    int dir;     /* index in jail_root.dir of the directory holding it; -1: the jail itself */
    int created; /* the empty file is ours (removed afterwards) */
};

struct jail_root {
    const char *path; /* --jail DIR */
    int fd;           /* DIR as checked (O_PATH) */
    struct jail_entry e[JAIL_MAX_ENTRIES];
    int n;
    struct {
        char name[32]; /* from the jail: "dev", "dev/net" */
        int fd;        /* O_PATH, checked like DIR */
        int parent;    /* index of its parent here; -1: the jail itself */
        int created;   /* ours to remove afterwards */
    } dir[JAIL_MAX_DIRS];
    int ndirs;
};

void jail_root_init(struct jail_root *r);
/* Open DIR and check it: a directory owned by root that its group and others cannot write
 * to. 0, or -errno after one error line naming DIR and the fix. */
int jail_root_open(struct jail_root *r, const char *path);
/* Plan an entry: host bind-mounted on name ("/kernel", "/dev/kvm"). 0 or -E2BIG. */
int jail_root_add(struct jail_root *r, const char *host, const char *name, int readonly);
/* Root, before the fork: the directories (checked like DIR) and empty files of every entry,
 * made beneath DIR without following any symlink. 0 or -errno after one error line. */
int jail_root_fill(struct jail_root *r);
/* The jailed child, in its own mount namespace: bind every entry on its file, then make DIR
 * the root (pivot_root). 0 or -errno after one error line. */
int jail_root_enter(const struct jail_root *r);
/* The jailed child, once inside: close the descriptors of DIR and its directories, which lead
 * outside the jail (openat from one reaches the whole host file system). */
void jail_root_forget(struct jail_root *r);
/* The supervisor, after the child: remove the files and directories jail_root_fill made
 * (unlinkat on the descriptors: nothing is resolved by path again), close everything. */
void jail_root_clear(struct jail_root *r);

#endif
