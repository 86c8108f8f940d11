/* The jail: PID/mount/IPC/UTS (and optional network) namespaces, pivot_root, rlimits, cgroups. */
#include "jail.h"
#include "exitcode.h"
#include "jail_root.h"
#include "log.h"
#include "run.h"
#include "sandbox.h"
#include "snapshot_mem.h"

#include <cap-ng.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static int sig_fd = -1;

struct jail {
    struct vm_config *cfg;
    struct jail_root root; /* DIR and what goes in it */
    char cgroup[PATH_MAX];
};

int jail_signal_fd(void)
{
    return sig_fd;
}

/* A namespace or cgroup the host cannot give: refuse, or go on with --jail-best-effort. */
static int missing(const struct jail_config *j, const char *what, int err)
{
    if (j->best_effort) {
        log_warn("jail: %s unavailable (%s); going on without it (--jail-best-effort)", what,
                 strerror(err));
        return 0;
    }
    log_err("jail: %s unavailable (%s); this host (a container?) cannot give it; pass "
            "--jail-best-effort to go on without it",
            what, strerror(err));
    return -err;
}

/* Everything the VM opens by path, under fixed names; the config is rewritten to them. */
static int plan(struct jail *jl)
{
    struct vm_config *cfg = jl->cfg;
    static char names[CONFIG_MAX_DISKS][32];
    struct jail_root *r = &jl->root;
    int err = jail_root_add(r, "/dev/kvm", "/dev/kvm", 0);

    /* A restored VM needs its kernel only to reboot: one that is gone stays out. */
    if (!err && cfg->kernel && !(cfg->snap && access(cfg->kernel, R_OK) < 0)) {
        err = jail_root_add(r, cfg->kernel, "/kernel", 1);
        cfg->kernel = "/kernel";
    }
    if (!err && cfg->initrd && !(cfg->snap && access(cfg->initrd, R_OK) < 0)) {
        err = jail_root_add(r, cfg->initrd, "/initrd", 1);
        cfg->initrd = "/initrd";
    }
    for (int i = 0; !err && i < cfg->nr_disks; i++) {
        snprintf(names[i], sizeof(names[i]), "/disk%d", i);
        err = jail_root_add(r, cfg->disk[i].path, names[i], cfg->disk[i].readonly);
        snprintf(cfg->disk[i].path, sizeof(cfg->disk[i].path), "%s", names[i]);
    }
    for (int i = 0; !err && i < cfg->nr_nets; i++)
        if (cfg->net[i].backend == NET_TAP) {
            err = jail_root_add(r, "/dev/net/tun", "/dev/net/tun", 0);
            break;
        }
    if (err)
        log_err("jail: too many files for the jail");
    return err;
}

static int set_limits(const struct jail_config *j)
{
    struct rlimit nofile = {j->nofile ? j->nofile : 1024, j->nofile ? j->nofile : 1024};
    struct rlimit fsize = {j->fsize, j->fsize};

    if (setrlimit(RLIMIT_NOFILE, &nofile) < 0)
        return log_errno("jail: setrlimit(RLIMIT_NOFILE)");
    if (j->fsize && setrlimit(RLIMIT_FSIZE, &fsize) < 0)
        return log_errno("jail: setrlimit(RLIMIT_FSIZE)");
    return 0;
}

static int child(struct jail *jl, int go_fd)
{
    const struct jail_config *j = &jl->cfg->jail;
    char go;
    int err;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (read(go_fd, &go, 1) != 1 || go != 'g')
        return -ECANCELED; /* the supervisor gave up (it said why) */
    close(go_fd);
    if (unshare(CLONE_NEWNS) < 0) {
        log_err("jail: mount namespace unavailable (%s); the jail cannot work without it",
                strerror(errno));
        return -errno;
    }
    if (unshare(CLONE_NEWIPC) < 0 && (err = missing(j, "IPC namespace", errno)))
        return err;
    if (unshare(CLONE_NEWUTS) < 0) {
        if ((err = missing(j, "UTS namespace", errno)))
            return err;
    } else if (sethostname("ember", 5) < 0) {
        return log_errno("jail: sethostname");
    }
    if (j->netns) {
        int fd = open(j->netns, O_RDONLY | O_CLOEXEC);

        if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
            log_err("jail: --netns %s: %s", j->netns, strerror(errno));
            return -errno;
        }
        close(fd);
    }
    /* --net user loads libslirp on demand, which the jail does not hold: load it now; the
     * later dlopen by name finds it loaded. */
    for (int i = 0; i < jl->cfg->nr_nets; i++)
        if (jl->cfg->net[i].backend == NET_USER && !dlopen("libslirp.so.0", RTLD_NOW | RTLD_LOCAL))
            log_warn("jail: cannot preload libslirp: %s", dlerror());
    if (jl->cfg->api_sock || jl->cfg->snap_out)
        snap_mem_prepare(); /* snapshots read our own pagemap, which the jail hides */
    err = jail_root_enter(&jl->root);
    jail_root_forget(&jl->root);
    if (!err)
        err = set_limits(j);
    return err;
}

static int write_file(const char *path, const char *val)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -errno;
    n = write(fd, val, strlen(val));
    close(fd);
    return n == (ssize_t)strlen(val) ? 0 : -errno;
}

/* Supervisor: a cgroup of the child's own with the limits asked for. */
static int cgroup_setup(struct jail *jl, pid_t pid)
{
    const struct jail_config *j = &jl->cfg->jail;
    const char *parent = j->cgroup_parent ? j->cgroup_parent : "/sys/fs/cgroup";
    char path[PATH_MAX + 64], val[32];
    struct statfs sf;
    int err;

    if (!j->nr_cgroup)
        return 0;
    if (statfs(parent, &sf) < 0 || sf.f_type != CGROUP2_SUPER_MAGIC)
        return missing(j, "cgroup v2 (--cgroup)", statfs(parent, &sf) < 0 ? errno : ENOTSUP);
    /* Controllers for the limits; fails harmlessly when they are on already. */
    snprintf(path, sizeof(path), "%s/cgroup.subtree_control", parent);
    write_file(path, "+memory +cpu +pids");
    snprintf(jl->cgroup, sizeof(jl->cgroup), "%s/ember-%d", parent, (int)pid);
    if (mkdir(jl->cgroup, 0755) < 0) {
        err = errno;
        jl->cgroup[0] = '\0';
        return missing(j, "a cgroup of ember's own (--cgroup)", err);
    }
    for (int i = 0; i < j->nr_cgroup; i++) {
        const char *eq = strchr(j->cgroup[i], '=');

        snprintf(path, sizeof(path), "%s/%.*s", jl->cgroup, (int)(eq - j->cgroup[i]), j->cgroup[i]);
        err = write_file(path, eq + 1);
        if (err) {
            log_err("jail: --cgroup %s: %s (is the controller enabled in %s?)", j->cgroup[i],
                    strerror(-err), parent);
            return err;
        }
    }
    snprintf(path, sizeof(path), "%s/cgroup.procs", jl->cgroup);
    snprintf(val, sizeof(val), "%d", (int)pid);
    err = write_file(path, val);
    if (err)
        log_err("jail: moving ember into %s: %s", jl->cgroup, strerror(-err));
    return err;
}

static void cleanup(struct jail *jl)
{
    jail_root_clear(&jl->root);
    if (jl->cgroup[0])
        rmdir(jl->cgroup);
}

/* Supervisor: what the jailed ember's end means for ember's exit code. */
static int child_code(int st)
{
    int sig;

    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    sig = WTERMSIG(st);
    if (sig == SIGSYS) {
        log_err("the sandbox killed the jailed ember on a forbidden system call "
                "(--seccomp=kill); exiting with code %d",
                EXIT_BAD_SYSCALL);
        return EXIT_BAD_SYSCALL;
    }
    /* Not a clean stop (those come back as the child's own 128+n): the OOM killer under
     * --cgroup memory.max, a SIGKILL, a crash. */
    log_err("the jailed ember was killed by signal %d (%s)%s; exiting with code %d", sig,
            strsignal(sig), sig == SIGKILL ? "; under --cgroup memory.max: the OOM killer?" : "",
            EXIT_VMM_ERROR);
    return EXIT_VMM_ERROR;
}

/* Supervisor: wait for the child, relaying the signals of run_host_signals through the pipe. A
 * child that is gone already makes the relay fail with EPIPE (SIGPIPE is ignored): its SIGCHLD is
 * next in the signalfd. */
static int supervise(pid_t pid, int relay_fd, int sfd)
{
    for (;;) {
        struct signalfd_siginfo si;
        int st;
        uint8_t b;

        if (read(sfd, &si, sizeof(si)) != sizeof(si)) {
            if (errno == EINTR)
                continue;
            log_errno("jail: reading the supervisor's signals");
            close(relay_fd); /* the child reads end of file and stops, as on SIGHUP */
            waitpid(pid, &st, 0);
            return EXIT_VMM_ERROR;
        }
        if (si.ssi_signo != SIGCHLD) {
            b = (uint8_t)si.ssi_signo;
            (void)!write(relay_fd, &b, 1);
            continue;
        }
        if (waitpid(pid, &st, WNOHANG) == pid)
            return child_code(st);
    }
}

/* The terminal as it was before the child put it in raw mode, put back once the child is gone
 * however it ended; only from the foreground (in the background tcsetattr would stop us with
 * SIGTTOU, and the child never went raw there). */
static void restore_terminal(const struct termios *saved, int have)
{
    if (have && tcgetpgrp(STDIN_FILENO) == getpgrp())
        tcsetattr(STDIN_FILENO, TCSANOW, saved);
}

int jail_enter(struct vm_config *cfg, int *code)
{
    static struct jail jl;
    const struct jail_config *j = &cfg->jail;
    int go[2], relay[2], err, sfd, have_tty;
    struct termios tty;
    sigset_t mask;
    pid_t pid;
    char g = 'g';

    if (!j->dir)
        return 0;
    if (geteuid() != 0) {
        log_err("--jail needs root (namespaces, pivot_root, another user); run ember as root");
        return -EPERM;
    }
    memset(&jl, 0, sizeof(jl));
    jl.cfg = cfg;
    jail_root_init(&jl.root);
    err = jail_root_open(&jl.root, j->dir);
    if (!err)
        err = plan(&jl);
    if (!err)
        err = jail_root_fill(&jl.root);
    if (err) {
        *code = EXIT_USAGE; /* DIR or what is in it: the command line's to fix */
        goto undo;
    }
    if (unshare(CLONE_NEWPID) < 0 && (err = missing(j, "PID namespace", errno)))
        goto undo;
    if (pipe2(go, O_CLOEXEC) < 0) {
        err = log_errno("jail: pipe");
        goto undo;
    }
    if (pipe2(relay, O_CLOEXEC) < 0) {
        err = log_errno("jail: pipe");
        close(go[0]);
        close(go[1]);
        goto undo;
    }
    have_tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &tty) == 0;
    run_host_signals(cfg, &mask); /* relayed to the jailed ember */
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    pid = fork();
    if (pid < 0) {
        err = log_errno("jail: fork");
        for (int i = 0; i < 2; i++) {
            close(go[i]);
            close(relay[i]);
        }
        goto undo;
    }
    if (pid == 0) {
        close(go[1]);
        close(relay[1]);
        sigset_t chld;

        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        sigprocmask(SIG_UNBLOCK, &chld, NULL); /* the rest stays blocked for ember's signalfd */
        sig_fd = relay[0];
        return child(&jl, go[0]);
    }
    close(go[0]);
    close(relay[0]);
    err = cgroup_setup(&jl, pid);
    if (!err && write(go[1], &g, 1) != 1)
        err = log_errno("jail: starting the child");
    close(go[1]);
    sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (sfd < 0)
        err = log_errno("jail: signalfd");
    /* The supervisor keeps nothing either: no privileges, a filter of its own. */
    if (!err)
        err = sandbox_drop_privileges();
    if (!err)
        err = sandbox_enter_thread(SANDBOX_THREAD_SUPERVISOR, -1);
    if (err) {
        close(relay[1]); /* the child reads end of file: it stops */
        waitpid(pid, NULL, 0);
        *code = EXIT_VMM_ERROR;
    } else {
        *code = supervise(pid, relay[1], sfd);
    }
    restore_terminal(&tty, have_tty);
    cleanup(&jl);
    return 1;
undo:
    jail_root_clear(&jl.root); /* what jail_root_fill made */
    return err;
}

int jail_drop_ids(const struct vm_config *cfg)
{
    const struct jail_config *j = &cfg->jail;

    if (!j->dir)
        return 0;
    capng_clear(CAPNG_SELECT_BOTH);
    if (capng_change_id((int)j->uid, (int)j->gid, CAPNG_DROP_SUPP_GRP | CAPNG_CLEAR_BOUNDING) < 0) {
        log_err("jail: cannot become uid %u gid %u", j->uid, j->gid);
        return -EPERM;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* the credential change cleared it */
    return 0;
}
