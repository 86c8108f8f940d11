/* `ember snapshot`: save a running ember's VM from the command line, through its control
 * socket (stop, snapshot-save, then cont or quit), as a QMP client would. */
#include "exitcode.h"
#include "log.h"
#include "snapshot_cli.h"

#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES (1 << 20)
#define TIMEOUT_MS     600000 /* a snapshot of a large guest on a slow disk */

struct client {
    int fd;
    char *buf;
    size_t len;
};

static void usage(void)
{
    printf("Usage: ember snapshot --api-sock PATH [--then cont|quit|stop] DIR\n"
           "\n"
           "Save the VM of the ember serving the control socket PATH (ember run --api-sock)\n"
           "into DIR, which must not exist yet: the VM is paused, saved, then resumed (cont,\n"
           "the default), ended (quit) or left paused (stop). Restore it with\n"
           "ember run --restore DIR. Exit code 0, 125 when ember refused or failed (its\n"
           "message is printed), 126 on a bad command line.\n");
}

/* The next message that is not an event (NULL at EOF or time-out, after one error line). */
static json_object *next_reply(struct client *c)
{
    for (;;) {
        char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
        struct pollfd pf = {.fd = c->fd, .events = POLLIN};
        ssize_t n;

        if (nl) {
            json_object *o;

            *nl = '\0';
            o = json_tokener_parse(c->buf);
            c->len -= (size_t)(nl + 1 - c->buf);
            memmove(c->buf, nl + 1, c->len);
            if (o && !json_object_object_get_ex(o, "event", NULL))
                return o;
            json_object_put(o);
            continue;
        }
        if (c->len == LINE_MAX_BYTES) {
            log_err("snapshot: the control socket sent a line longer than %d bytes",
                    LINE_MAX_BYTES);
            return NULL;
        }
        if (poll(&pf, 1, TIMEOUT_MS) <= 0) {
            log_err("snapshot: no answer on the control socket");
            return NULL;
        }
        n = read(c->fd, c->buf + c->len, LINE_MAX_BYTES - c->len);
        if (n <= 0) {
            log_err("snapshot: the control socket closed");
            return NULL;
        }
        c->len += (size_t)n;
    }
}

/* Run one command; 0, or -1 after one error line (ember's own reason for a refusal). */
static int command(struct client *c, const char *name, const char *dir)
{
    json_object *req = json_object_new_object(), *args, *reply, *err, *desc;
    const char *text;
    int r = -1;

    json_object_object_add(req, "execute", json_object_new_string(name));
    if (dir) {
        args = json_object_new_object();
        json_object_object_add(args, "dir", json_object_new_string(dir));
        json_object_object_add(req, "arguments", args);
    }
    text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
    if (write(c->fd, text, strlen(text)) != (ssize_t)strlen(text) || write(c->fd, "\n", 1) != 1) {
        log_err("snapshot: writing to the control socket: %s", strerror(errno));
        json_object_put(req);
        return -1;
    }
    json_object_put(req);
    reply = next_reply(c);
    if (reply && json_object_object_get_ex(reply, "return", NULL))
        r = 0;
    else if (reply && json_object_object_get_ex(reply, "error", &err) &&
             json_object_object_get_ex(err, "desc", &desc))
        log_err("snapshot: %s: %s", name, json_object_get_string(desc));
    else if (reply)
        log_err("snapshot: %s: an answer that is not QMP", name);
    json_object_put(reply);
    return r;
}

static int connect_to(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        log_err("--api-sock %s: the path is longer than %zu bytes", path, sizeof(sa.sun_path) - 1);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        log_err("--api-sock %s: %s (is ember run --api-sock serving it?)", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int ember_snapshot(int argc, char **argv)
{
    static const struct option opts[] = {
            {"api-sock", required_argument, NULL, 's'},
            {"then", required_argument, NULL, 't'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
    };
    const char *sock = NULL, *then = "cont";
    struct client c = {.fd = -1};
    json_object *greeting;
    int opt, code = EXIT_VMM_ERROR;

    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        if (opt == 'h') {
            usage();
            return 0;
        }
        if (opt == 's')
            sock = optarg;
        else if (opt == 't' &&
                 (!strcmp(optarg, "cont") || !strcmp(optarg, "quit") || !strcmp(optarg, "stop")))
            then = optarg;
        else {
            log_err("%s: not valid (see ember snapshot --help)", argv[optind - 1]);
            return EXIT_USAGE;
        }
    }
    if (!sock || optind != argc - 1) {
        log_err("ember snapshot needs --api-sock PATH and one directory (see ember snapshot "
                "--help)");
        return EXIT_USAGE;
    }
    c.buf = malloc(LINE_MAX_BYTES);
    c.fd = c.buf ? connect_to(sock) : -1;
    if (c.fd < 0)
        goto out;
    greeting = next_reply(&c);
    if (!greeting)
        goto out;
    json_object_put(greeting);
    if (command(&c, "qmp_capabilities", NULL) == 0 && command(&c, "stop", NULL) == 0) {
        int saved = command(&c, "snapshot-save", argv[optind]);

        /* Whatever happened, the VM does not stay paused unless asked. */
        if (strcmp(then, "stop") != 0 && command(&c, then, NULL) < 0)
            saved = -1;
        code = saved == 0 ? 0 : EXIT_VMM_ERROR;
    }
out:
    if (c.fd >= 0)
        close(c.fd);
    free(c.buf);
    return code;
}
