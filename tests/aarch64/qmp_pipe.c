/* qmp_pipe: a scripted control-socket client for the aarch64 test host, where only arm64
 * programs run (no Python, no socat). Reads a script on stdin, one line each:
 *   {JSON}        send it, then wait for its reply (a line without "event")
 *   wait NAME     wait for the event NAME (it may have come already, before a reply)
 * and copies every line ember sends to stdout. Exit 0 when the script ran to its end, 1 on a
 * timeout (TIMEOUT seconds per step, default 30) or a closed socket, 2 on bad usage.
 *
 *   qmp_pipe SOCKET [TIMEOUT] <script >transcript */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static char buf[1 << 16];
static size_t have;
static char events[1 << 16]; /* event lines not waited for yet */
static size_t nr_events;
static int timeout_ms = 30000;

/* One line from the socket into line (NUL-terminated, without \r\n); 0, or -1 on a timeout,
 * end of file or error. */
static int read_line(int fd, char *line, size_t cap)
{
    for (;;) {
        char *nl = memchr(buf, '\n', have);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (nl) {
            size_t len = (size_t)(nl - buf);

            if (len >= cap)
                len = cap - 1;
            memcpy(line, buf, len);
            if (len && line[len - 1] == '\r')
                len--;
            line[len] = '\0';
            have -= (size_t)(nl + 1 - buf);
            memmove(buf, nl + 1, have);
            printf("%s\n", line);
            fflush(stdout);
            if (strstr(line, "\"event\":") && nr_events + len + 2 < sizeof(events)) {
                memcpy(events + nr_events, line, len);
                nr_events += len;
                events[nr_events++] = '\n';
                events[nr_events] = '\0';
            }
            return 0;
        }
        if (have == sizeof(buf) || poll(&p, 1, timeout_ms) <= 0)
            return -1;
        n = read(fd, buf + have, sizeof(buf) - have);
        if (n <= 0)
            return -1;
        have += (size_t)n;
    }
}

/* Connect, retrying while ember starts (the socket does not exist yet). */
static int connect_to(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct timespec pause = {0, 50 * 1000 * 1000};

    if (strlen(path) >= sizeof(sa.sun_path))
        return -1;
    strcpy(sa.sun_path, path);
    for (int i = 0; i < timeout_ms / 50; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
            return -1;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            return fd;
        close(fd);
        nanosleep(&pause, NULL);
    }
    return -1;
}

int main(int argc, char **argv)
{
    char cmd[4096], line[sizeof(buf)];
    int fd;

    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: qmp_pipe SOCKET [TIMEOUT] <script\n");
        return 2;
    }
    if (argc == 3)
        timeout_ms = atoi(argv[2]) * 1000;
    fd = connect_to(argv[1]);
    if (fd < 0) {
        fprintf(stderr, "qmp_pipe: cannot connect to %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    if (read_line(fd, line, sizeof(line))) /* the greeting */
        goto lost;
    while (fgets(cmd, sizeof(cmd), stdin)) {
        size_t len = strcspn(cmd, "\r\n");

        cmd[len] = '\0';
        if (len == 0)
            continue;
        if (strncmp(cmd, "wait ", 5) == 0) {
            char want[sizeof(cmd) + 16];

            char *at;

            snprintf(want, sizeof(want), "\"event\":\"%s\"", cmd + 5);
            while (!(at = strstr(events, want)))
                if (read_line(fd, line, sizeof(line)))
                    goto lost;
            /* Forget the events up to this one (every one ends with a newline). */
            at = strchr(at, '\n');
            if (!at)
                goto lost;
            nr_events -= (size_t)(at + 1 - events);
            memmove(events, at + 1, nr_events + 1);
            continue;
        }
        cmd[len] = '\n';
        if (write(fd, cmd, len + 1) != (ssize_t)(len + 1))
            goto lost;
        do {
            if (read_line(fd, line, sizeof(line)))
                goto lost;
        } while (strstr(line, "\"event\":"));
    }
    close(fd);
    return 0;
lost:
    fprintf(stderr, "qmp_pipe: no answer from %s within %d s, or it closed\n", argv[1],
            timeout_ms / 1000);
    return 1;
}
