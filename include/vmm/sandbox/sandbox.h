/* ember's sandbox: no stray descriptors, no new privileges, no capabilities, seccomp per thread. */
#ifndef EMBER_SANDBOX_H
#define EMBER_SANDBOX_H

#include <sys/types.h>

#include "config.h"

/* The kinds of thread ember runs; each gets its own seccomp allowlist (vmm/seccomp.c). */
enum sandbox_thread {
    SANDBOX_THREAD_LOOP,       /* the main thread: event loop, devices, console, teardown */
    SANDBOX_THREAD_VCPU,       /* KVM_RUN and the port/MMIO handlers it calls */
    SANDBOX_THREAD_SUPERVISOR, /* the jail's parent: waits for the jailed ember, relays signals */
};

/* Before anything else: remember the terminal (restored if a forbidden call stops ember),
 * learn the syscall names for reports, install the SIGSYS handler. Closes every inherited
 * descriptor but 0-2 and those the configuration names (tap-fd=N). 0 or -errno. */
int sandbox_prepare(const struct vm_config *cfg);

/* Setup is done, no guest instruction has run yet: no-new-privileges and every capability
 * dropped (effective, permitted, inheritable, ambient and, when allowed, the bounding set).
 * Threads created afterwards inherit both. 0 or -errno. */
int sandbox_drop_privileges(void);

/* Install the calling thread's seccomp filter (no-op with --no-sandbox or --seccomp=off).
 * `index` numbers vCPUs in messages. 0 or -errno after one error line. */
int sandbox_enter_thread(enum sandbox_thread kind, int index);

/* Whether `ember run` rebuilds the VM on reboot, so the loop filter must allow building. */
void sandbox_allow_rebuild(int on);
/* Whether the loop may save snapshots (control socket, `ember exec`'s ready snapshot). */
void sandbox_allow_snapshot(int on);

/* What the configuration needs beyond every VM's basics; each adds its calls. */
#define SANDBOX_NEEDS_DISK (1u << 0) /* --disk: block I/O */
#define SANDBOX_NEEDS_TAP  (1u << 1) /* --net tap=, tap-fd=: TAP frames and offloads */
#define SANDBOX_NEEDS_INET (1u << 2) /* --net user: libslirp's Internet sockets */
#define SANDBOX_NEEDS_API  (1u << 3) /* --api-sock: the control socket */
#define SANDBOX_NEEDS_TTY  (1u << 4) /* ember-oci with a terminal: its size for the guest */
unsigned sandbox_needs(const struct vm_config *cfg);

/* The syscall allowlist of one thread kind as a libseccomp context (vmm/seccomp.c). */
struct sandbox_filter_opts {
    enum sandbox_thread kind;
    uint32_t default_action; /* SCMP_ACT_TRAP, _KILL_PROCESS or _LOG */
    int rebuild;             /* loop thread: may build a new VM (--on-reboot restart) */
    int snapshot;            /* loop thread: may save snapshots */
    unsigned needs;          /* SANDBOX_NEEDS_* */
    pid_t pid;               /* ember's own: the only process tgkill may signal */
};
void *seccomp_build_filter(const struct sandbox_filter_opts *o);

#endif
