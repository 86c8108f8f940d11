// ember guest init, OCI mode: the agent behind ember-oci. It sets the container up, says
// "ready" on the ember.ctl port, starts the workload on "start", passes signals and terminal
// sizes on, relays a pty, and reports the exit status once every byte of output is out.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec.h"
#include "oci.h"
#include "proto.h"
#include "util.h"

static int ctl_fd = -1;

static void ctl_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ctl_send(const char *fmt, ...)
{
    char line[CTL_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    if (ctl_fd >= 0)
        write_full(ctl_fd, line, n);
}

// The agent's own errors go to the host's log, never into the container's streams.
static void error_to_host(const char *msg)
{
    ctl_send(CTL_ERROR " %.*s", CTL_LINE_MAX - 16, msg);
}

static long oom_kills(void)
{
    char buf[8192];
    int fd = open("/proc/vmstat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = strstr(buf, "\noom_kill ");
    return p ? strtol(p + 10, NULL, 10) : 0;
}

struct agent {
    const struct oci_spec *s;
    int in_fd, out_fd, err_fd;
    pid_t pid;   // the workload, once started
    int master;  // its pty (terminal mode), or -1
    int in_open; // terminal mode: the stdin port still has input
    int status;  // shell-style, once it ended
    int done;
    int lowmem;     // samples in a row with the guest's memory nearly gone (lowmem.c)
    int oom_killed; // lowmem.c killed a process of the container
    char line[CTL_LINE_MAX];
    size_t line_len;
};

// runc's rule: without HOME in the environment, the user's home from the container's
// /etc/passwd, else "/". Called in the child, after chroot.
static char **with_home(char **env, int n, uid_t uid)
{
    static char home[600];
    char line[1024];
    for (int i = 0; i < n; i++)
        if (!strncmp(env[i], "HOME=", 5))
            return env;
    snprintf(home, sizeof(home), "HOME=/");
    FILE *f = fopen("/etc/passwd", "re");
    while (f && fgets(line, sizeof(line), f)) {
        char *field[7], *p = line;
        int k = 0;
        for (; k < 7 && p; k++)
            field[k] = strsep(&p, ":");
        if (k == 7 && strtoul(field[2], NULL, 10) == uid && *field[5]) {
            snprintf(home, sizeof(home), "HOME=%.512s", field[5]);
            break;
        }
    }
    if (f)
        fclose(f);
    char **out = malloc((n + 2) * sizeof(*out));
    if (!out)
        return env;
    memcpy(out, env, n * sizeof(*out));
    out[n] = home;
    out[n + 1] = NULL;
    return out;
}

// In the child: become the workload. Reports errno through report_fd if it cannot.
static void become_workload(struct agent *a, int slave, int report_fd)
{
    const struct oci_spec *s = a->s;
    sigset_t all;
    int e;

    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int sig = 1; sig < NSIG; sig++)
        signal(sig, SIG_DFL); // init ignores SIGTTOU; the workload starts from the defaults
    setsid();
    if (slave >= 0) {
        ioctl(slave, TIOCSCTTY, 0);
        dup2(slave, 0);
        dup2(slave, 1);
        dup2(slave, 2);
        if (slave > 2)
            close(slave);
    } else {
        dup2(a->in_fd, 0);
        dup2(a->out_fd, 1);
        dup2(a->err_fd, 2);
    }
    if (chroot(OCI_ROOT) != 0 || chdir(s->cwd) != 0)
        goto failed;
    for (int i = 0; i < s->nrlimits; i++)
        if (setrlimit(s->rlimits[i].resource, &s->rlimits[i].lim) != 0)
            goto failed;
    if (setgroups(s->ngroups, s->groups) != 0 || setgid(s->gid) != 0 || setuid(s->uid) != 0)
        goto failed;
    umask(s->umask);
    environ = with_home((char **)s->env, s->nenv, s->uid);
    execvp(s->argv[0], s->argv);
failed:
    e = errno;
    (void)!write(report_fd, &e, sizeof(e));
    _exit(e == ENOENT ? 127 : 126);
}

// "start": fork the workload; it reports an exec failure through a close-on-exec pipe.
static int start(struct agent *a)
{
    int pfd[2], slave = -1, e = 0;

    if (pipe2(pfd, O_CLOEXEC) != 0)
        return fail("oci: pipe: %s", strerror(errno)), -1;
    if (a->s->terminal) {
        a->master = oci_open_pty(a->s->rows, a->s->cols, &slave);
        if (a->master < 0)
            return -1;
        a->in_open = 1;
    }
    a->pid = fork();
    if (a->pid == 0) {
        close(pfd[0]);
        become_workload(a, slave, pfd[1]);
    }
    close(pfd[1]);
    if (slave >= 0)
        close(slave);
    if (a->pid < 0)
        return fail("oci: fork: %s", strerror(errno)), -1;
    if (read(pfd[0], &e, sizeof(e)) == (ssize_t)sizeof(e) && e > 0) {
        ctl_send(CTL_FAILED " %d", e);
    } else {
        e = 0;
        ctl_send(CTL_STARTED " %d", (int)a->pid);
    }
    close(pfd[0]);
    if (!a->s->terminal) { // the workload has the streams now; keep stderr for nothing else
        close(a->in_fd);
        close(a->out_fd);
        a->in_fd = a->out_fd = -1;
    }
    return 0;
}

// Signals whose default action ends a process (the workload, had it started).
static int kills_by_default(int sig)
{
    return sig != SIGCHLD && sig != SIGWINCH && sig != SIGURG && sig != SIGCONT && sig != SIGSTOP &&
           sig != SIGTSTP && sig != SIGTTIN && sig != SIGTTOU;
}

static void on_line(struct agent *a, char *line)
{
    int sig, all;
    unsigned rows, cols;

    if (strcmp(line, CTL_START) == 0) {
        if (a->pid == 0 && start(a) != 0) {
            a->status = 125;
            a->done = 1;
        }
    } else if (sscanf(line, CTL_SIGNAL " %d %d", &sig, &all) == 2 && sig > 0 && sig < NSIG) {
        if (a->pid > 0)
            kill(all ? -1 : a->pid, sig);
        else if (kills_by_default(sig)) { // created, not started: it ends as runc's would
            a->status = 128 + sig;
            a->done = 1;
        }
    } else if (sscanf(line, CTL_WINSIZE " %u %u", &rows, &cols) == 2 && a->master >= 0) {
        struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
        ioctl(a->master, TIOCSWINSZ, &ws);
    }
}

static void read_ctl(struct agent *a)
{
    char buf[256];
    ssize_t n = read(ctl_fd, buf, sizeof(buf));
    if (n <= 0) {
        if (n == 0 || errno != EINTR) {
            close(ctl_fd); // the host closed the port: nothing more will come
            ctl_fd = -1;
        }
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (buf[i] == '\n') {
            a->line[a->line_len] = '\0';
            on_line(a, a->line);
            a->line_len = 0;
        } else if (a->line_len < sizeof(a->line) - 1) {
            a->line[a->line_len++] = buf[i];
        }
    }
}

static void reap(struct agent *a)
{
    int st;
    pid_t w;
    while ((w = waitpid(-1, &st, WNOHANG)) > 0) {
        if (w != a->pid || a->pid <= 0)
            continue; // an orphan, or the power-button watcher
        a->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        a->done = 1;
    }
}

// Terminal mode: the pty's output to the stdout port; 0 when it ended.
static int relay_out(struct agent *a)
{
    char buf[4096];
    ssize_t n = read(a->master, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 1;
    if (n <= 0)
        return 0; // EIO: every slave is closed
    write_full(a->out_fd, buf, n);
    return 1;
}

static void relay_in(struct agent *a)
{
    char buf[4096];
    ssize_t n = read(a->in_fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR)
        return;
    if (n <= 0) {
        a->in_open = 0; // a terminal has no end of file to pass on
        return;
    }
    write_full(a->master, buf, n);
}

// The host writes the root disk while we boot: wait for its word (nothing else comes first).
static int wait_for_disk(struct agent *a)
{
    char c;
    for (;;) {
        ssize_t n = read(ctl_fd, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return fail("oci: the ember.ctl port closed before the root disk was ready"), -1;
        if (c != '\n') {
            if (a->line_len < sizeof(a->line) - 1)
                a->line[a->line_len++] = c;
            continue;
        }
        a->line[a->line_len] = '\0';
        a->line_len = 0;
        if (strcmp(a->line, CTL_DISK) == 0)
            return 0;
    }
}

int oci_main(int in_fd, int out_fd, int err_fd, char *spec, uint32_t len)
{
    static struct oci_spec s;
    struct agent a = {.s = &s, .in_fd = in_fd, .out_fd = out_fd, .err_fd = err_fd, .master = -1};
    char ctl_dev[300];
    sigset_t chld;
    int sfd;

    if (find_port("ember.ctl", ctl_dev, sizeof(ctl_dev)) ||
        (ctl_fd = open(ctl_dev, O_RDWR | O_CLOEXEC)) < 0)
        return fail("oci: the ember.ctl port did not show up"), 125;
    set_error_hook(error_to_host);
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0)
        return fail("oci: signalfd: %s", strerror(errno)), 125;
    if (oci_parse(spec, len, &s))
        return 125;
    if (s.now)
        set_clock(s.now);
    if (s.seed)
        reseed(s.seed);
    if ((s.root_later && wait_for_disk(&a)) || oci_setup(&s))
        return 125;
    net_setup(0, NULL); // loopback only: no network for containers yet
    long oom_before = oom_kills();
    ctl_send(CTL_READY);

    while (!a.done) {
        struct pollfd pf[4] = {{.fd = ctl_fd, .events = POLLIN},
                               {.fd = sfd, .events = POLLIN},
                               {.fd = a.master, .events = POLLIN},
                               {.fd = a.in_open ? a.in_fd : -1, .events = POLLIN}};
        int n = poll(pf, 4, a.pid > 0 ? OCI_LOWMEM_MS : -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail("oci: poll: %s", strerror(errno));
            break;
        }
        if (a.pid > 0 && oci_lowmem_check(&a.lowmem))
            a.oom_killed = 1;
        if (n == 0)
            continue;
        if (pf[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) == sizeof(si))
                ;
            reap(&a);
        }
        if (pf[2].revents && !relay_out(&a)) {
            close(a.master); // the workload and whatever shared its pty are gone
            a.master = -1;
        }
        if (pf[3].revents)
            relay_in(&a);
        if (pf[0].revents)
            read_ctl(&a);
    }
    if (a.master >= 0) { // what the workload wrote last is still in the pty
        fcntl(a.master, F_SETFL, O_NONBLOCK);
        while (relay_out(&a)) {
            struct pollfd pf = {.fd = a.master, .events = POLLIN};
            if (poll(&pf, 1, 0) <= 0)
                break;
        }
    }
    ctl_send(CTL_EXIT " %d %d", a.status, a.oom_killed || oom_kills() > oom_before);
    return a.status;
}
