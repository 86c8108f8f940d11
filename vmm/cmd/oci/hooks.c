/* OCI hooks (prestart, createRuntime, poststart, poststop), run on the host with the state
 * JSON on stdin, their output to /dev/null (a hook holding the engine's pipes would hang it),
 * each within its timeout. The state's pid is the VMM, so /proc/<pid>/ns/net is its network
 * namespace (Docker's libnetwork-setkey prestart hook needs that). */
#include "oci.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HOOK_DEFAULT_TIMEOUT 60 /* seconds, when the config gives none */

static int run_one(const struct oci_hook *h, const char *state)
{
    char *argv[65], *envp[65];
    int in[2], st = 0, waited = 0, limit = (h->timeout ? h->timeout : HOOK_DEFAULT_TIMEOUT) * 50;
    pid_t pid, w;

    for (int i = 0; i < h->nargs; i++)
        argv[i] = (char *)h->args[i];
    argv[h->nargs ? h->nargs : 1] = NULL;
    if (!h->nargs)
        argv[0] = (char *)h->path;
    for (int i = 0; i < h->nenv; i++)
        envp[i] = (char *)h->env[i];
    envp[h->nenv] = NULL;
    if (pipe2(in, O_CLOEXEC) < 0)
        return oci_error("hook %s: pipe: %s", h->path, strerror(errno));
    pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);

        dup2(in[0], 0);
        dup2(null, 1);
        dup2(null, 2);
        execve(h->path, argv, envp);
        _exit(127);
    }
    close(in[0]);
    if (pid < 0) {
        close(in[1]);
        return oci_error("hook %s: fork: %s", h->path, strerror(errno));
    }
    signal(SIGPIPE, SIG_IGN); /* a hook that does not read its stdin */
    (void)!write(in[1], state, strlen(state));
    close(in[1]);
    while ((w = waitpid(pid, &st, WNOHANG)) == 0 && waited < limit) {
        usleep(20000);
        waited++;
    }
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        return oci_error("hook %s did not finish within %d s", h->path,
                         h->timeout ? h->timeout : HOOK_DEFAULT_TIMEOUT);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return oci_error("hook %s failed (status %d)", h->path,
                         WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    return 0;
}

int oci_run_hooks(const struct oci_config *c, enum oci_hook_kind kind, const struct oci_state *s)
{
    json_object *o;
    int err = 0;

    if (!c->nhooks[kind])
        return 0;
    o = oci_state_json(s);
    for (int i = 0; i < c->nhooks[kind] && !err; i++)
        err = run_one(&c->hooks[kind][i],
                      json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return err;
}
