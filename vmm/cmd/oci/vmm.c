/* The container's VMM, as create leaves it behind: a monitor (the pid file's process, the
 * session leader holding the container's stdio or pty) and under it ember, running `ember
 * exec`'s machine with the container as the spec, jailed and sandboxed like every ember. The
 * monitor, outside the sandbox, passes signals on and writes what ember cannot reach from its
 * jail (the bundle's oom file). */
#include "exec.h"
#include "exec_io.h"
#include "exec_spec.h"
#include "oci.h"
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MIB           (1ULL << 20)
#define VMM_OVERHEAD  (64 * MIB)  /* the VMM's own memory beside guest RAM, kept in the limit */
#define GUEST_FLOOR   (128 * MIB) /* the smallest guest that boots and runs a workload well */
#define GUEST_DEFAULT (256 * MIB) /* without a limit: as `ember exec` */

uint64_t oci_guest_memory(const struct oci_config *c)
{
    if (c->mem_limit <= 0)
        return GUEST_DEFAULT;
    if ((uint64_t)c->mem_limit < GUEST_FLOOR + VMM_OVERHEAD)
        return 0;
    return ((uint64_t)c->mem_limit - VMM_OVERHEAD) & ~(MIB - 1);
}

static int count_cpus(const char *list)
{
    int n = 0;

    for (const char *p = list; p && *p;) {
        char *end;
        long a = strtol(p, &end, 10), b = a;

        if (end == p)
            return 0;
        if (*end == '-') {
            p = end + 1;
            b = strtol(p, &end, 10);
            if (end == p || b < a)
                return 0;
        }
        n += (int)(b - a + 1);
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return 0;
    }
    return n;
}

int oci_guest_cpus(const struct oci_config *c)
{
    int n = 1, set = count_cpus(c->cpuset_cpus);

    if (c->cpu_quota > 0 && c->cpu_period > 0)
        n = (int)((c->cpu_quota + c->cpu_period - 1) / c->cpu_period);
    if (set > 0 && (c->cpu_quota <= 0 || set < n))
        n = set;
    if (n < 1)
        n = 1;
    return n > VM_MAX_CPUS ? VM_MAX_CPUS : n;
}

static int join_netns(const struct oci_config *c)
{
    if (c->netns_path) {
        int fd = open(c->netns_path, O_RDONLY | O_CLOEXEC);

        if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
            fprintf(stderr, "ember: error: linux.namespaces network path %s: %s\n", c->netns_path,
                    strerror(errno));
            return -1;
        }
        close(fd);
    } else if (c->new_netns && unshare(CLONE_NEWNET) < 0) {
        fprintf(stderr, "ember: error: a network namespace for the VMM: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

/* The forked ember: `ember exec`'s machine with the container as the spec, jailed (as root)
 * and sandboxed like every ember; dies with the monitor. Returns the exit code. */
static int run_ember(struct oci_launch *l, pid_t monitor, int exit_fd)
{
    static struct exec_config x;
    static struct exec_io io;
    const struct oci_config *c = l->cfg;
    struct timespec start;
    char path[PATH_MAX + 1200];

    clock_gettime(CLOCK_MONOTONIC, &start);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* KILL of the monitor (the pid file's) ends the VM */
    if (getppid() != monitor)
        return 255;
    io = (struct exec_io){.in_fd = STDIN_FILENO,
                          .out.fd = -1,
                          .err.fd = -1,
                          .ready_fd = l->ready_fd,
                          .exit_fd = exit_fd,
                          .disk_fd = l->disk_fd,
                          .ctl = 1,
                          .fail_code = 255,
                          .tty = l->console_slave >= 0};
    exec_open_stream(&io.out, STDOUT_FILENO, "stdout");
    exec_open_stream(&io.err, l->err_fd, "stderr");
    io.spec = l->spec->buf;
    io.spec_len = l->spec->len;
    config_defaults(&x.vm);
    x.io = &io;
    x.vm.memory = oci_guest_memory(c);
    x.vm.cpus = oci_guest_cpus(c);
    x.vm.api_sock = "ctl.sock"; /* in vm/, the working directory (the jail's root) */
    x.rootfs = l->image;
    x.rootfs_rw = 1; /* the agent mounts it read-only itself for root.readonly, last */
    x.files_image = l->files;
    oci_state_path(l->st, "vm", path, sizeof(path));
    if (chdir(path) < 0)
        return 255;
    if (geteuid() == 0)
        x.vm.jail.dir = strdup(path);
    else
        x.no_jail = 1; /* the jail needs root; the sandbox is on all the same */
    return ember_exec(&x, &start);
}

int oci_relay_and_wait(pid_t child)
{
    static const int relay[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    sigset_t mask;
    int sfd, st = 0;

    sigemptyset(&mask);
    for (size_t i = 0; i < sizeof(relay) / sizeof(relay[0]); i++)
        sigaddset(&mask, relay[i]);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    for (;;) {
        struct signalfd_siginfo si;

        if (waitpid(child, &st, WNOHANG) == child)
            break;
        if (sfd < 0 || read(sfd, &si, sizeof(si)) != sizeof(si)) {
            if (sfd >= 0 && errno == EINTR)
                continue;
            waitpid(child, &st, 0);
            break;
        }
        if (si.ssi_signo != SIGCHLD)
            kill(child, (int)si.ssi_signo);
    }
    if (sfd >= 0)
        close(sfd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int oci_vmm_main(struct oci_launch *l)
{
    static const int relayed[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD};
    char path[PATH_MAX + 1200], go;
    int log_fd, exit_fd, code;
    sigset_t mask;
    pid_t self = getpid(), child;

    /* create's lock and directory stay with create. */
    close(l->st->lockfd);
    close(l->st->dirfd);
    /* Signals wait in the queue until the monitor reads them (or ember's own signalfd). */
    sigemptyset(&mask);
    for (size_t i = 0; i < sizeof(relayed) / sizeof(relayed[0]); i++)
        sigaddset(&mask, relayed[i]);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    if (read(l->go_fd, &go, 1) != 1) /* create failed to put us in the cgroup */
        return 255;
    close(l->go_fd);
    /* A session of its own: the engine's signals for the container reach this process, and
     * with a terminal the pty is its controlling tty, so resizes come as SIGWINCH. */
    setsid();
    if (l->console_slave >= 0) {
        ioctl(l->console_slave, TIOCSCTTY, 0);
        for (int fd = 0; fd < 3; fd++)
            dup2(l->console_slave, fd);
        if (l->console_slave > 2)
            close(l->console_slave);
    }
    /* ember's own messages go to vmm.log, never into the container's stderr. */
    l->err_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    oci_state_path(l->st, "vmm.log", path, sizeof(path));
    log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (l->err_fd < 0 || log_fd < 0 || dup2(log_fd, STDERR_FILENO) < 0)
        return 255;
    close(log_fd);
    oci_state_path(l->st, "exit", path, sizeof(path));
    exit_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (join_netns(l->cfg))
        return 255;
    child = fork();
    if (child == 0)
        _exit(run_ember(l, self, exit_fd));
    /* What ember holds, the monitor lets go: readiness reaches create only from ember. */
    close(l->ready_fd);
    close(l->disk_fd);
    close(l->err_fd);
    if (exit_fd >= 0)
        close(exit_fd);
    if (child < 0) {
        fprintf(stderr, "ember: error: fork: %s\n", strerror(errno));
        return 255;
    }
    /* The monitor: pass the engine's signals on (KILL ends both), wait, then write what ember
     * could not reach from its jail: podman and CRI-O take a guest OOM kill from the bundle's
     * "oom" file, which must be there before the exit status is. */
    code = oci_relay_and_wait(child);
    oci_note_oom(l->st, l->cfg->bundle);
    return code;
}
