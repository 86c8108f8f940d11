/* A microVM's configuration: one schema for the command line (and, later, the config file). */
#ifndef EMBER_CONFIG_H
#define EMBER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define EMBER_XSTR(x) #x
#define EMBER_STR(x)  EMBER_XSTR(x)

enum console_kind { CONSOLE_KIND_SERIAL, CONSOLE_KIND_VIRTIO, CONSOLE_KIND_NONE };

#define CONFIG_MAX_DISKS   8
#define CONFIG_MAX_NETS    4
#define CONFIG_MAX_HOSTFWD 16

/* --disk PATH[,ro][,id=NAME] */
struct disk_config {
    char path[4096]; /* up to the first comma of the flag's value */
    int readonly;
    char id[21]; /* virtio-blk serial: up to 20 bytes */
};

enum net_backend { NET_USER, NET_TAP, NET_TAP_FD };

/* hostfwd=tcp:HOSTADDR:HOSTPORT-:GUESTPORT */
struct hostfwd {
    int udp;
    uint32_t host_addr; /* network byte order; 0 = any */
    uint16_t host_port;
    uint16_t guest_port;
};

/* --net user[,hostfwd=...][,host-loopback=on][,mac=..] | tap=NAME[,mac=..] | tap-fd=N[,mac=..] */
struct net_config {
    enum net_backend backend;
    char tap_name[16];
    int tap_fd;
    uint8_t mac[6];
    int mac_set;
    struct hostfwd fwd[CONFIG_MAX_HOSTFWD];
    int nr_fwd;
    int host_loopback; /* user: 10.0.2.2 reaches the host's 127.0.0.1 (off unless asked) */
};
enum on_reboot { ON_REBOOT_EXIT, ON_REBOOT_RESTART };

/* --no-sandbox, --seccomp=trap|kill|log|off (include/sandbox.h) */
enum seccomp_action {
    SECCOMP_ACTION_TRAP,
    SECCOMP_ACTION_KILL,
    SECCOMP_ACTION_LOG,
    SECCOMP_ACTION_OFF
};
struct sandbox_config {
    int disabled;
    enum seccomp_action seccomp;
};

#define CONFIG_MAX_CGROUP 8
/* --jail DIR --uid N --gid N [--netns PATH] [--cgroup KEY=VALUE].. (include/jail.h) */
struct jail_config {
    const char *dir; /* NULL: no jail */
    unsigned uid, gid;
    int have_uid, have_gid;
    const char *netns;
    const char *cgroup_parent;
    const char *cgroup[CONFIG_MAX_CGROUP]; /* "memory.max=256M" etc. */
    int nr_cgroup;
    unsigned long long nofile; /* RLIMIT_NOFILE; 0: 1024 */
    unsigned long long fsize;  /* RLIMIT_FSIZE in bytes; 0: unlimited */
    int best_effort;           /* --jail-best-effort: go on without what the host lacks */
};

struct snapshot;
struct snap_out;

struct vm_config {
    const char *kernel;
    const char *initrd;
    const char *cmdline;    /* appended to the default, or replacing it */
    int no_default_cmdline; /* --no-default-cmdline */
    int cpus;
    uint64_t memory; /* bytes */
    int hugepages;
    const char *api_sock;       /* --api-sock PATH: the control socket (docs/api.md) */
    struct config_owned *owned; /* strings kept for --config and `configure` (vmm/config.c) */
    enum console_kind console;
    struct disk_config disk[CONFIG_MAX_DISKS];
    int nr_disks;
    struct net_config net[CONFIG_MAX_NETS];
    int nr_nets;
    int no_rng;         /* --no-rng: no virtio-rng device */
    int virtio_cmdline; /* --virtio-cmdline: virtio_mmio.device= for kernels without ACPI */
    int boot_timer;
    enum on_reboot on_reboot;
    char **init_args; /* after "--": the command the guest init runs */
    int nr_init_args;
    struct sandbox_config sandbox;
    struct jail_config jail;
    struct exec_io *exec;      /* `ember exec`: the command's streams (include/exec_io.h) */
    const char *restore;       /* --restore DIR: start from this snapshot (include/snapshot.h) */
    struct snapshot *snap;     /* the snapshot read from `restore`, once it was read */
    struct snap_out *snap_out; /* `ember exec`: save a snapshot once the guest is ready */
    uint64_t given;            /* flags given (command line, --config, `configure`) */
};

#define CONFIG_DEFAULT_CPUS   1
#define CONFIG_DEFAULT_MEMORY (256ULL << 20)
#define CONFIG_MIN_MEMORY     (16ULL << 20)
#define CONFIG_MAX_MEMORY     (1ULL << 40)

void config_defaults(struct vm_config *cfg);

/* Parse "512M", "2G", "1024" (MiB), "64K". Returns 0 or -EINVAL / -ERANGE. */
int parse_size(const char *s, uint64_t *out);

/* Parse one --disk / --net value; print one error line naming the flag on failure. */
int parse_disk(const char *arg, struct disk_config *d);
int parse_net(const char *arg, struct net_config *n);

/* Parse `ember run` arguments (argv[0] is "run"). Returns 0, 1 if help was printed, or
 * -EINVAL after printing one error line naming the flag. */
int cli_parse_run(int argc, char **argv, struct vm_config *cfg);
void cli_usage_run(void);

/* ---- vmm/config.c: the same flags as one JSON document (--config FILE, `configure`) ---- */
struct json_object;

/* Apply one flag by its long name (no "--") as the command line would; value is NULL for a
 * flag without one. 0, -ENOENT if there is no such flag, or -EINVAL after one error line. */
int cli_apply_flag(struct vm_config *cfg, const char *name, const char *value);
/* 1 if the flag takes a value, 0 if not, -1 if there is no such flag. */
int cli_flag_kind(const char *name);
/* Whether the flag was given (on the command line, in --config or `configure`). */
int cli_flag_given(const struct vm_config *cfg, const char *name);

/* Apply a JSON object whose keys are long flag names ("cpus": 2, "disk": ["a.img,ro"],
 * "hugepages": true) plus "args" (the guest command, like the words after --). With allowed
 * non-NULL, only those keys are accepted. All or nothing: on error cfg is unchanged and err
 * holds one line naming the field. */
int config_apply_json(struct vm_config *cfg, struct json_object *doc, const char *const *allowed,
                      char *err, size_t errlen);
/* The same from JSON text (exactly one document, then only white space). */
int config_apply_text(struct vm_config *cfg, const char *text, size_t len,
                      const char *const *allowed, char *err, size_t errlen);
/* --config FILE: read and apply it (error line printed, naming the file and field). */
int config_load_file(struct vm_config *cfg, const char *path);
/* The configuration as a JSON document in the same schema (caller puts it). */
struct json_object *config_to_json(const struct vm_config *cfg);
/* A kernel or initrd must open for reading (without blocking) and be a regular file: 0, or
 * -errno with *why saying what is wrong (path NULL: nothing to check). */
int config_check_file(const char *path, const char **why);
/* Free what --config and `configure` kept. */
void config_free(struct vm_config *cfg);
/* Undo a config_apply_json that succeeded but was refused later (e.g. a file check): back to
 * `before` (a copy taken before it), freeing what it kept. */
void config_revert(struct vm_config *cfg, const struct vm_config *before);
/* Free what was kept for values the configuration no longer points at (replaced by a later
 * `configure`): what repeated `configure` calls keep stays bounded. */
void config_compact(struct vm_config *cfg);
/* Bytes kept for the configuration's strings. */
size_t config_owned_bytes(const struct vm_config *cfg);

#endif
