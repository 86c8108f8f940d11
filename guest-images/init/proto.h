// The host<->guest-init protocol of `ember exec` and ember-oci: spec entries and ctl lines.
// Shared by ember (vmm/, built by meson) and the guest init (guest-images/init, built static).
#ifndef EMBER_INIT_PROTO_H
#define EMBER_INIT_PROTO_H

// The spec travels first on the ember.stdin port: SPEC_MAGIC, a little-endian 32-bit length,
// then entries, each one kind byte and a NUL-terminated value.
#define SPEC_MAGIC "EMBX"
#define SPEC_MAX   (1 << 20)

enum spec_kind {
    SPEC_ARG = 'a',     // one argument of the command, in order
    SPEC_ENV = 'e',     // K=V
    SPEC_WORKDIR = 'w', // working directory (created for OCI, must exist for exec)
    SPEC_OVERLAY = 'r', // exec: "BYTES": the ember-root disk (that size) read-only under tmpfs
    SPEC_COPYIN = 'c',  // exec: "BYTES": unpack the ember-copyin disk (that size) onto /
    SPEC_NET = 'n',     // exec: configure eth0 for libslirp
    SPEC_MAC = 'm',     // exec: eth0's address ("52:54:00:..."): clones of a snapshot differ
    SPEC_SEED = 's',    // 64 hex digits of the host's entropy, for this VM alone (also OCI)
    SPEC_CLOCK = 't',   // "SEC.NSEC": the time (restored VMs only; also OCI)

    // ember-oci (the agent, init/oci.c)
    SPEC_OCI = 'O',        // OCI mode: two-phase start over the ember.ctl port
    SPEC_ROOT = 'R',       // "rw" or "ro": the ember-root disk is the container's root
    SPEC_ROOT_LATER = 'L', // the host is still writing it: wait for CTL_DISK before mounting
    SPEC_FILES = 'f',      // the ember-copyin disk holds bind-mounted files "0", "1", ...
    SPEC_UID = 'u',        // decimal
    SPEC_GID = 'g',        // decimal
    SPEC_GROUP = 'G',      // one additional gid, decimal
    SPEC_UMASK = 'k',      // decimal
    SPEC_RLIMIT = 'l',     // "RESOURCE SOFT HARD" (numbers; -1 is unlimited)
    SPEC_HOSTNAME = 'h',   // hostname
    SPEC_TERMINAL = 'y',   // the workload gets a pty
    SPEC_TTY_SIZE = 'z',   // "ROWS COLS": the pty's first size
    SPEC_MOUNT = 'M',      // starts a mount: its destination in the container
    SPEC_MNT_TYPE = 'T',   // the mount's file system type
    SPEC_MNT_SRC = 'S',    // its source (for the mount call)
    SPEC_MNT_FLAGS = 'F',  // MS_* flags, decimal
    SPEC_MNT_DATA = 'D',   // file system options
    SPEC_MNT_FILE = 'B',   // a bind-mounted file: its number on the ember-copyin disk
    SPEC_MNT_OPT = 'o',    // a failure to mount it is not an error (cgroup, mqueue)
};

// The ember.ctl port (ember-oci only) carries lines of at most CTL_LINE_MAX bytes, '\n' ended.
#define CTL_LINE_MAX 128
// host -> guest
#define CTL_START   "start"   // exec the workload now
#define CTL_SIGNAL  "signal"  // "signal N ALL": deliver N to the workload (ALL 1: every process)
#define CTL_WINSIZE "winsize" // "winsize ROWS COLS": resize the workload's pty
#define CTL_DISK    "disk"    // the root disk is complete (SPEC_ROOT_LATER)
// guest -> host
#define CTL_READY   "ready"       // set up, waiting for start
#define CTL_STARTED "started"     // "started PID": the workload runs
#define CTL_FAILED  "exec-failed" // "exec-failed ERRNO": the workload could not be started
#define CTL_EXIT    "exit"        // "exit STATUS OOM": the workload ended (all output sent)
#define CTL_ERROR   "error"       // "error TEXT": why the agent failed (for ember's log)

#endif
