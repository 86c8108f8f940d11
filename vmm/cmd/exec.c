/* `ember exec`: a throwaway microVM for one command: spec, streams, images, jail, exit code. */
#include "exec.h"
#include "arch.h"
#include "exec_io.h"
#include "exec_spec.h"
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

/* The command spec (guest-images/init/proto.h lists the entries). A restored guest's disks may
 * have changed size and content since the snapshot: the sizes let it wait for the new one. */
static long long file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

/* Entropy of the host's for this VM alone: a restored guest reseeds with it, so clones of one
 * snapshot do not share their random numbers. */
static int add_seed(struct exec_spec *s)
{
    uint8_t seed[32];
    char hex[2 * sizeof(seed) + 1];

    if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
        return -EIO;
    for (size_t i = 0; i < sizeof(seed); i++)
        snprintf(hex + 2 * i, 3, "%02x", seed[i]);
    exec_spec_add(s, SPEC_SEED, hex);
    return 0;
}

/* The host's time: a restored guest's clock stood still since the snapshot. */
static void add_clock(struct exec_spec *s)
{
    struct timespec now;

    clock_gettime(CLOCK_REALTIME, &now);
    exec_spec_addf(s, SPEC_CLOCK, "%lld.%09ld", (long long)now.tv_sec, now.tv_nsec);
}

static int build_spec(const struct exec_config *x, const char *copyin, struct exec_spec *s)
{
    const struct vm_config *cfg = &x->vm;

    exec_spec_init(s);
    for (int i = 0; i < x->argc; i++)
        exec_spec_add(s, SPEC_ARG, x->argv[i]);
    for (int i = 0; i < x->nr_env; i++)
        exec_spec_add(s, SPEC_ENV, x->env[i]);
    if (x->workdir)
        exec_spec_add(s, SPEC_WORKDIR, x->workdir);
    if (x->rootfs)
        exec_spec_addf(s, SPEC_OVERLAY, "%lld", file_size(x->rootfs));
    if (copyin)
        exec_spec_addf(s, SPEC_COPYIN, "%lld", file_size(copyin));
    if (x->net_user) {
        const uint8_t *m = cfg->net[0].mac;

        exec_spec_add(s, SPEC_NET, "");
        exec_spec_addf(s, SPEC_MAC, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4],
                       m[5]);
    }
    if (add_seed(s)) {
        log_err("exec: no entropy from getrandom");
        return -EIO;
    }
    if (cfg->snap)
        add_clock(s);
    return exec_spec_finish(s);
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

void exec_open_stream(struct out_stream *o, int fd, const char *what)
{
    int err = out_stream_open(o, fd);

    if (err)
        log_warn("exec: cannot open %s (%s); the command's %s is dropped", what, strerror(-err),
                 what);
}

const char *exec_images_dir(void)
{
    static char installed[PATH_MAX + 32];
    const char *dir = getenv("EMBER_IMAGES_DIR");
    char exe[PATH_MAX], probe[PATH_MAX + 64], *slash;
    ssize_t n;

    if (dir && *dir)
        return dir;
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(installed, sizeof(installed), "%s/../share/ember/images", exe);
            snprintf(probe, sizeof(probe), "%s/bzImage", installed);
            if (access(probe, R_OK) == 0)
                return installed;
        }
    }
    return EMBER_IMAGES_DEFAULT;
}

static void default_images(struct vm_config *cfg)
{
    static char kernel[PATH_MAX + 64], initrd[PATH_MAX + 64];
    const char *dir = exec_images_dir();

    if (!cfg->kernel) {
        snprintf(kernel, sizeof(kernel), "%s/%s", dir, arch_map.kernel_image);
        cfg->kernel = kernel;
    }
    if (!cfg->initrd) {
        snprintf(initrd, sizeof(initrd), "%s/initramfs.cpio.gz", dir);
        cfg->initrd = initrd;
    }
}

static int add_disk(struct vm_config *cfg, const char *path, const char *id, int readonly)
{
    struct disk_config *d = &cfg->disk[cfg->nr_disks];

    if (strlen(path) >= sizeof(d->path)) {
        log_err("exec: path too long: %s", path);
        return -ENAMETOOLONG;
    }
    snprintf(d->path, sizeof(d->path), "%s", path);
    snprintf(d->id, sizeof(d->id), "%s", id);
    d->readonly = readonly;
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
    int fail = io->fail_code ? io->fail_code : EXIT_VMM_ERROR;

    switch ((enum vm_stop_reason)io->stop_reason) {
    case STOP_POWEROFF:
        if (io->guest_status >= 0)
            return io->guest_status;
        log_err("exec: the guest powered off without reporting the command's status; is the "
                "initramfs ember's (guest-images)?");
        return fail;
    case STOP_TIMEOUT:
        log_err("exec: the command did not finish within --timeout %u s; the VM was stopped",
                io->timeout_s);
        return EXIT_TIMEOUT;
    case STOP_RESET:
        log_err("exec: the guest rebooted before the command finished");
        return fail;
    case STOP_PANIC:
        log_err("exec: the guest kernel panicked");
        return fail;
    case STOP_CRASH:
        log_err("exec: KVM could not go on running the guest");
        return fail;
    case STOP_SIGNAL:
        return code;
    default:
        if (io->fail_code) /* ember-oci: the VM died; never a status the workload could give */
            return fail;
        return code == 0 ? EXIT_VMM_ERROR : code;
    }
}

int ember_exec(struct exec_config *x, const struct timespec *start)
{
    struct vm_config *cfg = &x->vm;
    struct exec_io own = {
            .in_fd = STDIN_FILENO, .out.fd = -1, .err.fd = -1, .ready_fd = -1, .exit_fd = -1};
    struct exec_io *io = x->io ? x->io : &own;
    static struct exec_cache cache;
    struct exec_spec spec = {0};
    char image[PATH_MAX] = "", jaildir[PATH_MAX] = "";
    int code = EXIT_VMM_ERROR;

    cache.staging[0] = '\0';
    default_images(cfg);
    cfg->console = CONSOLE_KIND_NONE; /* kernel messages stay out of CMD's streams */
    cfg->cmdline = "ember.exec=1";
    cfg->on_reboot = ON_REBOOT_EXIT;
    cfg->exec = io;
    cfg->given = ~0ULL; /* a snapshot must fit this machine exactly */
    io->stop_reason = STOP_NONE;
    io->guest_status = -1;
    io->timeout_s = x->timeout_s;
    if (x->timeout_s) {
        io->deadline = *start;
        io->deadline.tv_sec += x->timeout_s;
    }
    if (x->rootfs && add_disk(cfg, x->rootfs, "ember-root", !x->rootfs_rw)) {
        code = EXIT_USAGE;
        goto out;
    }
    if (x->files_image && add_disk(cfg, x->files_image, "ember-copyin", 1))
        goto out;
    if (x->nr_copy_in) {
        if (copyin_pack(x->copy_in, x->nr_copy_in, NULL, image, sizeof(image))) {
            image[0] = '\0';
            code = EXIT_USAGE;
            goto out;
        }
        if (add_disk(cfg, image, "ember-copyin", 1))
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
    if (!x->io) {
        if (build_spec(x, image[0] ? image : NULL, &spec))
            goto out;
    } else { /* ember-oci brings its own spec: this VM's entropy and time go with it */
        exec_spec_copy(&spec, io->spec, io->spec_len);
        if (add_seed(&spec)) {
            log_err("exec: no entropy from getrandom");
            goto out;
        }
        if (cfg->snap)
            add_clock(&spec);
        if (exec_spec_finish(&spec))
            goto out;
    }
    io->spec = spec.buf;
    io->spec_len = spec.len;
    if (choose_jail(x, jaildir, sizeof(jaildir))) {
        code = EXIT_USAGE;
        goto out;
    }
    if (!x->io) {
        exec_open_stream(&io->out, STDOUT_FILENO, "stdout");
        exec_open_stream(&io->err, STDERR_FILENO, "stderr");
    }
    code = ember_run(cfg, start);
    if (jail_signal_fd() >= 0 || !cfg->jail.dir) /* not the jail's supervisor */
        exec_agent_finish(io, code);
    out_stream_close(&io->out);
    out_stream_close(&io->err);
out:
    if (jail_signal_fd() < 0) { /* the jailed child leaves this to the supervisor */
        exec_cache_finish(&cache);
        if (image[0])
            unlink(image);
        if (jaildir[0])
            rmdir(jaildir);
    }
    exec_spec_free(&spec);
    return code;
}
