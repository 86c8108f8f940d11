/* Unit tests for the QMP protocol layer: greeting, negotiation, framing, error replies,
 * bounds, deferred replies, events, and a real socket with slow and vanishing clients. */
#include "check.h"
#include "eventloop.h"
#include "qmp.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int dispatched;
static struct qmp_server *event_server; /* where "event" broadcasts */
#define EVENT_REQ "{\"execute\":\"event\",\"id\":1}\n"

/* Commands of the test: "echo" returns its arguments, "wait" defers, "fail" errors. */
static enum qmp_result dispatch(void *opaque, struct qmp_request *req)
{
    (void)opaque;
    dispatched++;
    if (strcmp(req->name, "echo") == 0) {
        req->ret = json_object_get(req->args);
        return QMP_OK;
    }
    if (strcmp(req->name, "wait") == 0)
        return qmp_defer(req, "wait");
    if (strcmp(req->name, "fail") == 0)
        return qmp_error(req, NULL, "it failed: %d", 42);
    if (strcmp(req->name, "event") == 0) { /* like stop, cont, system_powerdown */
        qmp_event(event_server, "TEST", NULL);
        return QMP_OK;
    }
    return qmp_error(req, "CommandNotFound", "The command %s has not been found", req->name);
}

static struct qmp_server *server(void)
{
    json_object *v = json_object_new_object();

    json_object_object_add(v, "package", json_object_new_string("test"));
    return qmp_server_new(dispatch, NULL, v);
}

/* Take every complete line the connection has produced, parsed. */
static int take(struct qmp_conn *c, json_object **out, int max)
{
    size_t len;
    const char *p = qmp_conn_output(c, &len);
    size_t used = 0;
    int n = 0;

    while (n < max) {
        const char *nl = memchr(p + used, '\n', len - used);
        char *line;

        if (!nl)
            break;
        CHECK(nl > p + used && nl[-1] == '\r'); /* CRLF framing */
        line = strndup(p + used, (size_t)(nl - p - used));
        out[n++] = json_tokener_parse(line);
        CHECK(out[n - 1] != NULL); /* every line is valid JSON */
        free(line);
        used = (size_t)(nl - p) + 1;
    }
    qmp_conn_consume(c, used);
    return n;
}

static const char *str_at(json_object *o, const char *a, const char *b)
{
    json_object *x = NULL;

    if (!json_object_object_get_ex(o, a, &x))
        return "";
    if (b && !json_object_object_get_ex(x, b, &x))
        return "";
    return json_object_get_string(x);
}

static void put_all(json_object **m, int n)
{
    for (int i = 0; i < n; i++)
        json_object_put(m[i]);
}

static int feed(struct qmp_conn *c, const char *s)
{
    return qmp_conn_feed(c, s, strlen(s));
}

static void test_negotiation(void)
{
    struct qmp_server *s = server();
    struct qmp_conn *c = qmp_conn_new(s, -1);
    json_object *m[8];
    int n;

    n = take(c, m, 8);
    CHECK_EQ(n, 1);
    CHECK(strcmp(str_at(m[0], "QMP", "capabilities"), "[ ]") == 0 ||
          strcmp(str_at(m[0], "QMP", "capabilities"), "[]") == 0);
    put_all(m, n);

    dispatched = 0;
    feed(c, "{\"execute\":\"echo\",\"id\":1}\n");
    n = take(c, m, 8);
    CHECK_EQ(n, 1);
    CHECK(strcmp(str_at(m[0], "error", "class"), "CommandNotFound") == 0);
    CHECK(strcmp(str_at(m[0], "id", NULL), "1") == 0);
    CHECK_EQ(dispatched, 0); /* nothing runs before negotiation */
    put_all(m, n);

    feed(c, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]}}\n"
            "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"x\":1}}\n"
            "{\"execute\":\"qmp_capabilities\"}\n"
            "{\"execute\":\"qmp_capabilities\"}\n");
    n = take(c, m, 8);
    CHECK_EQ(n, 4);
    CHECK(strcmp(str_at(m[0], "error", "class"), "GenericError") == 0);
    CHECK(strcmp(str_at(m[1], "error", "class"), "GenericError") == 0);
    CHECK(json_object_object_get_ex(m[2], "return", NULL));
    CHECK(strcmp(str_at(m[3], "error", "class"), "CommandNotFound") == 0);
    put_all(m, n);

    /* Events go to negotiated clients only. */
    {
        struct qmp_conn *fresh = qmp_conn_new(s, -1);

        take(fresh, m, 8);
        put_all(m, 1);
        qmp_event(s, "TEST", json_object_new_object());
        CHECK_EQ(take(fresh, m, 8), 0);
        n = take(c, m, 8);
        CHECK_EQ(n, 1);
        CHECK(strcmp(str_at(m[0], "event", NULL), "TEST") == 0);
        CHECK(json_object_object_get_ex(m[0], "timestamp", NULL));
        put_all(m, n);
        qmp_conn_free(fresh);
    }
    qmp_conn_free(c);
    qmp_server_free(s, 0);
}

static void test_errors_and_framing(void)
{
    struct qmp_server *s = server();
    struct qmp_conn *c = qmp_conn_new(s, -1);
    json_object *m[32];
    char *big;
    int n;

    take(c, m, 1);
    put_all(m, 1);
    feed(c, "{\"execute\":\"qmp_capabilities\"}");
    take(c, m, 1);
    put_all(m, 1);

    feed(c, "{bad\n"                                        /* syntax */
            "[1]\n"                                         /* not an object */
            "{\"arguments\":{}}\n"                          /* no execute */
            "{\"execute\":3}\n"                             /* execute not a string */
            "{\"execute\":\"echo\",\"arguments\":[]}\n"     /* arguments not an object */
            "{\"execute\":\"echo\",\"bogus\":1,\"id\":9}\n" /* unexpected member, id kept */
            "{\"execute\":\"fail\"}\n"
            "{\"execute\":\"nope\"}\n"
            "{\"execute\":\"echo\",\"arguments\":{\"a\":[1,2]},\"id\":\"x\"}\n");
    n = take(c, m, 32);
    CHECK_EQ(n, 9);
    for (int i = 0; i < 6; i++)
        CHECK(strcmp(str_at(m[i], "error", "class"), "GenericError") == 0);
    CHECK(!json_object_object_get_ex(m[0], "id", NULL)); /* no id for bad JSON */
    CHECK(strcmp(str_at(m[5], "id", NULL), "9") == 0);
    CHECK(strcmp(str_at(m[6], "error", "desc"), "it failed: 42") == 0);
    CHECK(strcmp(str_at(m[7], "error", "class"), "CommandNotFound") == 0);
    CHECK(strcmp(str_at(m[8], "id", NULL), "x") == 0);
    CHECK(strstr(str_at(m[8], "return", NULL), "\"a\"") != NULL);
    put_all(m, n);

    /* A request split byte by byte, and two in one write without a separator. */
    {
        const char *req = "{\"execute\":\"echo\",\"id\":5}{\"execute\":\"echo\",\"id\":6}";

        for (size_t i = 0; req[i]; i++)
            qmp_conn_feed(c, req + i, 1);
        n = take(c, m, 32);
        CHECK_EQ(n, 2);
        CHECK(strcmp(str_at(m[1], "id", NULL), "6") == 0);
        put_all(m, n);
    }

    /* Too long: one error, the rest of the line is dropped, the next line works. */
    big = malloc(QMP_MAX_REQUEST * 3);
    memset(big, 'a', QMP_MAX_REQUEST * 3);
    memcpy(big, "{\"execute\":\"", 12);
    qmp_conn_feed(c, big, QMP_MAX_REQUEST * 3);
    feed(c, "\"}\n{\"execute\":\"echo\",\"id\":7}\n");
    n = take(c, m, 32);
    CHECK_EQ(n, 2);
    CHECK(strstr(str_at(m[0], "error", "desc"), "longer than") != NULL);
    CHECK(strcmp(str_at(m[1], "id", NULL), "7") == 0);
    put_all(m, n);

    /* Too deep, NUL bytes, invalid UTF-8: errors, and the connection goes on. */
    memset(big, '[', 1000);
    big[1000] = '\n';
    qmp_conn_feed(c, big, 1001);
    qmp_conn_feed(c, "{\"exe\0cute\"}\n", 13);
    feed(c, "{\"execute\":\"\xff\xfe\"}\n");
    feed(c, "{\"execute\":\"echo\",\"id\":8}\n");
    n = take(c, m, 32);
    CHECK_EQ(n, 4);
    for (int i = 0; i < 3; i++)
        CHECK(strcmp(str_at(m[i], "error", "class"), "GenericError") == 0);
    CHECK(strcmp(str_at(m[3], "id", NULL), "8") == 0);
    put_all(m, n);
    free(big);
    qmp_conn_free(c);
    qmp_server_free(s, 0);
}

static void test_deferred_and_output_bound(void)
{
    struct qmp_server *s = server();
    struct qmp_conn *c = qmp_conn_new(s, -1), *other = qmp_conn_new(s, -1);
    json_object *m[8];
    int n;

    feed(c, "{\"execute\":\"qmp_capabilities\"}\n");
    feed(other, "{\"execute\":\"qmp_capabilities\"}\n");
    take(c, m, 2);
    put_all(m, 2);
    take(other, m, 2);
    put_all(m, 2);

    /* A deferred reply holds back that client's next request, not other clients. */
    dispatched = 0;
    feed(c, "{\"execute\":\"wait\",\"id\":1}\n{\"execute\":\"echo\",\"id\":2}\n");
    CHECK_EQ(take(c, m, 8), 0);
    CHECK_EQ(dispatched, 1);
    CHECK_EQ(qmp_deferred(s, "wait"), 1);
    feed(other, "{\"execute\":\"echo\",\"id\":3}\n");
    n = take(other, m, 8);
    CHECK_EQ(n, 1);
    put_all(m, n);
    CHECK_EQ(qmp_complete(s, "wait", json_object_new_int(11), NULL), 1);
    n = take(c, m, 8);
    CHECK_EQ(n, 2);
    CHECK(strcmp(str_at(m[0], "return", NULL), "11") == 0);
    CHECK(strcmp(str_at(m[0], "id", NULL), "1") == 0);
    CHECK(strcmp(str_at(m[1], "id", NULL), "2") == 0);
    put_all(m, n);
    CHECK_EQ(qmp_deferred(s, "wait"), 0);

    /* A client that never reads is dropped once its output passes the bound. */
    {
        size_t left;
        int r = 0;

        for (int i = 0; i < 100000 && r == 0; i++)
            r = feed(other, "{\"execute\":\"echo\",\"arguments\":{\"pad\":\"xxxxxxxxxxxxxxxxxxxx"
                            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}\n");
        CHECK_EQ(r, -1);
        qmp_conn_output(other, &left);
        CHECK(left <= QMP_MAX_OUTPUT);
    }
    qmp_server_free(s, 0);
}

/* A real socket in a loop: mode 0600, stale path replaced, a client that vanishes. */
static void test_socket(void)
{
    char dir[] = "/tmp/ember-qmp-XXXXXX", path[64], buf[4096] = "";
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct qmp_server *s = server();
    struct loop loop;
    struct stat st;
    int fd, n = 0;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/api.sock", dir);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    /* A stale socket: bound, nobody listening. */
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    CHECK_EQ(loop_init(&loop), 0);
    CHECK_EQ(qmp_server_listen(s, path, &loop), 0);
    CHECK_EQ(stat(path, &st), 0);
    CHECK_EQ(st.st_mode & 0777, 0600);

    /* A second server on the same live path is refused. */
    {
        struct qmp_server *s2 = server();

        CHECK_EQ(qmp_server_listen(s2, path, &loop), -EADDRINUSE);
        qmp_server_free(s2, 0);
    }

    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    CHECK(write(fd, "{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"echo\",\"id\":4}\n", 58) ==
          58);
    for (int i = 0; i < 20 && !strstr(buf, "\"id\":4"); i++) {
        ssize_t r;

        loop_run_once(&loop, 100);
        r = recv(fd, buf + n, sizeof(buf) - 1 - (size_t)n, MSG_DONTWAIT);
        if (r > 0)
            n += (int)r;
        buf[n] = '\0';
    }
    CHECK(strstr(buf, "{\"QMP\"") == buf);
    CHECK(strstr(buf, "\"id\":4") != NULL);
    close(fd); /* vanishes */
    for (int i = 0; i < 5; i++)
        loop_run_once(&loop, 10);
    CHECK_EQ(qmp_server_clients(s), 0);
    qmp_server_free(s, 0);
    CHECK(stat(path, &st) < 0); /* removed at the end */
    loop_close(&loop);
    rmdir(dir);
}

/* A client connected to path, negotiated (greeting and reply read). */
static int client(const char *path, struct loop *loop)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char buf[4096];
    size_t got = 0;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    CHECK_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    CHECK(write(fd, "{\"execute\":\"qmp_capabilities\"}\n", 31) == 31);
    for (int i = 0; i < 50 && !memmem(buf, got, "return", 6); i++) {
        ssize_t r;

        loop_run_once(loop, 20);
        r = recv(fd, buf + got, sizeof(buf) - got, MSG_DONTWAIT);
        if (r > 0)
            got += (size_t)r;
    }
    CHECK(memmem(buf, got, "return", 6) != NULL);
    return fd;
}

/* One epoll batch holds a command that broadcasts an event (from client a) and the hang-up
 * of client b: the broadcast finds b gone and drops it while b's own event is still in the
 * batch. b must be freed only after the batch (ASan reports the use after free otherwise),
 * and nothing may go wrong in either order. */
static void test_event_and_hangup_in_one_batch(void)
{
    char dir[] = "/tmp/ember-qmp-XXXXXX", path[64];
    struct qmp_server *s = server();
    struct loop loop;

    event_server = s;
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/api.sock", dir);
    CHECK_EQ(loop_init(&loop), 0);
    CHECK_EQ(qmp_server_listen(s, path, &loop), 0);
    for (int round = 0; round < 20; round++) {
        int a = client(path, &loop), b = client(path, &loop);
        char buf[4096];
        ssize_t n;

        CHECK_EQ(qmp_server_clients(s), 2);
        for (int i = 0; i < 3; i++) /* epoll's ready list holds nothing from before */
            loop_run_once(&loop, 0);
        if (round % 2) { /* a's request first in the batch, then b's hang-up */
            CHECK(write(a, EVENT_REQ, sizeof(EVENT_REQ) - 1) == sizeof(EVENT_REQ) - 1);
            close(b);
        } else {
            close(b);
            CHECK(write(a, EVENT_REQ, sizeof(EVENT_REQ) - 1) == sizeof(EVENT_REQ) - 1);
        }
        usleep(1000);
        CHECK_EQ(loop_run_once(&loop, 100), 0);
        for (int i = 0; i < 5; i++)
            loop_run_once(&loop, 10);
        CHECK_EQ(qmp_server_clients(s), 1);
        n = recv(a, buf, sizeof(buf) - 1, MSG_DONTWAIT);
        CHECK(n > 0 && memmem(buf, (size_t)n, "\"TEST\"", 6) &&
              memmem(buf, (size_t)n, "\"id\"", 4));
        close(a);
        for (int i = 0; i < 5 && qmp_server_clients(s); i++)
            loop_run_once(&loop, 10);
        CHECK_EQ(qmp_server_clients(s), 0);
    }
    qmp_server_free(s, 0);
    loop_close(&loop);
    rmdir(dir);
}

int main(void)
{
    test_negotiation();
    test_errors_and_framing();
    test_deferred_and_output_bound();
    test_socket();
    test_event_and_hangup_in_one_batch();
    return check_done("qmp");
}
