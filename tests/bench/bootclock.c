/* bootclock: one boot of a VMM, timed where only arm64 programs run (the aarch64 bench's arm64
 * test host: no Python there). Runs CMD with its stdout on a pipe and prints one JSON line:
 *   {"ready_s": process start -> "EMBER-INIT-READY" on the guest's console,
 *    "uptime_s": the first number of the guest's next "<a> <b>" line (its /proc/uptime),
 *    "exit": CMD's exit status}
 * null for what never came. CMD is killed after TIMEOUT seconds.
 *
 *   bootclock TIMEOUT CMD [ARGS...] */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    static char out[1 << 20];
    double t0, deadline, ready = -1, uptime = -1;
    size_t have = 0;
    int p[2], st = 0;
    pid_t pid;

    if (argc < 3 || atoi(argv[1]) <= 0) {
        fprintf(stderr, "usage: bootclock TIMEOUT CMD [ARGS...]\n");
        return 2;
    }
    if (pipe(p) < 0)
        return 1;
    t0 = now();
    deadline = t0 + atoi(argv[1]);
    pid = fork();
    if (pid == 0) {
        dup2(p[1], STDOUT_FILENO);
        close(p[0]);
        close(p[1]);
        execvp(argv[2], argv + 2);
        _exit(127);
    }
    close(p[1]);
    while (pid > 0) {
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        double left = deadline - now();
        ssize_t n;
        char *mark;

        if (left <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        if (poll(&pf, 1, (int)(left * 1000) + 1) <= 0)
            continue;
        n = read(p[0], out + have, sizeof(out) - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
        out[have] = '\0';
        mark = strstr(out, "EMBER-INIT-READY");
        if (ready < 0 && mark)
            ready = now() - t0;
        if (mark && uptime < 0) {
            /* The command after the marker prints /proc/uptime: "12.34 5.67". */
            for (char *l = strchr(mark, '\n'); l && uptime < 0; l = strchr(l + 1, '\n')) {
                double a, b;
                char end;

                if (sscanf(l + 1, "%lf %lf%c", &a, &b, &end) == 3 && (end == '\n' || end == '\r'))
                    uptime = a;
            }
        }
        if (have == sizeof(out) - 1)
            have = 0; /* a runaway console: keep reading, forget what came */
    }
    waitpid(pid, &st, 0);
    printf("{\"ready_s\": ");
    ready < 0 ? printf("null") : printf("%.4f", ready);
    printf(", \"uptime_s\": ");
    uptime < 0 ? printf("null") : printf("%.2f", uptime);
    printf(", \"exit\": %d}\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    return 0;
}
