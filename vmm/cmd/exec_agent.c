/* The host end of ember-oci's agent link: the agent's lines (ready, started, exit), start,
 * signals and the terminal's size to it, and the exit record at the end. */
#include "exec_io.h"
#include "log.h"
#include "exec_spec.h" /* the ctl messages */

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define AGENT_NOTES_MAX 16 /* error and unexpected lines logged, at most */

/* A decimal in [lo, hi] that ends at *end (space or NUL); the guest's text is untrusted. */
static int number(const char *s, long lo, long hi, long *out, const char **end)
{
    char *e;
    long v;

    errno = 0;
    v = strtol(s, &e, 10);
    if (errno || e == s || (*e && *e != ' ') || v < lo || v > hi)
        return -1;
    *out = v;
    *end = e;
    return 0;
}

static void changed(struct exec_io *io, enum agent_state to)
{
    io->agent = to;
    if (io->on_agent)
        io->on_agent(io->on_agent_opaque);
}

static void ready(struct exec_io *io)
{
    if (io->agent != AGENT_BOOTING)
        return;
    if (io->ready_fd >= 0) {
        (void)!write(io->ready_fd, "R", 1);
        close(io->ready_fd);
        io->ready_fd = -1;
    }
    changed(io, AGENT_READY);
}

void exec_agent_line(struct exec_io *io, const char *line)
{
    const char *arg = strchr(line, ' '), *end;
    size_t word = arg ? (size_t)(arg - line) : strlen(line);
    long a, b;

    arg = arg ? arg + 1 : "";
#define IS(w) (word == strlen(w) && !memcmp(line, w, word))
    if (IS(CTL_READY) && !*arg) {
        ready(io);
    } else if (IS(CTL_STARTED) && io->agent == AGENT_STARTING &&
               !number(arg, 1, INT_MAX, &a, &end) && !*end) {
        io->workload_pid = (int)a;
        changed(io, AGENT_STARTED);
    } else if (IS(CTL_FAILED) && io->agent == AGENT_STARTING && !number(arg, 1, 4095, &a, &end) &&
               !*end) {
        io->exec_errno = (int)a;
        changed(io, AGENT_FAILED);
    } else if (IS(CTL_EXIT) && io->agent >= AGENT_READY && io->agent != AGENT_EXITED &&
               !number(arg, 0, 255, &a, &end) && *end == ' ' && !number(end + 1, 0, 1, &b, &end) &&
               !*end) {
        io->exit_status = (int)a;
        io->oom = (int)b;
        if (io->oom)
            log_info("the guest's OOM killer killed the workload (or a process of it)");
        changed(io, AGENT_EXITED);
    } else if (IS(CTL_ERROR) && io->agent_notes < AGENT_NOTES_MAX) {
        io->agent_notes++;
        log_err("guest agent: %.*s", CTL_LINE_MAX, arg);
    } else if (io->agent_notes < AGENT_NOTES_MAX) { /* a hostile guest must not fill the log */
        io->agent_notes++;
        log_warn("guest agent: unexpected message '%.*s' in state %d; ignored", CTL_LINE_MAX, line,
                 (int)io->agent);
    }
#undef IS
}

static int send_line(struct exec_io *io, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static int send_line(struct exec_io *io, const char *fmt, ...)
{
    char line[CTL_LINE_MAX];
    va_list ap;
    int err;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    err = exec_io_send(io, line);
    if (err)
        log_warn("exec agent: cannot send '%s': %s", line, strerror(-err));
    return err;
}

void exec_agent_resize(struct exec_io *io)
{
    struct winsize ws;

    if (!io->tty || io->agent < AGENT_READY || io->agent >= AGENT_EXITED)
        return;
    if (ioctl(io->in_fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col)
        send_line(io, CTL_WINSIZE " %u %u", ws.ws_row, ws.ws_col);
}

int exec_agent_start(struct exec_io *io)
{
    int err;

    if (io->agent != AGENT_READY)
        return -EBUSY;
    exec_agent_resize(io);
    err = send_line(io, CTL_START);
    if (!err)
        changed(io, AGENT_STARTING);
    return err;
}

int exec_agent_signal(struct exec_io *io, int sig, int all)
{
    if (sig < 1 || sig >= NSIG)
        return -EINVAL;
    if (io->agent < AGENT_READY || io->agent == AGENT_EXITED)
        return -ESRCH;
    return send_line(io, CTL_SIGNAL " %d %d", sig, all ? 1 : 0);
}

int exec_agent_host_signal(struct exec_io *io, int sig)
{
    if (!io || !io->ctl)
        return 0;
    if (sig == SIGWINCH) {
        exec_agent_resize(io);
        return 1;
    }
    /* Before the agent can take it, a signal stops the VM (ember's usual 128+n). */
    return exec_agent_signal(io, sig, 0) == 0;
}

/* create finished the root disk (one byte), or gave up (end of file: it kills us anyway). */
static void on_disk(struct loop_handler *h, uint32_t events)
{
    struct exec_io *io = container_of(h, struct exec_io, h_disk);
    char b = 0;

    (void)events;
    if (read(h->fd, &b, 1) < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    loop_del(io->loop, h);
    close(h->fd);
    io->disk_fd = -1;
    if (b == 'D')
        send_line(io, CTL_DISK);
}

int exec_agent_watch_disk(struct exec_io *io, struct loop *loop)
{
    if (!io->ctl || io->disk_fd < 0)
        return 0;
    io->loop = loop;
    io->h_disk = (struct loop_handler){.fd = io->disk_fd, .fn = on_disk};
    if (loop_add(loop, &io->h_disk, EPOLLIN) < 0)
        return log_errno("exec agent: epoll_ctl for the root disk's readiness");
    return 0;
}

void exec_agent_finish(struct exec_io *io, int code)
{
    char rec[160];
    int n;

    if (io->exit_fd < 0)
        return;
    n = snprintf(rec, sizeof(rec),
                 "{\"status\":%d,\"workload_exited\":%s,\"oom_killed\":%s,\"exec_errno\":%d}\n",
                 code, io->agent == AGENT_EXITED ? "true" : "false", io->oom ? "true" : "false",
                 io->exec_errno);
    (void)!write(io->exit_fd, rec, (size_t)n);
    close(io->exit_fd);
    io->exit_fd = -1;
}
