/* The control socket's commands: argument checks, the state each command needs, and what it
 * does to the VM (docs/api.md describes every one). */
#include "control.h"
#include "arch.h"
#include "devices.h"
#include "hostfile.h"
#include "log.h"
#include "qmp.h"
#include "snapshot.h"
#include "snapshot_run.h"
#include "virtio.h"
#include "virtio_devices.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VIRTIO_ID_BLOCK 2

/* States a command may run in. */
#define ST_PRE  (1u << CTL_PRELAUNCH)
#define ST_RUN  (1u << CTL_RUNNING)
#define ST_STOP (1u << CTL_PAUSED)
#define ST_DOWN (1u << CTL_SHUTDOWN)
#define ST_VM   (ST_RUN | ST_STOP)
#define ST_ANY  (ST_PRE | ST_RUN | ST_STOP | ST_DOWN)

struct command {
    const char *name;
    enum qmp_result (*fn)(struct control *c, struct qmp_request *req);
    unsigned states;
    /* Arguments: "name:T" with T s(tring) b(ool) i(nt) o(bject) a(rray) *(any); a leading
     * '?' marks an optional one. NULL: no arguments. The configure command checks its own. */
    const char *const *args;
};

static const char *const state_names[] = {"prelaunch", "running", "paused", "shutdown"};

/* ---- argument checking ---- */

static const char *type_name(char t)
{
    switch (t) {
    case 's':
        return "string";
    case 'b':
        return "boolean";
    case 'i':
        return "integer";
    case 'o':
        return "object";
    case 'a':
        return "array";
    default:
        return "value";
    }
}

static int type_ok(char t, json_object *v)
{
    switch (t) {
    case 's':
        return json_object_is_type(v, json_type_string);
    case 'b':
        return json_object_is_type(v, json_type_boolean);
    case 'i':
        return json_object_is_type(v, json_type_int);
    case 'o':
        return json_object_is_type(v, json_type_object);
    case 'a':
        return json_object_is_type(v, json_type_array);
    default:
        return 1;
    }
}

/* Find "name:T" in spec; returns the type letter and whether it is optional. */
static char spec_find(const char *const *spec, const char *key, size_t keylen, int *optional)
{
    for (; spec && *spec; spec++) {
        const char *s = *spec;

        *optional = s[0] == '?';
        s += *optional;
        if (strncmp(s, key, keylen) == 0 && s[keylen] == ':')
            return s[keylen + 1];
    }
    return 0;
}

static enum qmp_result check_args(const struct command *cmd, struct qmp_request *req)
{
    int optional;

    json_object_object_foreach(req->args, key, val)
    {
        char t = spec_find(cmd->args, key, strlen(key), &optional);

        if (!t)
            return qmp_error(req, NULL, "Parameter '%.64s' is unexpected", key);
        if (!type_ok(t, val))
            return qmp_error(req, NULL, "Invalid parameter type for '%.64s', expected: %s", key,
                             type_name(t));
        if (t == 's' &&
            (size_t)json_object_get_string_len(val) != strlen(json_object_get_string(val)))
            return qmp_error(req, NULL, "Parameter '%.64s' holds a NUL byte", key);
    }
    for (const char *const *s = cmd->args; s && *s; s++) {
        char name[64];

        if ((*s)[0] == '?')
            continue;
        snprintf(name, sizeof(name), "%.*s", (int)strcspn(*s, ":"), *s);
        if (!json_object_object_get_ex(req->args, name, NULL))
            return qmp_error(req, NULL, "Parameter '%s' is missing", name);
    }
    return QMP_OK;
}

static const char *arg_str(struct qmp_request *req, const char *key)
{
    json_object *v;

    return json_object_object_get_ex(req->args, key, &v) ? json_object_get_string(v) : NULL;
}

/* ---- queries ---- */

static enum qmp_result cmd_query_version(struct control *c, struct qmp_request *req)
{
    (void)c;
    req->ret = control_version_object();
    return QMP_OK;
}

static enum qmp_result cmd_query_commands(struct control *c, struct qmp_request *req);

static enum qmp_result cmd_query_status(struct control *c, struct qmp_request *req)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "running", json_object_new_boolean(c->state == CTL_RUNNING));
    json_object_object_add(o, "singlestep", json_object_new_boolean(0));
    json_object_object_add(o, "status", json_object_new_string(state_names[c->state]));
    if (c->state == CTL_SHUTDOWN && c->shutdown_reason)
        json_object_object_add(o, "reason", json_object_new_string(c->shutdown_reason));
    req->ret = o;
    return QMP_OK;
}

static enum qmp_result cmd_query_cpus_fast(struct control *c, struct qmp_request *req)
{
    json_object *a = json_object_new_array();

    for (int i = 0; i < c->mv.vm->ncpus; i++) {
        json_object *o = json_object_new_object(), *props = json_object_new_object();
        char path[64];

        snprintf(path, sizeof(path), "/machine/unattached/device[%d]", i);
        json_object_object_add(o, "cpu-index", json_object_new_int(i));
        json_object_object_add(o, "qom-path", json_object_new_string(path));
        json_object_object_add(o, "thread-id", json_object_new_int(c->mv.vm->vcpu[i].tid));
        json_object_object_add(o, "target", json_object_new_string(arch_map.name));
        json_object_object_add(props, "socket-id", json_object_new_int(0));
        json_object_object_add(props, "core-id", json_object_new_int(i));
        json_object_object_add(props, "thread-id", json_object_new_int(0));
        json_object_object_add(o, "props", props);
        json_object_array_add(a, o);
    }
    req->ret = a;
    return QMP_OK;
}

void control_drive_name(const struct vm_config *cfg, int i, char *buf, size_t n)
{
    if (cfg->disk[i].id[0])
        snprintf(buf, n, "%s", cfg->disk[i].id);
    else
        snprintf(buf, n, "disk%d", i);
}

static enum qmp_result cmd_query_block(struct control *c, struct qmp_request *req)
{
    json_object *a = json_object_new_array();
    struct blk_info *info = malloc(sizeof(*info));

    if (!info) {
        json_object_put(a);
        return qmp_error(req, NULL, "out of memory");
    }
    for (int i = 0; i < c->cfg->nr_disks; i++) {
        json_object *o = json_object_new_object(), *ins = json_object_new_object();
        json_object *img = json_object_new_object();
        char name[32];

        control_drive_name(c->cfg, i, name, sizeof(name));
        snprintf(info->path, sizeof(info->path), "%s", c->cfg->disk[i].path);
        info->readonly = c->cfg->disk[i].readonly;
        info->size = 0;
        if (c->mv.vm && i < c->mv.nr_virtio && c->mv.virtio[i].device_id == VIRTIO_ID_BLOCK)
            virtio_blk_info(&c->mv.virtio[i], info);
        json_object_object_add(o, "device", json_object_new_string(name));
        json_object_object_add(o, "locked", json_object_new_boolean(0));
        json_object_object_add(o, "removable", json_object_new_boolean(0));
        json_object_object_add(o, "type", json_object_new_string("unknown"));
        json_object_object_add(o, "io-status", json_object_new_string("ok"));
        json_object_object_add(ins, "file", json_object_new_string(info->path));
        json_object_object_add(ins, "ro", json_object_new_boolean(info->readonly));
        json_object_object_add(ins, "drv", json_object_new_string("raw"));
        json_object_object_add(img, "filename", json_object_new_string(info->path));
        json_object_object_add(img, "format", json_object_new_string("raw"));
        json_object_object_add(img, "virtual-size", json_object_new_int64((int64_t)info->size));
        json_object_object_add(ins, "image", img);
        json_object_object_add(o, "inserted", ins);
        json_object_array_add(a, o);
    }
    free(info);
    req->ret = a;
    return QMP_OK;
}

static const char *const exit_names[32] = {
        [KVM_EXIT_UNKNOWN] = "unknown",
        [KVM_EXIT_EXCEPTION] = "exception",
        [KVM_EXIT_IO] = "io",
        [KVM_EXIT_HYPERCALL] = "hypercall",
        [KVM_EXIT_DEBUG] = "debug",
        [KVM_EXIT_HLT] = "hlt",
        [KVM_EXIT_MMIO] = "mmio",
        [KVM_EXIT_IRQ_WINDOW_OPEN] = "irq-window-open",
        [KVM_EXIT_SHUTDOWN] = "shutdown",
        [KVM_EXIT_FAIL_ENTRY] = "fail-entry",
        [KVM_EXIT_INTR] = "intr",
        [KVM_EXIT_SET_TPR] = "set-tpr",
        [KVM_EXIT_TPR_ACCESS] = "tpr-access",
        [KVM_EXIT_NMI] = "nmi",
        [KVM_EXIT_INTERNAL_ERROR] = "internal-error",
        [KVM_EXIT_SYSTEM_EVENT] = "system-event",
};

/* Resident set size from /proc/self/statm (opened before the sandbox), in bytes; -1 when
 * unreadable. */
static long long rss_bytes(int fd)
{
    char buf[128];
    long long pages[2] = {-1, -1};
    ssize_t n;

    if (fd < 0)
        return -1;
    n = pread(fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    if (sscanf(buf, "%lld %lld", &pages[0], &pages[1]) != 2)
        return -1;
    return pages[1] * sysconf(_SC_PAGESIZE);
}

static json_object *vcpu_metrics(const struct vm *vm)
{
    json_object *a = json_object_new_array();

    for (int i = 0; vm && i < vm->ncpus; i++) {
        json_object *o = json_object_new_object(), *ex = json_object_new_object();

        for (int r = 0; r < 32; r++) {
            unsigned long n = atomic_load(&vm->vcpu[i].exits[r]);
            char other[24];

            if (!n)
                continue;
            snprintf(other, sizeof(other), "reason-%d", r);
            json_object_object_add(ex, exit_names[r] ? exit_names[r] : other,
                                   json_object_new_int64((int64_t)n));
        }
        json_object_object_add(o, "cpu-index", json_object_new_int(i));
        json_object_object_add(o, "exits", ex);
        json_object_array_add(a, o);
    }
    return a;
}

static enum qmp_result cmd_query_metrics(struct control *c, struct qmp_request *req)
{
    json_object *o = json_object_new_object(), *devs = json_object_new_array();
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    json_object_object_add(o, "uptime-ms",
                           json_object_new_int64((now.tv_sec - c->start_wall.tv_sec) * 1000 +
                                                 (now.tv_nsec - c->start_wall.tv_nsec) / 1000000));
    json_object_object_add(o, "rss-bytes", json_object_new_int64(rss_bytes(c->statm_fd)));
    json_object_object_add(o, "vcpus", vcpu_metrics(c->mv.vm));
    for (int i = 0; c->mv.vm && i < c->mv.nr_virtio; i++) {
        struct virtio_dev *d = &c->mv.virtio[i];
        json_object *dv = json_object_new_object();
        char name[32];

        if (d->device_id == VIRTIO_ID_BLOCK && i < c->cfg->nr_disks) {
            control_drive_name(c->cfg, i, name, sizeof(name));
            json_object_object_add(dv, "device", json_object_new_string(name));
        }
        json_object_object_add(dv, "type", json_object_new_string(d->name));
        json_object_object_add(dv, "requests", json_object_new_int64((int64_t)d->stat_requests));
        json_object_object_add(dv, "bytes", json_object_new_int64((int64_t)d->stat_bytes));
        json_object_object_add(dv, "errors", json_object_new_int64((int64_t)d->stat_errors));
        json_object_object_add(dv, "log-suppressed",
                               json_object_new_int64((int64_t)log_guest_suppressed(&d->log_limit)));
        json_object_array_add(devs, dv);
    }
    json_object_object_add(o, "devices", devs);
    if (c->mv.vm)
        json_object_object_add(o, "last-resume-us",
                               json_object_new_double((double)c->mv.vm->resume_ns / 1e3));
    json_object_object_add(o, "clients", json_object_new_int(qmp_server_clients(c->qmp)));
    json_object_object_add(o, "guest-log-suppressed",
                           json_object_new_int64((int64_t)log_guest_suppressed(NULL)));
    req->ret = o;
    return QMP_OK;
}

static enum qmp_result cmd_query_config(struct control *c, struct qmp_request *req)
{
    req->ret = config_to_json(c->cfg);
    return QMP_OK;
}

/* ---- configuration before boot ---- */

static const char *const configurable[] = {
        "kernel",    "initrd", "cmdline",   "no-default-cmdline",
        "cpus",      "memory", "hugepages", "console",
        "disk",      "net",    "no-rng",    "boot-timer",
        "on-reboot", "args",   "restore",   "virtio-cmdline",
        NULL,
};

/* A kernel or initrd must be a readable regular file, said now rather than at `cont`. */
static int check_file(struct qmp_request *req, const char *field, const char *path)
{
    const char *why;

    if (!config_check_file(path, &why))
        return 0;
    qmp_error(req, NULL, "field '%s': %.400s: %s", field, path, why);
    return -1;
}

/* A disk must open the way the VM will open it (without blocking: no FIFO, no directory). */
static int check_disk(struct qmp_request *req, const struct disk_config *d)
{
    struct host_file f;
    const char *why;
    int err = host_file_open(d->path, d->readonly ? O_RDONLY : O_RDWR,
                             HOSTFILE_REGULAR | HOSTFILE_BLOCK, &f, &why);

    if (err) {
        qmp_error(req, NULL, "field 'disk': %.400s: %s%s", d->path, why,
                  err == -EACCES || err == -EROFS ? " (add ,ro to attach it read-only)" : "");
        return -1;
    }
    close(f.fd);
    return 0;
}

/* `restore`: read and check the snapshot now, so a bad one is reported here and not at cont. */
static int open_snapshot(struct control *c, struct qmp_request *req)
{
    char text[QMP_DESC_MAX];
    struct snapshot *s;

    log_capture(text, sizeof(text));
    if (snapshot_open(&s, c->cfg->restore)) {
        log_capture(NULL, 0);
        qmp_error(req, NULL, "field 'restore': %s", text);
        return -1;
    }
    log_capture(NULL, 0);
    snapshot_free(c->cfg->snap);
    c->cfg->snap = s;
    return 0;
}

static enum qmp_result cmd_configure(struct control *c, struct qmp_request *req)
{
    struct vm_config *before = malloc(sizeof(*before));
    char err[QMP_DESC_MAX];
    int bad = 0;

    if (!before)
        return qmp_error(req, NULL, "out of memory");
    *before = *c->cfg;
    if (config_apply_json(c->cfg, req->args, configurable, err, sizeof(err))) {
        free(before);
        return qmp_error(req, NULL, "%s", err);
    }
    if (c->cfg->kernel != before->kernel)
        bad = check_file(req, "kernel", c->cfg->kernel);
    if (!bad && c->cfg->initrd != before->initrd)
        bad = check_file(req, "initrd", c->cfg->initrd);
    for (int i = 0; !bad && i < c->cfg->nr_disks; i++)
        bad = check_disk(req, &c->cfg->disk[i]);
    if (!bad && c->cfg->restore != before->restore)
        bad = open_snapshot(c, req);
    if (bad)
        config_revert(c->cfg, before); /* nothing of the refused request is kept */
    else
        config_compact(c->cfg); /* nor what this one replaced */
    free(before);
    return bad ? QMP_ERR : QMP_OK;
}

/* ---- running ---- */

void control_pause_done(struct control *c)
{
    c->paused_wanted = 0;
    c->state = CTL_PAUSED;
    qmp_event(c->qmp, "STOP", NULL);
    qmp_complete(c->qmp, "stop", NULL, NULL);
}

static enum qmp_result cmd_stop(struct control *c, struct qmp_request *req)
{
    if (c->state == CTL_PAUSED)
        return QMP_OK;
    c->paused_wanted = 1;
    if (vm_pause(c->mv.vm)) {
        control_pause_done(c);
        return QMP_OK;
    }
    return qmp_defer(req, "stop");
}

static enum qmp_result cmd_cont(struct control *c, struct qmp_request *req)
{
    if (c->state == CTL_PRELAUNCH) {
        if (c->start_requested)
            return qmp_defer(req, "cont");
        if (!c->cfg->kernel && !c->cfg->snap)
            return qmp_error(req, NULL,
                             "no kernel configured; send configure with {\"kernel\": PATH} (or "
                             "{\"restore\": DIR}) first");
        c->start_requested = 1;
        return qmp_defer(req, "cont");
    }
    if (c->state == CTL_RUNNING && !c->paused_wanted)
        return QMP_OK;
    if (c->paused_wanted) /* a stop still waiting for vCPUs: it completes, then we resume */
        control_pause_done(c);
    vm_resume(c->mv.vm);
    c->state = CTL_RUNNING;
    qmp_event(c->qmp, "RESUME", NULL);
    return QMP_OK;
}

static enum qmp_result cmd_system_powerdown(struct control *c, struct qmp_request *req)
{
    int err = c->mv.power_button(c->mv.power_opaque);

    if (err == -ENODEV)
        return qmp_error(req, NULL, "this %s machine has no power button", arch_map.name);
    if (err)
        return qmp_error(req, NULL, "cannot press the power button: %s", strerror(-err));
    qmp_event(c->qmp, "POWERDOWN", NULL);
    return QMP_OK;
}

static enum qmp_result cmd_system_reset(struct control *c, struct qmp_request *req)
{
    (void)req;
    c->host_reset = 1;
    vm_request_stop(c->mv.vm, STOP_RESET);
    return QMP_OK;
}

static enum qmp_result cmd_quit(struct control *c, struct qmp_request *req)
{
    (void)req;
    if (c->mv.vm)
        vm_request_stop(c->mv.vm, STOP_QUIT);
    else
        c->quit_requested = 1;
    return QMP_OK;
}

static enum qmp_result cmd_change_medium(struct control *c, struct qmp_request *req)
{
    const char *name = arg_str(req, "device"), *id = arg_str(req, "id");
    const char *file = arg_str(req, "filename"), *fmt = arg_str(req, "format");
    const char *mode = arg_str(req, "read-only-mode");
    int idx = -1, ro, err;
    char err_text[QMP_DESC_MAX];

    if (!name)
        name = id;
    if (!name)
        return qmp_error(req, NULL, "Parameter 'device' is missing");
    if (fmt && strcmp(fmt, "raw") != 0)
        return qmp_error(req, NULL, "format '%.32s' is not supported; ember disks are raw", fmt);
    for (int i = 0; i < c->cfg->nr_disks; i++) {
        char n[32];

        control_drive_name(c->cfg, i, n, sizeof(n));
        if (strcmp(n, name) == 0)
            idx = i;
    }
    if (idx < 0 || idx >= c->mv.nr_virtio || c->mv.virtio[idx].device_id != VIRTIO_ID_BLOCK)
        return qmp_error(req, "DeviceNotFound",
                         "Device '%.64s' not found (query-block lists the drives)", name);
    ro = c->cfg->disk[idx].readonly;
    if (mode && strcmp(mode, "read-only") == 0)
        ro = 1;
    else if (mode && strcmp(mode, "read-write") == 0)
        ro = 0;
    else if (mode && strcmp(mode, "retain") != 0)
        return qmp_error(req, NULL,
                         "read-only-mode must be retain, read-only or read-write, not '%.32s'",
                         mode);
    if (strlen(file) >= sizeof(c->cfg->disk[idx].path))
        return qmp_error(req, NULL, "filename is longer than %zu bytes",
                         sizeof(c->cfg->disk[idx].path) - 1);
    log_capture(err_text, sizeof(err_text));
    err = virtio_blk_change(&c->mv.virtio[idx], file, ro);
    log_capture(NULL, 0);
    if (err)
        return qmp_error(req, NULL, "%s", err_text[0] ? err_text : strerror(-err));
    /* A reset boots with the new file too. */
    snprintf(c->cfg->disk[idx].path, sizeof(c->cfg->disk[idx].path), "%s", file);
    c->cfg->disk[idx].readonly = ro;
    return QMP_OK;
}

/* ---- snapshots ---- */

static void remove_snapshot_dir(const char *dir)
{
    char path[4200];

    snprintf(path, sizeof(path), "%s/" SNAP_STATE_FILE, dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/" SNAP_MEMORY_FILE, dir);
    unlink(path);
    rmdir(dir);
}

static void snapshot_done(void *opaque, int err, const char *why)
{
    struct control *c = opaque;
    char desc[QMP_DESC_MAX];

    close(c->snap_state_fd);
    close(c->snap_mem_fd);
    c->snap_state_fd = c->snap_mem_fd = -1;
    if (err) {
        remove_snapshot_dir(c->snap_dir);
        snprintf(desc, sizeof(desc), "snapshot-save: %s",
                 err == -ECANCELED ? "the VM stopped before the snapshot was complete"
                                   : (why[0] ? why : strerror(-err)));
    }
    qmp_complete(c->qmp, "snapshot-save", NULL, err ? desc : NULL);
}

static enum qmp_result cmd_snapshot_save(struct control *c, struct qmp_request *req)
{
    const char *dir = arg_str(req, "dir");
    char text[QMP_DESC_MAX];
    int err;

    if (c->state != CTL_PAUSED || c->paused_wanted)
        return qmp_error(req, NULL, "'snapshot-save' needs a paused VM; send 'stop' first");
    if (snap_runner_busy(c->mv.snap))
        return qmp_error(req, NULL, "a snapshot is being saved already");
    if (strlen(dir) >= sizeof(c->snap_dir) - 16)
        return qmp_error(req, NULL, "dir is longer than %zu bytes", sizeof(c->snap_dir) - 17);
    snprintf(c->snap_dir, sizeof(c->snap_dir), "%s", dir);
    log_capture(text, sizeof(text));
    err = snapshot_create_dir(dir, &c->snap_state_fd, &c->snap_mem_fd);
    if (!err) {
        err = snap_runner_start(c->mv.snap, &c->mv.parts, c->snap_state_fd, c->snap_mem_fd,
                                snapshot_done, c);
        if (err) {
            close(c->snap_state_fd);
            close(c->snap_mem_fd);
            c->snap_state_fd = c->snap_mem_fd = -1;
            remove_snapshot_dir(dir);
        }
    }
    log_capture(NULL, 0);
    if (err)
        return qmp_error(req, NULL, "%s", text[0] ? text : strerror(-err));
    return qmp_defer(req, "snapshot-save");
}

/* ---- the table ---- */

static const char *const args_snapshot_save[] = {"dir:s", NULL};

static const char *const args_change_medium[] = {
        "?device:s", "?id:s", "filename:s", "?format:s", "?read-only-mode:s", "?force:b", NULL,
};

static const char *const args_signal[] = {"signal:i", "?all:b", NULL};

static const struct command commands[] = {
        {"query-version", cmd_query_version, ST_ANY, NULL},
        {"query-commands", cmd_query_commands, ST_ANY, NULL},
        {"query-status", cmd_query_status, ST_ANY, NULL},
        {"query-config", cmd_query_config, ST_ANY, NULL},
        {"query-block", cmd_query_block, ST_ANY, NULL},
        {"query-metrics", cmd_query_metrics, ST_ANY, NULL},
        {"query-cpus-fast", cmd_query_cpus_fast, ST_VM, NULL},
        {"configure", cmd_configure, ST_PRE, NULL},
        {"cont", cmd_cont, ST_PRE | ST_VM, NULL},
        {"stop", cmd_stop, ST_VM, NULL},
        {"system_powerdown", cmd_system_powerdown, ST_VM, NULL},
        {"system_reset", cmd_system_reset, ST_VM, NULL},
        {"blockdev-change-medium", cmd_change_medium, ST_VM, args_change_medium},
        {"snapshot-save", cmd_snapshot_save, ST_VM, args_snapshot_save},
        {"quit", cmd_quit, ST_PRE | ST_VM, NULL},
        {"x-ember-start", control_cmd_start, ST_VM, NULL},
        {"x-ember-signal", control_cmd_signal, ST_VM, args_signal},
};

#define NR_COMMANDS (int)(sizeof(commands) / sizeof(commands[0]))

static enum qmp_result cmd_query_commands(struct control *c, struct qmp_request *req)
{
    json_object *a = json_object_new_array(), *o = json_object_new_object();

    (void)c;
    json_object_object_add(o, "name", json_object_new_string("qmp_capabilities"));
    json_object_array_add(a, o);
    for (int i = 0; i < NR_COMMANDS; i++) {
        o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(commands[i].name));
        json_object_array_add(a, o);
    }
    req->ret = a;
    return QMP_OK;
}

enum qmp_result control_dispatch(void *opaque, struct qmp_request *req)
{
    struct control *c = opaque;
    const struct command *cmd = NULL;
    enum qmp_result r;

    for (int i = 0; i < NR_COMMANDS; i++) {
        if (strcmp(commands[i].name, req->name) == 0)
            cmd = &commands[i];
    }
    if (!cmd)
        return qmp_error(req, "CommandNotFound", "The command %.64s has not been found", req->name);
    if (!(cmd->states & (1u << c->state))) {
        if (c->state == CTL_PRELAUNCH)
            return qmp_error(req, NULL,
                             "'%s' needs a running VM; the VM is not started yet (configure "
                             "it, then send 'cont')",
                             cmd->name);
        if (cmd->states == ST_PRE)
            return qmp_error(req, NULL, "'%s' is only possible before the VM starts (state: %s)",
                             cmd->name, state_names[c->state]);
        return qmp_error(req, NULL, "'%s' is not possible now (state: %s)", cmd->name,
                         state_names[c->state]);
    }
    if (control_serves_container(c) &&
        (cmd->fn == cmd_system_reset || cmd->fn == cmd_change_medium))
        return qmp_error(req, NULL, "'%s' is not available for a container (ember-oci)", cmd->name);
    if (cmd->fn != cmd_configure) {
        r = check_args(cmd, req);
        if (r != QMP_OK)
            return r;
    }
    if (cmd->states != ST_ANY && (c->state == CTL_RUNNING || c->state == CTL_PAUSED) && !c->mv.vm)
        return qmp_error(req, NULL, "'%s': the VM is being rebuilt; try again", cmd->name);
    if (c->mv.vm && snap_runner_busy(c->mv.snap) && cmd->fn != cmd_quit && cmd->states != ST_ANY &&
        cmd->fn != cmd_query_cpus_fast)
        return qmp_error(req, NULL,
                         "'%s': a snapshot is being saved; wait until snapshot-save returns",
                         cmd->name);
    return cmd->fn(c, req);
}
