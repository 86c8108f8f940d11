/* The sandbox: close stray descriptors, no new privileges, no capabilities, seccomp per thread. */
#include "sandbox.h"
#include "seccomp_rules.h"
#include "console.h"
#include "snapshot.h"
#include "exec_io.h"
#include "exitcode.h"
#include "log.h"

#include <cap-ng.h>
#include <errno.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "syscall_names.h" /* generated at build time by vmm/gen_syscall_names.c */

/* Everything the SIGSYS handler needs, prepared beforehand: it may not allocate. */
static struct {
    const struct vm_config *cfg; /* read when a thread enters: `configure` may have changed it */
    int disabled;                /* --no-sandbox */
    int enabled;                 /* filters are installed (not --no-sandbox, not --seccomp=off) */
    int rebuild;
    int snapshot;
    uint32_t action;
    int have_tty;
    struct termios tty;
} sb;

static __thread const char *thread_kind = "main";
static __thread int thread_index = -1;

static const char *kind_name(enum sandbox_thread kind)
{
    switch (kind) {
    case SANDBOX_THREAD_LOOP:
        return "event loop";
    case SANDBOX_THREAD_VCPU:
        return "vCPU";
    default:
        return "jail supervisor";
    }
}

static size_t put(char *buf, size_t at, size_t cap, const char *s)
{
    while (*s && at + 1 < cap)
        buf[at++] = *s++;
    return at;
}

static size_t put_num(char *buf, size_t at, size_t cap, unsigned long v)
{
    char tmp[24];
    int n = 0;

    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) && n < (int)sizeof(tmp));
    while (n && at + 1 < cap)
        buf[at++] = tmp[--n];
    return at;
}

static size_t put_hex(char *buf, size_t at, size_t cap, unsigned long v)
{
    char tmp[20];
    int n = 0;

    do
        tmp[n++] = "0123456789abcdef"[v & 15];
    while ((v >>= 4) && n < (int)sizeof(tmp));
    at = put(buf, at, cap, "0x");
    while (n && at + 1 < cap)
        buf[at++] = tmp[--n];
    return at;
}

/* A forbidden call on some thread (SECCOMP_RET_TRAP): name it, restore the terminal, and end
 * the process with the documented code. Async-signal-safe: stack buffer, write, _exit. */
static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
    char msg[256];
    size_t n = 0;
    int nr = si->si_syscall;

    (void)sig;
    if (sb.have_tty)
        tcsetattr(STDIN_FILENO, TCSANOW, &sb.tty);
    n = put(msg, n, sizeof(msg), "\r\nember: error: the sandbox stopped a forbidden system call: ");
    if (si->si_arch == seccomp_audit_arch && nr >= 0 && nr < SYSCALL_NAMES_MAX && syscall_names[nr])
        n = put(msg, n, sizeof(msg), syscall_names[nr]);
    else
        n = put(msg, n, sizeof(msg), "(unknown)");
    n = put(msg, n, sizeof(msg), " (");
    if (si->si_arch != seccomp_audit_arch)
        n = put(msg, n, sizeof(msg), "foreign architecture, ");
    n = put(msg, n, sizeof(msg), "number ");
    n = put_num(msg, n, sizeof(msg), (unsigned long)(unsigned)nr);
    if (si->si_arch == seccomp_audit_arch && nr == SYS_ioctl && uc) {
        n = put(msg, n, sizeof(msg), ", request ");
        n = put_hex(msg, n, sizeof(msg), seccomp_ioctl_request(uc));
    }
    n = put(msg, n, sizeof(msg), ") on the ");
    n = put(msg, n, sizeof(msg), thread_kind);
    if (thread_index >= 0) {
        n = put(msg, n, sizeof(msg), " ");
        n = put_num(msg, n, sizeof(msg), (unsigned long)thread_index);
    }
    n = put(msg, n, sizeof(msg), " thread; exiting with code 123 (--seccomp=log to find all)\n");
    (void)!write(STDERR_FILENO, msg, n);
    _exit(EXIT_BAD_SYSCALL);
}

static int close_stray_fds(const struct vm_config *cfg)
{
    int keep[CONFIG_MAX_NETS + 10], nkeep = 0;
    unsigned int from = 3;

    for (int i = 0; i < cfg->nr_nets; i++)
        if (cfg->net[i].backend == NET_TAP_FD && cfg->net[i].tap_fd > 2)
            keep[nkeep++] = cfg->net[i].tap_fd;
    if (cfg->exec) { /* `ember exec` opened its streams already */
        if (cfg->exec->in_fd > 2)
            keep[nkeep++] = cfg->exec->in_fd;
        if (cfg->exec->out.fd > 2)
            keep[nkeep++] = cfg->exec->out.fd;
        if (cfg->exec->err.fd > 2)
            keep[nkeep++] = cfg->exec->err.fd;
        if (cfg->exec->ctl) { /* ember-oci: readiness and the exit record */
            if (cfg->exec->ready_fd > 2)
                keep[nkeep++] = cfg->exec->ready_fd;
            if (cfg->exec->exit_fd > 2)
                keep[nkeep++] = cfg->exec->exit_fd;
            if (cfg->exec->disk_fd > 2)
                keep[nkeep++] = cfg->exec->disk_fd;
        }
    }
    if (cfg->snap && snapshot_memory_fd(cfg->snap) > 2) /* read before us (`ember exec`) */
        keep[nkeep++] = snapshot_memory_fd(cfg->snap);
    if (cfg->snap && snapshot_dir_fd(cfg->snap) > 2)
        keep[nkeep++] = snapshot_dir_fd(cfg->snap);
    if (cfg->snap_out) { /* `ember exec`'s ready snapshot, opened before the jail */
        if (cfg->snap_out->state_fd > 2)
            keep[nkeep++] = cfg->snap_out->state_fd;
        if (cfg->snap_out->mem_fd > 2)
            keep[nkeep++] = cfg->snap_out->mem_fd;
    }
    /* Sort the few descriptors to keep, then close the ranges between them. */
    for (int i = 1; i < nkeep; i++)
        for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
            int t = keep[j];
            keep[j] = keep[j - 1];
            keep[j - 1] = t;
        }
    for (int i = 0; i < nkeep; i++) {
        if ((unsigned)keep[i] > from && syscall(SYS_close_range, from, keep[i] - 1, 0) < 0)
            return log_errno("close_range of inherited descriptors");
        from = (unsigned)keep[i] + 1;
    }
    if (syscall(SYS_close_range, from, ~0U, 0) < 0)
        return log_errno("close_range of inherited descriptors");
    return 0;
}

int sandbox_prepare(const struct vm_config *cfg)
{
    struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
    int err;

    memset(&sb, 0, sizeof(sb));
    sb.cfg = cfg;
    sb.disabled = cfg->sandbox.disabled;
    if (sb.disabled)
        return 0;
    err = close_stray_fds(cfg);
    if (err)
        return err;
    sb.have_tty = console_terminal_foreground() && tcgetattr(STDIN_FILENO, &sb.tty) == 0;
    switch (cfg->sandbox.seccomp) {
    case SECCOMP_ACTION_OFF:
        return 0;
    case SECCOMP_ACTION_KILL:
        sb.action = SCMP_ACT_KILL_PROCESS;
        break;
    case SECCOMP_ACTION_LOG:
        sb.action = SCMP_ACT_LOG;
        break;
    default:
        sb.action = SCMP_ACT_TRAP;
        break;
    }
    sigemptyset(&sa.sa_mask);
    sigfillset(&sa.sa_mask); /* nothing interrupts the report */
    if (sigaction(SIGSYS, &sa, NULL) < 0)
        return log_errno("sigaction(SIGSYS)");
    sb.rebuild = cfg->on_reboot == ON_REBOOT_RESTART;
    sb.enabled = 1;
    return 0;
}

void sandbox_allow_snapshot(int on)
{
    sb.snapshot = on;
}

unsigned sandbox_needs(const struct vm_config *cfg)
{
    unsigned needs = cfg->nr_disks ? SANDBOX_NEEDS_DISK : 0;

    for (int i = 0; i < cfg->nr_nets; i++)
        needs |= cfg->net[i].backend == NET_USER ? SANDBOX_NEEDS_INET : SANDBOX_NEEDS_TAP;
    if (cfg->api_sock)
        needs |= SANDBOX_NEEDS_API;
    if (cfg->exec && cfg->exec->ctl && cfg->exec->tty)
        needs |= SANDBOX_NEEDS_TTY;
    return needs;
}

void sandbox_allow_rebuild(int on)
{
    sb.rebuild = on;
}

int sandbox_drop_privileges(void)
{
    int bounds;

    if (sb.disabled)
        return 0;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return log_errno("prctl(PR_SET_NO_NEW_PRIVS)");
    /* The bounding set can only shrink with CAP_SETPCAP (root); without it ember has no
     * capabilities to lose, and no-new-privileges keeps it that way. */
    bounds = capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP);
    capng_clear(CAPNG_SELECT_ALL);
    if (capng_apply(bounds ? CAPNG_SELECT_ALL : CAPNG_SELECT_CAPS) < 0) {
        log_err("capng_apply: cannot drop ember's capabilities%s",
                bounds ? " and bounding set" : "");
        return -EPERM;
    }
    return 0;
}

#ifdef EMBER_SANDBOX_SELFTEST
/* Test builds only (meson -Dsandbox_selftest=true): EMBER_SELFTEST_FORBIDDEN=vcpu|loop makes
 * that thread attempt execve right after its filter is in, which the sandbox must stop. */
static void selftest(enum sandbox_thread kind)
{
    const char *want = getenv("EMBER_SELFTEST_FORBIDDEN");
    char *const argv[] = {"/bin/true", NULL};

    if (!want || strcmp(want, kind == SANDBOX_THREAD_VCPU ? "vcpu" : "loop") != 0)
        return;
    if (kind != SANDBOX_THREAD_VCPU && kind != SANDBOX_THREAD_LOOP)
        return;
    log_info("selftest: attempting execve on the %s thread", kind_name(kind));
    execve(argv[0], argv, NULL);
    log_err("selftest: execve was not stopped by the sandbox: %s", strerror(errno));
}
#endif

int sandbox_enter_thread(enum sandbox_thread kind, int index)
{
    struct sandbox_filter_opts o = {.kind = kind, .default_action = sb.action, .pid = getpid()};
    scmp_filter_ctx ctx;
    int err;

    thread_kind = kind_name(kind);
    thread_index = index;
    if (!sb.enabled)
        return 0;
    o.rebuild = kind == SANDBOX_THREAD_LOOP && sb.rebuild;
    o.needs = sandbox_needs(sb.cfg);
    o.snapshot = kind == SANDBOX_THREAD_LOOP && sb.snapshot;
    ctx = seccomp_build_filter(&o);
    if (!ctx) {
        log_err("seccomp: cannot build the %s thread's filter", kind_name(kind));
        return -ENOMEM;
    }
    err = seccomp_load(ctx);
    seccomp_release(ctx);
    if (err) {
        log_err("seccomp_load for the %s thread: %s", kind_name(kind), strerror(-err));
        return err;
    }
#ifdef EMBER_SANDBOX_SELFTEST
    selftest(kind);
#endif
    return 0;
}
