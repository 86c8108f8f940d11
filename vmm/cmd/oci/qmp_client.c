/* A small QMP client for ember-oci's commands: greeting, capabilities, one command and its
 * answer (events skipped), within a time limit. The socket is <state>/vm/ctl.sock, reached
 * through the state directory's descriptor so long state paths fit a unix socket address. */
#include "oci.h"

#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    json_tokener *tok;
    char buf[4096];
    size_t len, off;
    struct timespec deadline;
};

static int ms_left(const struct timespec *deadline)
{
    struct timespec now;
    long ms;

    clock_gettime(CLOCK_MONOTONIC, &now);
    ms = (deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
    return ms < 0 ? 0 : (int)ms;
}

/* The next JSON object from the socket, or NULL (error text in err). */
static json_object *next_object(struct conn *c, char *err, size_t errlen)
{
    for (;;) {
        while (c->off < c->len) {
            json_object *o;
            size_t used;

            /* skip the CR LF between objects */
            while (c->off < c->len && strchr(" \t\r\n", c->buf[c->off]))
                c->off++;
            if (c->off == c->len)
                break;
            o = json_tokener_parse_ex(c->tok, c->buf + c->off, (int)(c->len - c->off));
            used = json_tokener_get_parse_end(c->tok);
            c->off += used;
            if (o)
                return o;
            if (json_tokener_get_error(c->tok) != json_tokener_continue) {
                snprintf(err, errlen, "the VMM's control socket sent malformed JSON");
                return NULL;
            }
        }
        struct pollfd pf = {.fd = c->fd, .events = POLLIN};
        int r = poll(&pf, 1, ms_left(&c->deadline));
        ssize_t n;

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            snprintf(err, errlen, "the VMM did not answer in time");
            return NULL;
        }
        n = read(c->fd, c->buf, sizeof(c->buf));
        if (n <= 0) {
            snprintf(err, errlen, "the VMM closed its control socket (it is exiting)");
            return NULL;
        }
        c->len = (size_t)n;
        c->off = 0;
    }
}

/* Send one command and wait for its answer. */
static int call(struct conn *c, const char *cmd, json_object *args, json_object **ret, char *err,
                size_t errlen)
{
    json_object *req = json_object_new_object(), *o, *v;
    const char *text;
    size_t len, done = 0;

    json_object_object_add(req, "execute", json_object_new_string(cmd));
    if (args)
        json_object_object_add(req, "arguments", args);
    text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
    len = strlen(text);
    while (done < len) {
        ssize_t n = write(c->fd, text + done, len - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errlen, "cannot write to the VMM's control socket: %s", strerror(errno));
            json_object_put(req);
            return -1;
        }
        done += (size_t)n;
    }
    json_object_put(req);
    while ((o = next_object(c, err, errlen))) {
        if (json_object_object_get_ex(o, "return", &v)) {
            if (ret)
                *ret = json_object_get(v);
            json_object_put(o);
            return 0;
        }
        if (json_object_object_get_ex(o, "error", &v)) {
            json_object *desc;

            snprintf(err, errlen, "%s",
                     json_object_object_get_ex(v, "desc", &desc) ? json_object_get_string(desc)
                                                                 : "error");
            json_object_put(o);
            return -1;
        }
        json_object_put(o); /* an event */
    }
    return -1;
}

int oci_qmp(const struct oci_state *s, const char *cmd, json_object *args, json_object **ret,
            char *err, size_t errlen, int timeout_ms)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    struct conn c = {.fd = -1};
    json_object *greeting;
    int r = -1;

    if (ret)
        *ret = NULL;
    snprintf(addr.sun_path, sizeof(addr.sun_path), "/proc/self/fd/%d/vm/ctl.sock", s->dirfd);
    clock_gettime(CLOCK_MONOTONIC, &c.deadline);
    c.deadline.tv_sec += timeout_ms / 1000;
    c.deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (c.deadline.tv_nsec >= 1000000000) {
        c.deadline.tv_sec++;
        c.deadline.tv_nsec -= 1000000000;
    }
    c.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c.fd < 0 || connect(c.fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        snprintf(err, errlen, "cannot reach the VMM's control socket: %s", strerror(errno));
        goto out;
    }
    c.tok = json_tokener_new_ex(32);
    greeting = c.tok ? next_object(&c, err, errlen) : NULL;
    if (!greeting)
        goto out;
    json_object_put(greeting);
    if (call(&c, "qmp_capabilities", NULL, NULL, err, errlen))
        goto out;
    r = call(&c, cmd, args, ret, err, errlen);
    args = NULL; /* taken by call */
out:
    json_object_put(args);
    if (c.tok)
        json_tokener_free(c.tok);
    if (c.fd >= 0)
        close(c.fd);
    return r;
}
