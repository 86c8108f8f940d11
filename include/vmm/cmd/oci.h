/* ember-oci: ember as an OCI runtime with runc's command line (vmm/oci/). Each container is a
 * microVM: the pid in --pid-file is its VMM, the bundle's rootfs becomes an ext4 disk, and the
 * guest init (guest-images/init/oci.c) is the agent that runs the workload. */
#ifndef EMBER_OCI_H
#define EMBER_OCI_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct json_object;

#define OCI_VERSION   "1.0.2"
#define OCI_SPEC      "1.0.2-dev"
#define OCI_MAX_HOOKS 16

/* ---- vmm/oci/main.c, log.c: global flags, errors ---- */

struct oci_globals {
    const char *root; /* --root: state directories <root>/<id>/ */
    const char *log;  /* --log FILE */
    int log_json;     /* --log-format json */
    int debug;        /* --debug */
    int systemd_cgroup;
};
extern struct oci_globals oci_g;

/* Record the error callers see: on stderr ("ember-oci: ...") and, once, in --log (a JSON
 * object with --log-format json: podman reads the whole file as one). Returns -1. */
__attribute__((format(printf, 1, 2))) int oci_error(const char *fmt, ...);
/* While on, oci_error records and prints nothing (optional work: hooks that only warn). */
void oci_quiet(int on);
/* A debug line in --log with --debug. */
__attribute__((format(printf, 1, 2))) void oci_debug(const char *fmt, ...);
/* Now as RFC 3339 with nanoseconds, UTC (go-runc parses state's "created" as a time.Time). */
void oci_rfc3339(char *buf, size_t len);
/* The error so far ("" if none). */
const char *oci_last_error(void);
/* Write the recorded error into --log (once, at exit). */
void oci_log_flush(void);

/* ---- vmm/oci/args.c: a command's options, before or after the ID, runc style ---- */

struct oci_opt {
    const char *name;   /* long name, without "--" */
    char short_name;    /* 0: none */
    int takes_value;    /* 1: --name VALUE or --name=VALUE; 0: a flag (--name[=true|false]) */
    const char **value; /* where the value goes ("true"/"false" for flags) */
};
/* Parse argv (after the command name): options from opts anywhere, the rest positional
 * (up to max_pos, into pos). 0, or -1 after oci_error naming the option. */
int oci_parse_args(int argc, char **argv, const struct oci_opt *opts, const char **pos, int max_pos,
                   int *npos);
/* A flag's value: set and not "false". */
int oci_flag(const char *v);

/* ---- vmm/oci/config.c: the bundle's config.json ---- */

struct oci_mount_cfg {
    const char *dest, *type, *source;
    const char *options[32];
    int nopts;
};

struct oci_hook {
    const char *path;
    const char *args[64];
    int nargs;
    const char *env[64];
    int nenv;
    int timeout; /* seconds; 0: none given */
};

enum oci_hook_kind {
    HOOK_PRESTART,
    HOOK_CREATE_RUNTIME,
    HOOK_POSTSTART,
    HOOK_POSTSTOP,
    HOOK_KINDS
};

struct oci_config {
    struct json_object *doc; /* owns every string below */
    char bundle[PATH_MAX];   /* absolute */
    char rootfs[PATH_MAX];   /* absolute root.path */
    int readonly;
    int terminal;
    unsigned rows, cols; /* process.consoleSize; 0: none */
    const char **args;
    int nargs;
    const char **env;
    int nenv;
    const char *cwd;
    unsigned uid, gid;
    unsigned groups[64];
    int ngroups;
    int have_umask;
    unsigned umask;
    struct {
        int resource; /* RLIMIT_* */
        long long soft, hard;
    } rlimits[32];
    int nrlimits;
    const char *hostname;
    struct oci_mount_cfg *mounts;
    int nmounts;
    long long mem_limit; /* bytes; -1: none */
    long long cpu_quota, cpu_period;
    const char *cpuset_cpus;
    const char *cgroups_path;
    int new_netns;          /* a network namespace of its own (no path) */
    const char *netns_path; /* join this one */
    struct oci_hook hooks[HOOK_KINDS][OCI_MAX_HOOKS];
    int nhooks[HOOK_KINDS];
};

/* Read and check <bundle>/config.json. 0, or -1 after oci_error naming the field. */
int oci_config_load(const char *bundle, struct oci_config *c);
void oci_config_free(struct oci_config *c);
/* The container's PATH (from process.env) or the default. */
const char *oci_config_path(const struct oci_config *c);

/* ---- vmm/oci/state.c: <root>/<id>/ ---- */

enum oci_status { ST_CREATING, ST_CREATED, ST_RUNNING, ST_PAUSED, ST_STOPPED };

struct oci_state {
    char id[1024];
    char dir[PATH_MAX + 1100]; /* <root>/<id> */
    int dirfd;                 /* open while the command runs */
    int lockfd;
    enum oci_status status;       /* as recorded */
    pid_t pid;                    /* the VMM */
    unsigned long long starttime; /* /proc/<pid>/stat field 22 at create: PID reuse check */
    char bundle[PATH_MAX];
    char rootfs[PATH_MAX];
    char created[64];      /* RFC 3339 */
    char cgroup[PATH_MAX]; /* the cgroup we made, to remove at delete ("" none) */
    struct json_object *annotations;
};

/* A valid container ID (runc's rule: [A-Za-z0-9][A-Za-z0-9_.-]*, at most 1024). 0 or -1. */
int oci_check_id(const char *id);
/* Make <root>/<id> (create) or open it (others), locked. -1 after oci_error: "container
 * with id exists: ID" / "container \"ID\" does not exist". */
int oci_state_new(struct oci_state *s, const char *id);
int oci_state_open(struct oci_state *s, const char *id);
/* Write state.json atomically. 0 or -1 after oci_error. */
int oci_state_save(struct oci_state *s);
/* The status now: the recorded one, or stopped when the VMM is gone (or its pid reused). */
enum oci_status oci_state_status(const struct oci_state *s);
const char *oci_status_name(enum oci_status st);
/* The state JSON the OCI spec defines (for `state` and hooks). */
struct json_object *oci_state_json(const struct oci_state *s);
/* Remove <root>/<id> and everything in it; closes the state. */
void oci_state_remove(struct oci_state *s);
void oci_state_close(struct oci_state *s);
/* /proc/<pid>/stat field 22, or 0 if the process is gone (or a zombie). */
unsigned long long oci_proc_starttime(pid_t pid);
/* The VMM's exit record (<state>/exit) says the guest's OOM killer struck: create the bundle's
 * "oom" file, where podman and CRI-O look (conmon writes it for a host OOM kill). */
void oci_note_oom(const struct oci_state *s, const char *bundle);
/* The path of a file in the state directory. */
void oci_state_path(const struct oci_state *s, const char *name, char *buf, size_t len);

/* ---- vmm/oci/rootfs.c: the container's root disk ---- */

/* Find process.args[0] in the rootfs as runc would (PATH from process.env, symlinks resolved
 * inside the rootfs). 0, or after oci_error with runc's texts 127 ("executable file not found
 * in $PATH", "no such file or directory") or 126 ("permission denied", other failures). */
int oci_lookup_executable(const struct oci_config *c);
/* The root disk in two steps, so mkfs overlaps the guest's boot: prepare sizes the tree and
 * makes <state>/rootfs.img a sparse file of the disk's final size (the VMM can open it);
 * fill runs mkfs.ext4 -d into it. 0 or -1 after oci_error. */
struct oci_rootfs {
    char img[PATH_MAX + 1200];
    unsigned long long bytes, files, tree_bytes;
    char key[33]; /* the tree's identity (rootfs_cache.c); "" if none */
    const char *mkfs;
    struct timespec t0;
    long ms; /* mkfs's time, for the debug log */
};
int oci_rootfs_prepare(const struct oci_config *c, const struct oci_state *s, struct oci_rootfs *r);
int oci_rootfs_fill(const struct oci_config *c, struct oci_rootfs *r);
/* rootfs_cache.c: walk the tree: its size, files and identity. 0 or -errno. */
int oci_rootfs_walk(const char *root, struct oci_rootfs *r);
/* Copy the cached disk of r->key into r->img: 0, or -errno (none cached: -ENOENT). */
int oci_rootfs_from_cache(struct oci_rootfs *r);
/* Keep a copy of the freshly made r->img for later containers of the same tree. */
void oci_rootfs_to_cache(const struct oci_rootfs *r);

/* ---- vmm/oci/spec.c: the guest's spec (proto.h entries) and the bind-mounted files ---- */

struct exec_spec;
/* Translate the config into spec entries (the root disk of root_bytes); bind-mounted files are
 * listed in files[] (host paths, "PATH:/N" specs for copyin_pack), their disk's SPEC_FILES
 * entry and exec_spec_finish are the caller's. 0, or -1 after oci_error (a bind-mounted
 * directory, a mount type a VM cannot have). */
int oci_build_spec(const struct oci_config *c, unsigned long long root_bytes,
                   struct exec_spec *spec, char **files, int *nfiles, int max_files);

/* ---- vmm/oci/cgroup.c ---- */

/* Put pid into cgroupsPath (made if missing) with the memory and CPU limits of the config;
 * writes the directory made into made (size PATH_MAX; "" if none). 0 or -1 after oci_error. */
int oci_cgroup_enter(const struct oci_config *c, pid_t pid, char *made, size_t len);
/* Remove the cgroup made at create (delete). */
void oci_cgroup_remove(const char *made);

/* ---- vmm/oci/vmm.c: the container's VMM (the process in --pid-file) ---- */

struct oci_launch {
    const struct oci_config *cfg;
    const struct oci_state *st;
    int console_slave; /* terminal: the pty's slave; -1 */
    int ready_fd;      /* the VMM writes one byte here once the agent is ready */
    int go_fd;         /* one byte once create has put the VMM into its cgroup */
    int err_fd;        /* (the VMM's own) the container's stderr, once fd 2 is the log */
    const char *image; /* rootfs.img */
    int disk_fd;       /* one byte once mkfs has filled rootfs.img (the agent waits for it) */
    const char *files; /* the bind-mounted files' image, or NULL */
    struct exec_spec *spec;
};
/* In the forked child: become the VMM (monitor and ember) and run the VM to its end.
 * Returns the exit code: the workload's status, 128+n if it was killed by signal n, 255 if
 * the VM failed. */
int oci_vmm_main(struct oci_launch *l);
/* Pass the engine's signals (INT, TERM, HUP, QUIT, USR1, USR2) on to child until it ends;
 * its status, 128+n if signal n killed it. */
int oci_relay_and_wait(pid_t child);
/* Guest RAM (bytes) and vCPUs for the config's limits. */
uint64_t oci_guest_memory(const struct oci_config *c);
int oci_guest_cpus(const struct oci_config *c);

/* ---- vmm/oci/qmp_client.c: talking to a container's VMM ---- */

/* Run one command on the VMM's control socket (<state>/vm/ctl.sock); args may be NULL (taken).
 * 0 with *ret (may be NULL; caller puts it), or -1 with the error's text in err. */
int oci_qmp(const struct oci_state *s, const char *cmd, struct json_object *args,
            struct json_object **ret, char *err, size_t errlen, int timeout_ms);

/* ---- vmm/oci/hooks.c ---- */

/* Run the config's hooks of one kind with the state JSON on stdin. 0 or -1 after oci_error. */
int oci_run_hooks(const struct oci_config *c, enum oci_hook_kind kind, const struct oci_state *s);

/* ---- the commands (vmm/oci/create.c, commands.c, info.c) ---- */

int oci_cmd_create(int argc, char **argv, int run);
int oci_cmd_start(int argc, char **argv);
int oci_cmd_state(int argc, char **argv);
int oci_cmd_kill(int argc, char **argv);
int oci_cmd_delete(int argc, char **argv);
int oci_cmd_ps(int argc, char **argv);
int oci_cmd_pause(int argc, char **argv, int pause);
int oci_cmd_features(int argc, char **argv);
int oci_cmd_spec(int argc, char **argv);
/* Start a created container (also `run`): 0, or the exit code after oci_error. */
int oci_start(struct oci_state *s);

/* Entry point: `ember-oci ...` (argv[0] named ember-oci) or `ember oci ...`. */
int oci_main(int argc, char **argv);

#endif
