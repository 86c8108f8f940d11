/* `ember exec`: a throwaway microVM for one command: spec, streams, images, jail, exit code. */
#include "exec.h"
#include "exec_io.h"
#include "exec_snapshot.h"
#include "exitcode.h"
#include "jail.h"
#include "log.h"
#include "run.h"
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef EMBER_IMAGES_DEFAULT
#define EMBER_IMAGES_DEFAULT "/usr/share/ember/images"
#endif
#define NOBODY 65534

/* The command spec the guest init reads from the stdin port: "EMBX", a little-endian length,
 * then NUL-terminated entries: a<arg> e<K=V> w<dir> r<bytes> (overlay root disk of that size)
 * c<bytes> (copy-in disk) n (net) m<MAC> (eth0's address) s<hex> (entropy for the guest's
 * random number generator) t<sec.nsec> (the time; restored VMs only). A restored guest's
 * disks may have changed size and content since the snapshot: the sizes let it wait for
 * the new one. */
struct spec {
    uint8_t *buf;
    size_t len, cap;
};

static int spec_add(struct spec *s, char kind, const char *val)
{
    size_t n = strlen(val) + 2;

    if (s->len + n > s->cap) {
        size_t cap = (s->len + n) * 2 + 256;
        uint8_t *b = realloc(s->buf, cap);
        if (!b)
            return -ENOMEM;
        s->buf = b;
        s->cap = cap;
    }
    s->buf[s->len] = (uint8_t)kind;
    memcpy(s->buf + s->len + 1, val, n - 1);
    s->len += n;
    return 0;
}

static long long file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

/* Entropy of the host's for this VM alone: a restored guest reseeds with it, so clones of one
 * snapshot do not share their random numbers. */
static int add_seed(struct spec *s)
{
    uint8_t seed[32];
    char hex[2 * sizeof(seed) + 1];

    if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
        return -EIO;
    for (size_t i = 0; i < sizeof(seed); i++)
        snprintf(hex + 2 * i, 3, "%02x", seed[i]);
    return spec_add(s, 's', hex);
}

static int build_spec(const struct exec_config *x, const char *copyin, struct spec *s)
{
    const struct vm_config *cfg = &x->vm;
    char val[64];
    uint32_t body;
    int err = 0;

    s->cap = 4096;
    s->buf = malloc(s->cap);
    if (!s->buf)
        err = -ENOMEM;
    s->len = 8; /* magic and length, filled in last */
    for (int i = 0; !err && i < x->argc; i++)
        err = spec_add(s, 'a', x->argv[i]);
    for (int i = 0; !err && i < x->nr_env; i++)
        err = spec_add(s, 'e', x->env[i]);
    if (!err && x->workdir)
        err = spec_add(s, 'w', x->workdir);
    snprintf(val, sizeof(val), "%lld", x->rootfs ? file_size(x->rootfs) : 0);
    if (!err && x->rootfs)
        err = spec_add(s, 'r', val);
    snprintf(val, sizeof(val), "%lld", copyin ? file_size(copyin) : 0);
    if (!err && copyin)
        err = spec_add(s, 'c', val);
    if (!err && x->net_user) {
        const uint8_t *m = cfg->net[0].mac;

        snprintf(val, sizeof(val), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4],
                 m[5]);
        err = spec_add(s, 'n', "");
        if (!err)
            err = spec_add(s, 'm', val);
    }
    if (!err)
        err = add_seed(s);
    if (!err && cfg->snap) {
        struct timespec now;

        clock_gettime(CLOCK_REALTIME, &now);
        snprintf(val, sizeof(val), "%lld.%09ld", (long long)now.tv_sec, now.tv_nsec);
        err = spec_add(s, 't', val);
    }
    if (err) {
        log_err("exec: %s", err == -EIO ? "no entropy from getrandom" : "out of memory");
        return err;
    }
    if (s->len - 8 > (1 << 20)) {
        log_err("exec: the command and environment take %zu bytes; at most 1 MiB", s->len - 8);
        return -E2BIG;
    }
    body = (uint32_t)(s->len - 8);
    memcpy(s->buf, "EMBX", 4);
    memcpy(s->buf + 4, &body, 4);
    return 0;
}

/* With --net user, eth0 gets an address of its own: a clone's differs from the snapshot's. */
static void random_mac(struct net_config *n)
{
    n->mac[0] = 0x52;
    n->mac[1] = 0x54;
    n->mac[2] = 0x00;
    if (getrandom(n->mac + 3, 3, GRND_NONBLOCK) != 3)
        n->mac[3] = (uint8_t)getpid();
    n->mac_set = 1;
}

/* A stream of our own for stdout/stderr that never blocks (outstream.h). */
static void open_stream(struct out_stream *o, int fd, const char *what)
{
    int err = out_stream_open(o, fd);

    if (err)
        log_warn("exec: cannot open %s (%s); the command's %s is dropped", what, strerror(-err),
                 what);
}

static void default_images(struct vm_config *cfg)
{
    static char kernel[PATH_MAX], initrd[PATH_MAX];
    const char *dir = getenv("EMBER_IMAGES_DIR");

    if (!dir || !*dir)
        dir = EMBER_IMAGES_DEFAULT;
    if (!cfg->kernel) {
        snprintf(kernel, sizeof(kernel), "%s/bzImage", dir);
        cfg->kernel = kernel;
    }
    if (!cfg->initrd) {
        snprintf(initrd, sizeof(initrd), "%s/initramfs.cpio.gz", dir);
        cfg->initrd = initrd;
    }
}

static int add_disk(struct vm_config *cfg, const char *path, const char *id)
{
    struct disk_config *d = &cfg->disk[cfg->nr_disks];

    if (strlen(path) >= sizeof(d->path)) {
        log_err("exec: path too long: %s", path);
        return -ENAMETOOLONG;
    }
    snprintf(d->path, sizeof(d->path), "%s", path);
    snprintf(d->id, sizeof(d->id), "%s", id);
    d->readonly = 1;
    cfg->nr_disks++;
    return 0;
}

/* Sandbox and jail are on by default; the jail needs root. */
static int choose_jail(struct exec_config *x, char *tmpdir, size_t len)
{
    struct jail_config *j = &x->vm.jail;
    const char *tmp = getenv("TMPDIR");

    tmpdir[0] = '\0';
    if (x->no_jail || x->vm.sandbox.disabled)
        return 0;
    if (!j->dir && geteuid() != 0) {
        if (j->best_effort) {
            log_warn("exec: not jailed: the jail needs root (--jail-best-effort)");
            return 0;
        }
        log_err("exec: ember exec jails itself by default, which needs root (namespaces, "
                "pivot_root); run it as root, or pass --no-jail or --jail-best-effort");
        return -EPERM;
    }
    if (!j->dir) {
        snprintf(tmpdir, len, "%s/ember-jail.XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(tmpdir)) {
            tmpdir[0] = '\0';
            return log_errno("exec: cannot create the jail directory in $TMPDIR");
        }
        j->dir = tmpdir;
    }
    if (!j->have_uid) {
        j->uid = NOBODY;
        j->have_uid = 1;
    }
    if (!j->have_gid) {
        j->gid = NOBODY;
        j->have_gid = 1;
    }
    return 0;
}

int exec_exit_code(const struct exec_io *io, int code)
{
    switch ((enum vm_stop_reason)io->stop_reason) {
    case STOP_POWEROFF:
        if (io->guest_status >= 0)
            return io->guest_status;
        log_err("exec: the guest powered off without reporting the command's status; is the "
                "initramfs ember's (guest-images)?");
        return EXIT_VMM_ERROR;
    case STOP_TIMEOUT:
        log_err("exec: the command did not finish within --timeout %u s; the VM was stopped",
                io->timeout_s);
        return EXIT_TIMEOUT;
    case STOP_RESET:
        log_err("exec: the guest rebooted before the command finished");
        return EXIT_VMM_ERROR;
    case STOP_PANIC:
        log_err("exec: the guest kernel panicked");
        return EXIT_VMM_ERROR;
    case STOP_CRASH:
        log_err("exec: KVM could not go on running the guest");
        return EXIT_VMM_ERROR;
    case STOP_SIGNAL:
        return code;
    default:
        return code == 0 ? EXIT_VMM_ERROR : code;
    }
}

int ember_exec(struct exec_config *x, const struct timespec *start)
{
    struct vm_config *cfg = &x->vm;
    struct exec_io io = {.in_fd = STDIN_FILENO,
                         .out.fd = -1,
                         .err.fd = -1,
                         .stop_reason = STOP_NONE,
                         .guest_status = -1};
    static struct exec_cache cache;
    struct spec spec = {0};
    char image[PATH_MAX] = "", jaildir[PATH_MAX] = "";
    int code = EXIT_VMM_ERROR;

    cache.staging[0] = '\0';
    default_images(cfg);
    cfg->console = CONSOLE_KIND_NONE; /* kernel messages stay out of CMD's streams */
    cfg->cmdline = "ember.exec=1";
    cfg->on_reboot = ON_REBOOT_EXIT;
    cfg->exec = &io;
    cfg->given = ~0ULL; /* a snapshot must fit this machine exactly */
    io.timeout_s = x->timeout_s;
    if (x->timeout_s) {
        io.deadline = *start;
        io.deadline.tv_sec += x->timeout_s;
    }
    if (x->rootfs && add_disk(cfg, x->rootfs, "ember-root")) {
        code = EXIT_USAGE;
        goto out;
    }
    if (x->nr_copy_in) {
        if (copyin_pack(x->copy_in, x->nr_copy_in, image, sizeof(image))) {
            image[0] = '\0';
            code = EXIT_USAGE;
            goto out;
        }
        if (add_disk(cfg, image, "ember-copyin"))
            goto out;
    }
    if (x->net_user) {
        cfg->net[cfg->nr_nets] = x->net; /* host-loopback only when asked for */
        if (!cfg->net[cfg->nr_nets].mac_set)
            random_mac(&cfg->net[cfg->nr_nets]);
        cfg->nr_nets++;
    }
    if (!x->no_snapshot)
        exec_cache_prepare(x, &cache);
    if (build_spec(x, image[0] ? image : NULL, &spec))
        goto out;
    io.spec = spec.buf;
    io.spec_len = spec.len;
    if (choose_jail(x, jaildir, sizeof(jaildir))) {
        code = EXIT_USAGE;
        goto out;
    }
    open_stream(&io.out, STDOUT_FILENO, "stdout");
    open_stream(&io.err, STDERR_FILENO, "stderr");
    code = ember_run(cfg, start);
    out_stream_close(&io.out);
    out_stream_close(&io.err);
out:
    if (jail_signal_fd() < 0) { /* the jailed child leaves this to the supervisor */
        exec_cache_finish(&cache);
        if (image[0])
            unlink(image);
        if (jaildir[0])
            rmdir(jaildir);
    }
    free(spec.buf);
    return code;
}
