/* Snapshots of a paused microVM: saving one (a job that writes a budget per event loop turn)
 * and restoring from one (read it, check everything, then build the VM from it). The files
 * are described in docs/snapshots.md. */
#ifndef EMBER_SNAPSHOT_H
#define EMBER_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "snapshot_format.h"

#define SNAP_STATE_FILE  "state"
#define SNAP_MEMORY_FILE "memory"
#define SNAP_MAX_VIRTIO  16

struct vm;
struct vm_config;
struct serial;
struct ctrl_page;
struct ged;
struct virtio_dev;
struct snapshot;

/* The parts of a machine a snapshot covers. */
struct snap_parts {
    struct vm *vm;
    struct serial *serial;
    struct ctrl_page *ctrl;
    struct ged *ged;
    struct virtio_dev *virtio;
    int nr_virtio;
    const struct vm_config *cfg;
};

/* `ember exec`: where to save the "ready for a command" snapshot (descriptors opened before
 * the jail), and whether that worked. */
struct snap_out {
    int state_fd, mem_fd;
    int saved; /* 1 once both files are complete */
};

/* ---- saving ---- */

struct snap_save;

/* Every vCPU is parked. Freeze the virtio devices (they finish or give back what they hold
 * and write no more guest memory), capture every vCPU's, the VM's and every device's state,
 * and start on guest memory. 0, or -errno after one error line. */
int snap_save_begin(struct snap_save **out, const struct snap_parts *p, int state_fd, int mem_fd);
/* Write the next part of guest memory; at the end, the state file (written last: a complete
 * state file means a complete snapshot), and thaw the devices. 1 while more is left, 0 when
 * done, -errno after one error line (devices thawed too). */
int snap_save_step(struct snap_save *s);
/* Stop (thawing the devices if needed) and free. */
void snap_save_free(struct snap_save *s);
/* Create DIR (it must not exist) and its two files for snapshot-save. 0 or -errno after one
 * error line naming DIR. */
int snapshot_create_dir(const char *dir, int *state_fd, int *mem_fd);

/* ---- restoring ---- */

/* Read DIR/state, check every section (one error line naming the section on failure), open
 * DIR/memory and check its size. */
int snapshot_open(struct snapshot **out, const char *dir);
/* The same checks on a state file already in memory (buf is kept, not copied): what the fuzz
 * target drives. 0, or -EINVAL with one line in err naming the section. */
int snapshot_decode(struct snapshot **out, const uint8_t *buf, size_t len, char *err,
                    size_t errlen);
void snapshot_free(struct snapshot *s);
/* Take the saved configuration for what the user did not give, and check that what they did
 * give fits the saved machine (vCPUs, RAM, console, disks, networks...). 0 or -EINVAL after
 * one error line naming the flag. */
int snapshot_merge_config(struct snapshot *s, struct vm_config *cfg);
int snapshot_memory_fd(const struct snapshot *s);
/* The snapshot's directory (kept open through a jail), or -1. */
int snapshot_dir_fd(const struct snapshot *s);
/* A cached snapshot (`ember exec`'s) that this host cannot restore: remove its state file so
 * the next exec makes a new one. */
void snapshot_discard(const struct snapshot *s);
/* The virtio device types in slot order (up to max); returns how many there are. */
int snapshot_virtio_ids(const struct snapshot *s, uint32_t *ids, int max);
uint64_t snapshot_ram_size(const struct snapshot *s);
/* After vm_create (on the memory file) and the devices: put the platform and virtio device
 * states back, then the VM's and every vCPU's (created with vm_open_vcpus). 0 or -errno
 * after one error line naming the section. */
int snapshot_restore_devices(const struct snapshot *s, const struct snap_parts *p);
int snapshot_restore_cpus(const struct snapshot *s, struct vm *vm);

#endif
