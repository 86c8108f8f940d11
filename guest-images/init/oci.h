// ember guest init, OCI mode: the agent ember-oci talks to (oci.c, oci_setup.c).
#ifndef EMBER_INIT_OCI_H
#define EMBER_INIT_OCI_H

#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#define OCI_MAX_ARGS   4096
#define OCI_MAX_ENV    4096
#define OCI_MAX_GROUPS 64
#define OCI_MAX_LIMITS 32
#define OCI_MAX_MOUNTS 128
#define OCI_ROOT       "/mnt/root" // the container's root, mounted by the agent

struct oci_mount {
    const char *dest, *type, *src, *data;
    unsigned long flags;
    int file;     // bind-mounted file: its number on the ember-copyin disk; -1 if not one
    int optional; // a failure is not an error (cgroup, mqueue: the guest kernel has neither)
};

// The container as the host sent it in the spec (proto.h): pointers into the spec buffer.
struct oci_spec {
    char *argv[OCI_MAX_ARGS + 1];
    int argc;
    char *env[OCI_MAX_ENV + 1];
    int nenv;
    const char *cwd;
    int root_ro, root_later, files, terminal;
    long long root_bytes, files_bytes; // the disks' sizes (a restored guest waits for them)
    const char *seed, *now;            // this VM's entropy and, restored, the host's time
    uid_t uid;
    gid_t gid;
    gid_t groups[OCI_MAX_GROUPS];
    int ngroups;
    mode_t umask;
    struct {
        int resource;
        struct rlimit lim;
    } rlimits[OCI_MAX_LIMITS];
    int nrlimits;
    const char *hostname;
    unsigned rows, cols;
    struct oci_mount mounts[OCI_MAX_MOUNTS];
    int nmounts;
};

// Fill spec from the entries (proto.h). 0, or -1 after one error line.
int oci_parse(char *buf, uint32_t len, struct oci_spec *spec);
// Mount the root disk on OCI_ROOT and everything config.json asked for, in its order; default
// devices, hostname, working directory; read-only root last. 0, or -1 after one error line.
int oci_setup(const struct oci_spec *spec);
// The workload's pty (from the container's devpts), sized rows x cols when both are set:
// returns the master and sets *slave. -1 after one error line.
int oci_open_pty(unsigned rows, unsigned cols, int *slave);
// The ember-oci agent: set up, "ready", wait for "start", run the workload, relay signals and
// (with a terminal) the pty, report its exit. Returns the shell-style status init exits with.
int oci_main(int in_fd, int out_fd, int err_fd, char *spec, uint32_t len);
// Called every OCI_LOWMEM_MS while the workload runs: when the guest's available memory stayed
// below 1/32 of it (at least 4 MiB), SIGKILL the largest process, as the OOM killer would.
// *below counts the samples in a row; returns 1 when it killed.
#define OCI_LOWMEM_MS 100
int oci_lowmem_check(int *below);

#endif
