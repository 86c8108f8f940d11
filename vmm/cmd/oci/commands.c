/* ember-oci's commands on an existing container: start, state, kill, delete, ps, pause and
 * resume, with the texts and exit codes runc's callers expect. */
#include "oci.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define QMP_TIMEOUT_MS   (60 * 1000)
#define KILL_WAIT_MS     (10 * 1000)
#define START_TIMEOUT_MS (120 * 1000)

/* One positional ID and the given options. 0, or -1 after oci_error. */
static int id_arg(int argc, char **argv, const struct oci_opt *opts, const char *cmd,
                  const char **id, const char **extra)
{
    const char *pos[2];
    int n;

    if (oci_parse_args(argc, argv, opts, pos, extra ? 2 : 1, &n))
        return -1;
    if (n < 1)
        return oci_error("%s needs the container id (ember-oci %s ID)", cmd, cmd);
    *id = pos[0];
    if (extra)
        *extra = n > 1 ? pos[1] : NULL;
    return 0;
}

/* The workload's argv[0] for messages, from the bundle's config. */
static void workload_name(const struct oci_state *s, char *buf, size_t len)
{
    struct oci_config c;

    snprintf(buf, len, "%s", "the workload");
    oci_quiet(1);
    if (oci_config_load(s->bundle, &c) == 0 && c.nargs)
        snprintf(buf, len, "%s", c.args[0]);
    oci_quiet(0);
    oci_config_free(&c);
}

int oci_start(struct oci_state *s)
{
    enum oci_status st = oci_state_status(s);
    json_object *ret = NULL;
    char err[512], name[256];
    const char *e;
    struct oci_config c;

    if (st == ST_STOPPED)
        return oci_error("cannot start a container that has stopped"), 1;
    if (st != ST_CREATED)
        return oci_error("cannot start an already running container"), 1;
    if (oci_qmp(s, "x-ember-start", NULL, &ret, err, sizeof(err), START_TIMEOUT_MS)) {
        workload_name(s, name, sizeof(name));
        if ((e = strstr(err, "(errno ")) != NULL) {
            int no = atoi(e + 7);

            if (no == ENOENT)
                return oci_error("exec: \"%s\": no such file or directory", name), 127;
            if (no == EACCES || no == EPERM)
                return oci_error("exec: \"%s\": permission denied", name), 126;
            return oci_error("exec: \"%s\": %s", name, strerror(no)), 126;
        }
        return oci_error("cannot start the container: %s", err), 1;
    }
    json_object_put(ret);
    s->status = ST_RUNNING;
    if (oci_state_save(s))
        return 1;
    oci_quiet(1); /* runc only warns when these fail */
    if (oci_config_load(s->bundle, &c) == 0)
        oci_run_hooks(&c, HOOK_POSTSTART, s);
    oci_quiet(0);
    oci_config_free(&c);
    return 0;
}

int oci_cmd_start(int argc, char **argv)
{
    struct oci_state s = {.dirfd = -1, .lockfd = -1};
    const char *id = NULL;
    int code;

    if (id_arg(argc, argv, NULL, "start", &id, NULL) || oci_state_open(&s, id)) {
        oci_state_close(&s);
        return 1;
    }
    code = oci_start(&s);
    oci_state_close(&s);
    return code;
}

int oci_cmd_state(int argc, char **argv)
{
    struct oci_state s = {.dirfd = -1, .lockfd = -1};
    const char *id = NULL;
    json_object *o;

    if (id_arg(argc, argv, NULL, "state", &id, NULL) || oci_state_open(&s, id)) {
        oci_state_close(&s);
        return 1;
    }
    if (oci_state_status(&s) == ST_STOPPED)
        oci_note_oom(&s, s.bundle);
    o = oci_state_json(&s);
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
    oci_state_close(&s);
    return 0;
}

static int parse_signal(const char *name)
{
    static const struct {
        const char *name;
        int sig;
    } sigs[] = {{"HUP", SIGHUP},       {"INT", SIGINT},   {"QUIT", SIGQUIT},     {"ILL", SIGILL},
                {"TRAP", SIGTRAP},     {"ABRT", SIGABRT}, {"IOT", SIGIOT},       {"BUS", SIGBUS},
                {"FPE", SIGFPE},       {"KILL", SIGKILL}, {"USR1", SIGUSR1},     {"SEGV", SIGSEGV},
                {"USR2", SIGUSR2},     {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},     {"TERM", SIGTERM},
                {"STKFLT", SIGSTKFLT}, {"CHLD", SIGCHLD}, {"CONT", SIGCONT},     {"STOP", SIGSTOP},
                {"TSTP", SIGTSTP},     {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},     {"URG", SIGURG},
                {"XCPU", SIGXCPU},     {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF},
                {"WINCH", SIGWINCH},   {"IO", SIGIO},     {"PWR", SIGPWR},       {"SYS", SIGSYS}};
    char *end;
    long n;

    if (!name)
        return SIGTERM;
    n = strtol(name, &end, 10);
    if (end != name && !*end)
        return n > 0 && n < NSIG ? (int)n : -1;
    if (!strncasecmp(name, "SIG", 3))
        name += 3;
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (!strcasecmp(name, sigs[i].name))
            return sigs[i].sig;
    return -1;
}

int oci_cmd_kill(int argc, char **argv)
{
    const char *all = NULL, *id = NULL, *signame = NULL;
    const struct oci_opt opts[] = {{"all", 'a', 0, &all}, {NULL, 0, 0, NULL}};
    struct oci_state s = {.dirfd = -1, .lockfd = -1};
    json_object *args;
    char err[512];
    int sig, code = 1;

    if (id_arg(argc, argv, opts, "kill", &id, &signame))
        return 1;
    sig = parse_signal(signame);
    if (sig < 0)
        return oci_error("unknown signal '%s'", signame), 1;
    if (oci_state_open(&s, id))
        goto out;
    if (oci_state_status(&s) == ST_STOPPED) {
        oci_error("container not running");
        goto out;
    }
    if (sig == SIGKILL) { /* the VM is the container: KILL ends it, paused or not */
        if (kill(s.pid, SIGKILL) < 0 && errno != ESRCH) {
            oci_error("kill %d: %s", (int)s.pid, strerror(errno));
            goto out;
        }
        code = 0;
        goto out;
    }
    args = json_object_new_object();
    json_object_object_add(args, "signal", json_object_new_int(sig));
    json_object_object_add(args, "all", json_object_new_boolean(oci_flag(all)));
    if (oci_qmp(&s, "x-ember-signal", args, NULL, err, sizeof(err), QMP_TIMEOUT_MS)) {
        if (strstr(err, "not running")) {
            oci_error("container not running");
            goto out;
        }
        /* The control socket is gone (the VMM is exiting): the VMM passes it on itself. */
        oci_debug("x-ember-signal: %s; signalling the VMM", err);
        if (kill(s.pid, sig) < 0) {
            oci_error(errno == ESRCH ? "container not running" : "kill: %s", strerror(errno));
            goto out;
        }
    }
    code = 0;
out:
    oci_state_close(&s);
    return code;
}

/* Wait for the VMM to be gone (not a zombie either: its reaper is the engine). */
static int wait_gone(const struct oci_state *s, int ms)
{
    for (; ms > 0; ms -= 20) {
        if (oci_proc_starttime(s->pid) != s->starttime)
            return 0;
        usleep(20000);
    }
    return -1;
}

int oci_cmd_delete(int argc, char **argv)
{
    const char *force = NULL, *id = NULL;
    const struct oci_opt opts[] = {{"force", 'f', 0, &force}, {NULL, 0, 0, NULL}};
    struct oci_state s = {.dirfd = -1, .lockfd = -1};
    struct oci_config c;
    enum oci_status st;

    if (id_arg(argc, argv, opts, "delete", &id, NULL))
        return 1;
    if (oci_flag(force)) {
        /* runc: --force on a container that does not exist (a create that failed half-way)
         * removes what is left and succeeds. */
        oci_quiet(1);
        if (oci_state_open(&s, id)) {
            oci_quiet(0);
            if (!oci_check_id(id) && s.dir[0])
                oci_state_remove(&s);
            else
                oci_state_close(&s);
            return 0;
        }
        oci_quiet(0);
    } else if (oci_state_open(&s, id)) {
        oci_state_close(&s);
        return 1;
    }
    st = oci_state_status(&s);
    /* runc deletes a created container without --force (it never ran); running or paused
     * ones need it. */
    if (st != ST_STOPPED && st != ST_CREATED && !oci_flag(force)) {
        oci_error("cannot delete container %s that is not stopped: %s", id, oci_status_name(st));
        oci_state_close(&s);
        return 1;
    }
    if (st != ST_STOPPED) {
        kill(s.pid, SIGKILL);
        if (wait_gone(&s, KILL_WAIT_MS))
            oci_debug("delete: the VMM (pid %d) is still not reaped", (int)s.pid);
    }
    oci_note_oom(&s, s.bundle);
    oci_quiet(1); /* runc only warns when these fail; the bundle may be gone */
    if (oci_config_load(s.bundle, &c) == 0)
        oci_run_hooks(&c, HOOK_POSTSTOP, &s);
    oci_quiet(0);
    oci_config_free(&c);
    oci_cgroup_remove(s.cgroup);
    oci_state_remove(&s);
    return 0;
}

int oci_cmd_ps(int argc, char **argv)
{
    const char *format = "table", *id = NULL;
    const struct oci_opt opts[] = {{"format", 'f', 1, &format}, {NULL, 0, 0, NULL}};
    struct oci_state s = {.dirfd = -1, .lockfd = -1};
    int alive;

    if (id_arg(argc, argv, opts, "ps", &id, NULL))
        return 1;
    if (strcmp(format, "json") && strcmp(format, "table"))
        return oci_error("--format %s: expected json or table", format), 1;
    if (oci_state_open(&s, id)) {
        oci_state_close(&s);
        return 1;
    }
    /* On the host the container is one process, its VMM; the workload's own processes live
     * in the guest. */
    alive = oci_state_status(&s) != ST_STOPPED;
    if (!strcmp(format, "json"))
        printf(alive ? "[%d]\n" : "[]\n", (int)s.pid);
    else if (alive)
        printf("PID\n%d\n", (int)s.pid);
    else
        printf("PID\n");
    oci_state_close(&s);
    return 0;
}

int oci_cmd_pause(int argc, char **argv, int pause)
{
    const char *id = NULL, *cmd = pause ? "pause" : "resume";
    struct oci_state s = {.dirfd = -1, .lockfd = -1};
    enum oci_status st;
    char err[512];
    int code = 1;

    if (id_arg(argc, argv, NULL, cmd, &id, NULL) || oci_state_open(&s, id))
        goto out;
    st = oci_state_status(&s);
    if (st == ST_STOPPED) {
        oci_error("container not running");
        goto out;
    }
    if (pause ? st != ST_RUNNING : st != ST_PAUSED) {
        oci_error(pause ? "container not running" : "container not paused");
        goto out;
    }
    if (oci_qmp(&s, pause ? "stop" : "cont", NULL, NULL, err, sizeof(err), QMP_TIMEOUT_MS)) {
        oci_error("cannot %s the container: %s", cmd, err);
        goto out;
    }
    s.status = pause ? ST_PAUSED : ST_RUNNING;
    code = oci_state_save(&s) ? 1 : 0;
out:
    oci_state_close(&s);
    return code;
}
