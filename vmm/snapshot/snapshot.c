/* Snapshots: what a snapshot holds (machine shape, configuration, vCPUs, VM, platform and
 * virtio devices, memory), the save job, and reading one back with every section checked
 * before anything of the new VM is touched. */
#include "snapshot.h"
#include "config.h"
#include "devices.h"
#include "ged.h"
#include "log.h"
#include "snapshot_arch.h"
#include "snapshot_mem.h"
#include "virtio.h"
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MACHINE_VERSION  1
#define CONFIG_VERSION   1
#define MEMORY_VERSION   1
#define PLATFORM_VERSION 1
#define VIRTIO_VERSION   1
#define PAGE             4096u
#define CONFIG_JSON_MAX  (256u << 10)
#define STEP_BUDGET      (32ULL << 20) /* RAM looked at per event loop turn */
#define MACHINE_EXEC     1u            /* flags: `ember exec`'s command ports are there */

struct snapshot {
    const uint8_t *buf; /* the state file */
    size_t len;
    uint8_t *owned; /* buf, when snapshot_open read it */
    struct snap_file file;
    uint32_t ncpus, nr_virtio, flags;
    uint64_t ram_size, data_pages;
    uint32_t virtio_id[SNAP_MAX_VIRTIO];
    struct vm_config base; /* the saved configuration */
    struct snap_vcpu_arch *vcpu[VM_MAX_CPUS];
    struct snap_vm_arch *vm;
    const struct snap_section *serial, *ctrl, *ged, *virtio[SNAP_MAX_VIRTIO];
    int mem_fd;
    int dir_fd; /* the directory, for snapshot_discard */
    char dir[PATH_MAX];
};

/* ---- saving ---- */

struct snap_save {
    struct snap_parts p;
    struct snap_buf buf;
    struct snap_mem_writer mw;
    int state_fd;
    int nr_frozen;
};

static void thaw_all(struct snap_save *s)
{
    while (s->nr_frozen > 0)
        virtio_dev_thaw(&s->p.virtio[--s->nr_frozen]);
}

/* The configuration as `query-config` gives it, without the unset (null) values, which the
 * configuration schema does not take back. */
static json_object *saved_config(const struct vm_config *cfg)
{
    json_object *o = config_to_json(cfg);
    const char *unset[32];
    int n = 0;

    json_object_object_foreach(o, key, val)
    {
        if (!val && n < 32)
            unset[n++] = key;
    }
    while (n > 0)
        json_object_object_del(o, unset[--n]);
    return o;
}

static void save_machine(struct snap_save *s)
{
    const struct snap_parts *p = &s->p;
    struct snap_buf *b = &s->buf;
    json_object *cfg = saved_config(p->cfg);
    const char *text = json_object_to_json_string_ext(cfg, JSON_C_TO_STRING_PLAIN);

    snap_section_begin(b, SNAP_TAG_MACHINE, 0, MACHINE_VERSION);
    snap_put_u32(b, (uint32_t)p->vm->ncpus);
    snap_put_u64(b, p->vm->mem.mapping_size);
    snap_put_u32(b, PAGE);
    snap_put_u32(b, p->cfg->exec ? MACHINE_EXEC : 0);
    snap_put_u32(b, (uint32_t)p->nr_virtio);
    for (int i = 0; i < p->nr_virtio; i++)
        snap_put_u32(b, p->virtio[i].device_id);
    snap_section_end(b);
    snap_section_begin(b, SNAP_TAG_CONFIG, 0, CONFIG_VERSION);
    snap_put_str(b, text);
    snap_section_end(b);
    json_object_put(cfg);
}

/* Every vCPU is parked, every device frozen: nothing changes under us. */
static int capture(struct snap_save *s)
{
    const struct snap_parts *p = &s->p;
    struct snap_buf *b = &s->buf;
    int err;

    save_machine(s);
    snap_section_begin(b, SNAP_TAG_VM, 0, SNAP_VM_VERSION);
    err = snap_arch_save_vm(p->vm, b);
    snap_section_end(b);
    for (int i = 0; !err && i < p->vm->ncpus; i++) {
        snap_section_begin(b, SNAP_TAG_VCPU, (uint32_t)i, SNAP_VCPU_VERSION);
        err = snap_arch_save_vcpu(&p->vm->vcpu[i], b);
        snap_section_end(b);
    }
    if (err)
        return err;
    snap_section_begin(b, SNAP_TAG_SERIAL, 0, PLATFORM_VERSION);
    serial_save(p->serial, b);
    snap_section_end(b);
    snap_section_begin(b, SNAP_TAG_CTRL, 0, PLATFORM_VERSION);
    ctrl_page_save(p->ctrl, b);
    snap_section_end(b);
    snap_section_begin(b, SNAP_TAG_GED, 0, PLATFORM_VERSION);
    ged_save(p->ged, b);
    snap_section_end(b);
    for (int i = 0; i < p->nr_virtio; i++) {
        snap_section_begin(b, SNAP_TAG_VIRTIO, (uint32_t)i, VIRTIO_VERSION);
        virtio_dev_save(&p->virtio[i], b);
        snap_section_end(b);
    }
    if (b->err)
        log_err("snapshot: out of memory for the state");
    return b->err;
}

int snap_save_begin(struct snap_save **out, const struct snap_parts *p, int state_fd, int mem_fd)
{
    struct snap_save *s = calloc(1, sizeof(*s));
    int err;

    *out = NULL;
    if (!s) {
        log_err("snapshot: out of memory");
        return -ENOMEM;
    }
    if (p->nr_virtio > SNAP_MAX_VIRTIO) {
        free(s);
        return -E2BIG;
    }
    s->p = *p;
    s->state_fd = state_fd;
    snap_buf_init(&s->buf);
    for (err = 0; !err && s->nr_frozen < p->nr_virtio; s->nr_frozen++)
        err = virtio_dev_freeze(&p->virtio[s->nr_frozen]);
    if (err)
        s->nr_frozen--; /* that one thawed itself */
    if (!err)
        err = capture(s);
    if (!err)
        err = snap_mem_writer_start(&s->mw, &p->vm->mem, mem_fd, p->vm->mem_fd);
    if (err) {
        snap_save_free(s);
        return err;
    }
    *out = s;
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
    off_t off = 0;

    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        p += n;
        off += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Memory is complete: the memory section, then the state file, each made durable. */
static int finish(struct snap_save *s)
{
    struct snap_buf *b = &s->buf;
    int err;

    snap_section_begin(b, SNAP_TAG_MEMORY, 0, MEMORY_VERSION);
    snap_put_u64(b, s->p.vm->mem.mapping_size);
    snap_put_u32(b, PAGE);
    snap_put_u64(b, s->mw.data_pages);
    snap_section_end(b);
    err = snap_buf_finish(b, snap_arch_host());
    if (err) {
        log_err("snapshot: the state does not fit the format: %s", strerror(-err));
        return err;
    }
    if (fdatasync(s->mw.out_fd) < 0) {
        err = -errno;
        log_err("snapshot: syncing the memory file: %s", strerror(-err));
        return err;
    }
    err = ftruncate(s->state_fd, 0) < 0 ? -errno : write_all(s->state_fd, b->p, b->len);
    if (!err && fdatasync(s->state_fd) < 0)
        err = -errno;
    if (err)
        log_err("snapshot: writing the state file: %s", strerror(-err));
    else
        log_debug("snapshot: %zu bytes of state, %llu pages of memory", b->len,
                  (unsigned long long)s->mw.data_pages);
    return err;
}

int snap_save_step(struct snap_save *s)
{
    int r = snap_mem_writer_step(&s->mw, STEP_BUDGET);

    if (r == 0)
        r = finish(s);
    if (r <= 0)
        thaw_all(s);
    return r;
}

void snap_save_free(struct snap_save *s)
{
    if (!s)
        return;
    thaw_all(s);
    snap_mem_writer_end(&s->mw);
    snap_buf_free(&s->buf);
    free(s);
}

int snapshot_create_dir(const char *dir, int *state_fd, int *mem_fd)
{
    char path[PATH_MAX];

    *state_fd = *mem_fd = -1;
    if (mkdir(dir, 0700) < 0) {
        int err = errno; /* log_err may change errno */

        log_err("snapshot %s: %s%s", dir, strerror(err),
                err == EEXIST ? "; give a directory that does not exist yet" : "");
        return -err;
    }
    snprintf(path, sizeof(path), "%s/" SNAP_MEMORY_FILE, dir);
    *mem_fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    snprintf(path, sizeof(path), "%s/" SNAP_STATE_FILE, dir);
    if (*mem_fd >= 0)
        *state_fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (*state_fd < 0) {
        int err = -errno;

        log_err("snapshot %s: %s", path, strerror(-err));
        if (*mem_fd >= 0)
            close(*mem_fd);
        *mem_fd = -1;
        return err;
    }
    return 0;
}

/* ---- reading: every section checked, nothing of a VM touched ---- */

/* "section NAME: " in front of what a decoder said. */
static int in_section(const char *tag, uint32_t instance, const char *why, char *err, size_t n)
{
    char name[48];

    snap_section_name(tag, instance, name, sizeof(name));
    return snap_fail(err, n, "section %s: %s", name, why);
}

static const struct snap_section *need(struct snapshot *s, const char *tag, uint32_t instance,
                                       uint32_t version, char *err, size_t n)
{
    const struct snap_section *sec = snap_find(&s->file, tag, instance);
    char why[96];

    if (!sec)
        in_section(tag, instance, "missing", err, n);
    else if (sec->version != version) {
        snprintf(why, sizeof(why), "version %u; this ember reads version %u", sec->version,
                 version);
        in_section(tag, instance, why, err, n);
        return NULL;
    }
    return sec;
}

static int decode_machine(struct snapshot *s, char *err, size_t n)
{
    const struct snap_section *sec = need(s, SNAP_TAG_MACHINE, 0, MACHINE_VERSION, err, n);
    struct snap_reader r;
    uint32_t page;

    if (!sec)
        return -EINVAL;
    snap_reader_init(&r, sec);
    s->ncpus = snap_get_u32(&r);
    s->ram_size = snap_get_u64(&r);
    page = snap_get_u32(&r);
    s->flags = snap_get_u32(&r);
    s->nr_virtio = snap_get_u32(&r);
    if (r.bad || s->nr_virtio > SNAP_MAX_VIRTIO)
        return in_section(SNAP_TAG_MACHINE, 0, "truncated, or too many devices", err, n);
    for (uint32_t i = 0; i < s->nr_virtio; i++)
        s->virtio_id[i] = snap_get_u32(&r);
    if (!snap_reader_done(&r))
        return in_section(SNAP_TAG_MACHINE, 0, r.bad ? "truncated" : "bytes left over", err, n);
    if (s->ncpus < 1 || s->ncpus > VM_MAX_CPUS || page != PAGE || (s->flags & ~MACHINE_EXEC) ||
        s->ram_size < CONFIG_MIN_MEMORY || s->ram_size > CONFIG_MAX_MEMORY || s->ram_size % PAGE)
        return in_section(SNAP_TAG_MACHINE, 0, "vCPUs, RAM size, page size or flags out of range",
                          err, n);
    return 0;
}

/* The flags a snapshot's configuration may set (never --config, --restore or sockets). */
static const char *const config_keys[] = {
        "kernel",    "initrd", "cmdline",        "no-default-cmdline",
        "cpus",      "memory", "hugepages",      "console",
        "disk",      "net",    "no-rng",         "boot-timer",
        "on-reboot", "args",   "virtio-cmdline", NULL,
};

static int decode_config(struct snapshot *s, char *err, size_t n)
{
    const struct snap_section *sec = need(s, SNAP_TAG_CONFIG, 0, CONFIG_VERSION, err, n);
    struct snap_reader r;
    char why[400];
    uint32_t len;
    const uint8_t *text;

    if (!sec)
        return -EINVAL;
    snap_reader_init(&r, sec);
    len = snap_get_u32(&r);
    text = len <= CONFIG_JSON_MAX ? snap_get_ptr(&r, len) : NULL;
    if (!text || !snap_reader_done(&r))
        return in_section(SNAP_TAG_CONFIG, 0, "truncated or too long", err, n);
    config_defaults(&s->base);
    if (config_apply_text(&s->base, (const char *)text, len, config_keys, why, sizeof(why)))
        return in_section(SNAP_TAG_CONFIG, 0, why, err, n);
    if ((uint64_t)s->base.cpus != s->ncpus || s->base.memory != s->ram_size)
        return in_section(SNAP_TAG_CONFIG, 0, "vCPUs or RAM differ from the machine section", err,
                          n);
    return 0;
}

static int decode_memory(struct snapshot *s, char *err, size_t n)
{
    const struct snap_section *sec = need(s, SNAP_TAG_MEMORY, 0, MEMORY_VERSION, err, n);
    struct snap_reader r;
    uint64_t size;
    uint32_t page;

    if (!sec)
        return -EINVAL;
    snap_reader_init(&r, sec);
    size = snap_get_u64(&r);
    page = snap_get_u32(&r);
    s->data_pages = snap_get_u64(&r);
    if (!snap_reader_done(&r) || size != s->ram_size || page != PAGE || s->data_pages > size / PAGE)
        return in_section(SNAP_TAG_MEMORY, 0, "does not describe the machine's RAM", err, n);
    return 0;
}

static int decode_arch(struct snapshot *s, char *err, size_t n)
{
    const struct snap_section *sec;
    char why[256];

    if (s->file.arch != snap_arch_host())
        return snap_fail(err, n, "header: taken on architecture %u, this ember runs %u",
                         s->file.arch, snap_arch_host());
    sec = need(s, SNAP_TAG_VM, 0, SNAP_VM_VERSION, err, n);
    if (!sec)
        return -EINVAL;
    if (snap_arch_decode_vm(sec, &s->vm, why, sizeof(why)))
        return in_section(SNAP_TAG_VM, 0, why, err, n);
    for (uint32_t i = 0; i < s->ncpus; i++) {
        sec = need(s, SNAP_TAG_VCPU, i, SNAP_VCPU_VERSION, err, n);
        if (!sec)
            return -EINVAL;
        if (snap_arch_decode_vcpu(sec, &s->vcpu[i], why, sizeof(why)))
            return in_section(SNAP_TAG_VCPU, i, why, err, n);
    }
    return 0;
}

/* Platform and virtio sections are read by their devices at restore; here they must exist,
 * and nothing else may. */
static int find_devices(struct snapshot *s, char *err, size_t n)
{
    s->serial = need(s, SNAP_TAG_SERIAL, 0, PLATFORM_VERSION, err, n);
    s->ctrl = s->serial ? need(s, SNAP_TAG_CTRL, 0, PLATFORM_VERSION, err, n) : NULL;
    s->ged = s->ctrl ? need(s, SNAP_TAG_GED, 0, PLATFORM_VERSION, err, n) : NULL;
    if (!s->ged)
        return -EINVAL;
    for (uint32_t i = 0; i < s->nr_virtio; i++) {
        s->virtio[i] = need(s, SNAP_TAG_VIRTIO, i, VIRTIO_VERSION, err, n);
        if (!s->virtio[i])
            return -EINVAL;
    }
    /* machine, config, memory, vm, vCPUs, three platform devices, the virtio devices */
    if ((uint32_t)s->file.nr != 7 + s->ncpus + s->nr_virtio) {
        for (int i = 0; i < s->file.nr; i++) {
            const struct snap_section *x = &s->file.sec[i];
            bool numbered =
                    !memcmp(x->tag, SNAP_TAG_VCPU, 4) || !memcmp(x->tag, SNAP_TAG_VIRTIO, 4);
            uint32_t count = !memcmp(x->tag, SNAP_TAG_VCPU, 4) ? s->ncpus : s->nr_virtio;

            if (numbered ? x->instance >= count : x->instance != 0)
                return in_section(x->tag, x->instance, "not part of this machine", err, n);
        }
        return snap_fail(err, n, "header: sections unknown to this ember");
    }
    return 0;
}

/* A message is one line: what the file held (a field name, a device's name) may have control
 * bytes, which it shows as '?'. */
static void one_line(char *msg)
{
    for (char *c = msg; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
}

int snapshot_decode(struct snapshot **out, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
    struct snapshot *s = calloc(1, sizeof(*s));
    int r;

    *out = NULL;
    if (!s)
        return snap_fail(err, errlen, "out of memory");
    s->buf = buf;
    s->len = len;
    s->mem_fd = s->dir_fd = -1;
    config_defaults(&s->base);
    r = snap_file_parse(buf, len, &s->file, err, errlen);
    if (!r)
        r = decode_machine(s, err, errlen);
    if (!r)
        r = decode_config(s, err, errlen);
    if (!r)
        r = decode_memory(s, err, errlen);
    if (!r)
        r = decode_arch(s, err, errlen);
    if (!r)
        r = find_devices(s, err, errlen);
    if (r) {
        if (errlen)
            one_line(err);
        snapshot_free(s);
        return -EINVAL;
    }
    *out = s;
    return 0;
}

void snapshot_free(struct snapshot *s)
{
    if (!s)
        return;
    for (int i = 0; i < VM_MAX_CPUS; i++)
        snap_arch_free_vcpu(s->vcpu[i]);
    snap_arch_free_vm(s->vm);
    config_free(&s->base);
    if (s->mem_fd >= 0)
        close(s->mem_fd);
    if (s->dir_fd >= 0)
        close(s->dir_fd);
    free(s->owned);
    free(s);
}

static uint8_t *read_state(const char *path, size_t *len)
{
    struct stat st;
    uint8_t *buf = NULL;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fstat(fd, &st) < 0) {
        log_err("snapshot %s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > SNAP_STATE_MAX) {
        log_err("snapshot %s: not a regular file of at most %u bytes", path, SNAP_STATE_MAX);
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        log_err("snapshot %s: out of memory", path);
        goto out;
    }
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break; /* shorter than it was: the parser says so */
        got += (size_t)r;
    }
    *len = got;
out:
    if (fd >= 0)
        close(fd);
    return buf;
}

int snapshot_open(struct snapshot **out, const char *dir)
{
    char path[PATH_MAX], err[512];
    struct snapshot *s = NULL;
    struct stat st;
    size_t len = 0;
    uint8_t *buf;

    *out = NULL;
    if (snprintf(path, sizeof(path), "%s/" SNAP_STATE_FILE, dir) >= (int)sizeof(path)) {
        log_err("--restore %s: path too long", dir);
        return -ENAMETOOLONG;
    }
    buf = read_state(path, &len);
    if (!buf)
        return -EINVAL;
    if (snapshot_decode(&s, buf, len, err, sizeof(err))) {
        log_err("snapshot %s: %s", path, err);
        free(buf);
        return -EINVAL;
    }
    s->owned = buf;
    snprintf(s->dir, sizeof(s->dir), "%s", dir);
    s->dir_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    snprintf(path, sizeof(path), "%s/" SNAP_MEMORY_FILE, dir);
    s->mem_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s->mem_fd < 0 || fstat(s->mem_fd, &st) < 0) {
        log_err("snapshot %s: section memory: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != s->ram_size) {
        log_err("snapshot %s: section memory: the file is %lld bytes, the snapshot's RAM %llu "
                "(%s)",
                path, (long long)st.st_size, (unsigned long long)s->ram_size,
                (uint64_t)st.st_size < s->ram_size ? "truncated" : "not this snapshot's");
        goto fail;
    }
    *out = s;
    return 0;
fail:
    snapshot_free(s);
    return -EINVAL;
}

int snapshot_memory_fd(const struct snapshot *s)
{
    return s->mem_fd;
}

int snapshot_dir_fd(const struct snapshot *s)
{
    return s->dir_fd;
}

void snapshot_discard(const struct snapshot *s)
{
    if (s->dir_fd >= 0 && unlinkat(s->dir_fd, SNAP_STATE_FILE, 0) == 0)
        log_info("snapshot %s removed: it cannot be restored here", s->dir);
}

int snapshot_virtio_ids(const struct snapshot *s, uint32_t *ids, int max)
{
    for (int i = 0; i < max && (uint32_t)i < s->nr_virtio; i++)
        ids[i] = s->virtio_id[i];
    return (int)s->nr_virtio;
}

uint64_t snapshot_ram_size(const struct snapshot *s)
{
    return s->ram_size;
}

/* ---- the configuration: saved where the user gave nothing, checked where they did ---- */

static int mismatch(const char *flag, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int mismatch(const char *flag, const char *fmt, ...)
{
    char why[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    log_err("--restore: %s: %s; leave %s out to take the snapshot's", flag, why, flag);
    return -EINVAL;
}

int snapshot_merge_config(struct snapshot *s, struct vm_config *cfg)
{
    const struct vm_config *b = &s->base;
    static const char *const consoles[] = {"serial", "virtio", "none"};

#define TAKE(flag, field)                                                                          \
    do {                                                                                           \
        if (!cli_flag_given(cfg, flag))                                                            \
            cfg->field = b->field;                                                                 \
    } while (0)
    TAKE("kernel", kernel);
    TAKE("initrd", initrd);
    TAKE("cmdline", cmdline);
    TAKE("no-default-cmdline", no_default_cmdline);
    TAKE("cpus", cpus);
    TAKE("memory", memory);
    TAKE("console", console);
    TAKE("no-rng", no_rng);
    TAKE("virtio-cmdline", virtio_cmdline);
#undef TAKE
    if (!cli_flag_given(cfg, "args") && !cfg->nr_init_args) {
        cfg->init_args = b->init_args;
        cfg->nr_init_args = b->nr_init_args;
    }
    if (!cli_flag_given(cfg, "disk")) {
        memcpy(cfg->disk, b->disk, sizeof(cfg->disk));
        cfg->nr_disks = b->nr_disks;
    }
    if (!cli_flag_given(cfg, "net")) {
        memcpy(cfg->net, b->net, sizeof(cfg->net));
        cfg->nr_nets = b->nr_nets;
        for (int i = 0; i < cfg->nr_nets; i++) {
            cfg->net[i].mac_set = 0; /* a clone gets a MAC of its own */
            if (cfg->net[i].backend == NET_TAP_FD)
                return mismatch("--net",
                                "the snapshot's interface %d was tap-fd=%d, a "
                                "descriptor of another process",
                                i, cfg->net[i].tap_fd);
        }
    }
    if (cfg->hugepages)
        return mismatch("--hugepages", "guest RAM is the snapshot's memory file");
    if ((uint32_t)cfg->cpus != s->ncpus)
        return mismatch("--cpus", "the snapshot's machine has %u vCPUs, not %d", s->ncpus,
                        cfg->cpus);
    if (cfg->memory != s->ram_size)
        return mismatch("--memory", "the snapshot's machine has %llu MiB of RAM",
                        (unsigned long long)(s->ram_size >> 20));
    if (cfg->console != b->console)
        return mismatch("--console", "the snapshot's guest uses --console %s",
                        consoles[b->console]);
    if (cfg->no_rng != b->no_rng)
        return mismatch("--no-rng", "the snapshot's machine %s an entropy device",
                        b->no_rng ? "has no" : "has");
    if (cfg->nr_disks != b->nr_disks)
        return mismatch("--disk", "the snapshot's machine has %d disks, %d given", b->nr_disks,
                        cfg->nr_disks);
    for (int i = 0; i < cfg->nr_disks; i++)
        if (cfg->disk[i].readonly != b->disk[i].readonly)
            return mismatch("--disk", "the guest had disk %d (%s) %s", i, b->disk[i].path,
                            b->disk[i].readonly ? "read-only: add ,ro" : "read-write");
    if (cfg->nr_nets != b->nr_nets)
        return mismatch("--net", "the snapshot's machine has %d network interfaces, %d given",
                        b->nr_nets, cfg->nr_nets);
    if (!cfg->exec != !(s->flags & MACHINE_EXEC))
        return mismatch("--restore", "the snapshot %s taken by ember exec",
                        cfg->exec ? "was not" : "was");
    return 0;
}

/* ---- restoring onto the new machine ---- */

static int restore_section(const struct snapshot *s, const struct snap_section *sec,
                           int (*fn)(void *dev, struct snap_reader *r, char *err, size_t n),
                           void *dev)
{
    struct snap_reader r;
    char why[400], name[48];
    int err;

    snap_reader_init(&r, sec);
    why[0] = '\0';
    err = fn(dev, &r, why, sizeof(why));
    if (err) {
        one_line(why);
        snap_section_name(sec->tag, sec->instance, name, sizeof(name));
        log_err("snapshot %s: section %s: %s", s->dir, name, why);
    }
    return err;
}

static int serial_fn(void *dev, struct snap_reader *r, char *err, size_t n)
{
    return serial_restore(dev, r, err, n);
}

static int ctrl_fn(void *dev, struct snap_reader *r, char *err, size_t n)
{
    return ctrl_page_restore(dev, r, err, n);
}

static int ged_fn(void *dev, struct snap_reader *r, char *err, size_t n)
{
    return ged_restore(dev, r, err, n);
}

static int virtio_fn(void *dev, struct snap_reader *r, char *err, size_t n)
{
    return virtio_dev_restore(dev, r, err, n);
}

int snapshot_restore_devices(const struct snapshot *s, const struct snap_parts *p)
{
    int err;

    if ((uint32_t)p->nr_virtio != s->nr_virtio) {
        log_err("snapshot %s: section machine: %u virtio devices, this machine has %d", s->dir,
                s->nr_virtio, p->nr_virtio);
        return -EINVAL;
    }
    err = restore_section(s, s->serial, serial_fn, p->serial);
    if (!err)
        err = restore_section(s, s->ctrl, ctrl_fn, p->ctrl);
    if (!err)
        err = restore_section(s, s->ged, ged_fn, p->ged);
    for (int i = 0; !err && i < p->nr_virtio; i++) {
        if (p->virtio[i].device_id != s->virtio_id[i]) {
            log_err("snapshot %s: section virtio%d: the snapshot has device type %u in slot "
                    "%d, this machine %s",
                    s->dir, i, s->virtio_id[i], i, p->virtio[i].name);
            return -EINVAL;
        }
        err = restore_section(s, s->virtio[i], virtio_fn, &p->virtio[i]);
    }
    return err;
}

int snapshot_restore_cpus(const struct snapshot *s, struct vm *vm)
{
    char why[400];
    int err;

    err = snap_arch_restore_vm(vm, s->vm, why, sizeof(why));
    if (err) {
        log_err("snapshot %s: section vm: %s", s->dir, why);
        return err;
    }
    for (int i = 0; i < vm->ncpus; i++) {
        err = snap_arch_restore_vcpu(&vm->vcpu[i], s->vcpu[i], why, sizeof(why));
        if (err) {
            log_err("snapshot %s: section vcpu%d: %s", s->dir, i, why);
            return err;
        }
    }
    return 0;
}
