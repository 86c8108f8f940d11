/* QMP wire protocol: the Unix socket, per-client framing and negotiation, bounded buffers,
 * replies, deferred replies and events. Everything a client sends is untrusted. */
#include "qmp.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define NAME_SHOWN       64 /* bytes of a client-supplied name quoted back in an error */
#define ACCEPT_QUEUE     64 /* listen() backlog */
#define QMP_ACCEPT_BATCH 16 /* clients accepted per wakeup, before other work gets a turn */

struct qmp_conn {
    struct qmp_server *srv;
    struct qmp_conn *next;
    struct loop_handler h;
    uint32_t watching; /* epoll events asked for */
    int in_loop;
    int negotiated;
    int skipping; /* after a syntax error, input is dropped up to the next newline */
    int eof;      /* the client shut down its sending side */
    int dead;     /* to be closed: vanished, broke the socket, or did not read */
    size_t msg_bytes;
    json_tokener *tok;
    char in[QMP_IN_BUF];
    size_t in_len;
    char *out;
    size_t out_len, out_cap;
    const char *defer_tag; /* a reply is owed; requests after it wait */
    json_object *defer_id;
    int defer_has_id;
};

struct pending_event {
    const char *name;
    json_object *data;
    struct timeval ts;
};

struct qmp_server {
    qmp_dispatch_fn dispatch;
    void *opaque;
    json_object *version;
    struct loop *loop;
    int listen_fd;
    char *path;
    struct loop_handler h_listen;
    int event_fd;
    struct loop_handler h_event;
    pthread_mutex_t lock; /* pending events */
    struct pending_event pending[QMP_MAX_PENDING];
    int nr_pending;
    struct qmp_conn *conns;
    int nr_conns;
    int depth; /* inside one of our callbacks: dead clients leave the list on the way out */
    int refused_logged;
};

static const char *const greeting_caps = "[]";

/* ---- output ---- */

/* Queue one message plus CRLF. A client past QMP_MAX_OUTPUT unsent bytes is dropped. */
static void conn_put(struct qmp_conn *c, const char *msg)
{
    size_t n = strlen(msg), need;

    if (c->dead)
        return;
    need = c->out_len + n + 2;
    if (need > QMP_MAX_OUTPUT) {
        log_warn("control socket: dropping a client that left %zu bytes unread", c->out_len);
        c->dead = 1;
        return;
    }
    if (need > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        char *p;

        while (cap < need)
            cap *= 2;
        p = realloc(c->out, cap);
        if (!p) {
            log_warn("control socket: out of memory for a client's output; dropping it");
            c->dead = 1;
            return;
        }
        c->out = p;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, msg, n);
    memcpy(c->out + c->out_len + n, "\r\n", 2);
    c->out_len += n + 2;
}

static void conn_put_obj(struct qmp_conn *c, json_object *o)
{
    conn_put(c, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                          JSON_C_TO_STRING_NOSLASHESCAPE));
}

static void put_error(struct qmp_conn *c, json_object *id, const char *cls, const char *desc)
{
    json_object *o = json_object_new_object(), *e = json_object_new_object();

    json_object_object_add(e, "class", json_object_new_string(cls));
    json_object_object_add(e, "desc", json_object_new_string(desc));
    json_object_object_add(o, "error", e);
    if (id)
        json_object_object_add(o, "id", json_object_get(id));
    conn_put_obj(c, o);
    json_object_put(o);
}

static void put_return(struct qmp_conn *c, json_object *id, json_object *ret)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "return", ret ? ret : json_object_new_object());
    if (id)
        json_object_object_add(o, "id", json_object_get(id));
    conn_put_obj(c, o);
    json_object_put(o);
}

static void put_greeting(struct qmp_conn *c)
{
    json_object *o = json_object_new_object(), *q = json_object_new_object();

    json_object_object_add(q, "version", json_object_get(c->srv->version));
    json_object_object_add(q, "capabilities", json_tokener_parse(greeting_caps));
    json_object_object_add(o, "QMP", q);
    conn_put_obj(c, o);
    json_object_put(o);
}

/* Send without blocking; on a hard error the client is dead. */
static void conn_send(struct qmp_conn *c)
{
    size_t off = 0;

    if (c->h.fd < 0)
        return;
    while (off < c->out_len && !c->dead) {
        ssize_t n = send(c->h.fd, c->out + off, c->out_len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && errno == EINTR)
            continue;
        else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        else
            c->dead = 1; /* EPIPE, ECONNRESET: the client is gone */
    }
    qmp_conn_consume(c, off);
}

const char *qmp_conn_output(struct qmp_conn *c, size_t *len)
{
    *len = c->out_len;
    return c->out ? c->out : "";
}

void qmp_conn_consume(struct qmp_conn *c, size_t n)
{
    if (n > c->out_len)
        n = c->out_len;
    memmove(c->out, c->out + n, c->out_len - n);
    c->out_len -= n;
}

/* ---- requests ---- */

enum qmp_result qmp_error(struct qmp_request *req, const char *err_class, const char *fmt, ...)
{
    va_list ap;

    req->err_class = err_class ? err_class : "GenericError";
    va_start(ap, fmt);
    vsnprintf(req->desc, sizeof(req->desc), fmt, ap);
    va_end(ap);
    return QMP_ERR;
}

enum qmp_result qmp_defer(struct qmp_request *req, const char *tag)
{
    struct qmp_conn *c = req->conn;

    c->defer_tag = tag;
    c->defer_has_id = req->id != NULL;
    c->defer_id = req->id ? json_object_get(req->id) : NULL;
    return QMP_DEFERRED;
}

/* qmp_capabilities: the only command before negotiation, and not after it. */
static void negotiate(struct qmp_conn *c, json_object *args, json_object *id)
{
    json_object *enable = NULL;

    if (c->negotiated) {
        put_error(c, id, "CommandNotFound",
                  "Capabilities negotiation is already complete, command ignored");
        return;
    }
    json_object_object_foreach(args, key, val)
    {
        (void)val;
        if (strcmp(key, "enable") != 0) {
            char desc[QMP_DESC_MAX];

            snprintf(desc, sizeof(desc), "Parameter '%.*s' is unexpected", NAME_SHOWN, key);
            put_error(c, id, "GenericError", desc);
            return;
        }
    }
    if (json_object_object_get_ex(args, "enable", &enable)) {
        if (!json_object_is_type(enable, json_type_array)) {
            put_error(c, id, "GenericError",
                      "Invalid parameter type for 'enable', expected: array");
            return;
        }
        if (json_object_array_length(enable) > 0) {
            char desc[QMP_DESC_MAX];
            json_object *cap = json_object_array_get_idx(enable, 0);

            snprintf(desc, sizeof(desc), "Capability '%.*s' not available", NAME_SHOWN,
                     json_object_is_type(cap, json_type_string) ? json_object_get_string(cap)
                                                                : "?");
            put_error(c, id, "GenericError", desc);
            return;
        }
    }
    c->negotiated = 1;
    put_return(c, id, NULL);
}

/* One complete JSON value from the client. */
static void handle_message(struct qmp_conn *c, json_object *msg)
{
    struct qmp_request req = {.conn = c};
    json_object *id = NULL, *exec = NULL, *args = NULL, *empty = NULL;
    char desc[QMP_DESC_MAX];
    enum qmp_result r;

    if (!json_object_is_type(msg, json_type_object)) {
        put_error(c, NULL, "GenericError", "QMP input must be a JSON object");
        return;
    }
    json_object_object_get_ex(msg, "id", &id);
    json_object_object_foreach(msg, key, val)
    {
        if (strcmp(key, "execute") == 0) {
            exec = val;
        } else if (strcmp(key, "arguments") == 0) {
            args = val;
        } else if (strcmp(key, "id") != 0) {
            snprintf(desc, sizeof(desc), "QMP input member '%.*s' is unexpected", NAME_SHOWN, key);
            put_error(c, id, "GenericError", desc);
            return;
        }
    }
    if (!exec) {
        put_error(c, id, "GenericError", "QMP input lacks member 'execute'");
        return;
    }
    if (!json_object_is_type(exec, json_type_string) ||
        (size_t)json_object_get_string_len(exec) != strlen(json_object_get_string(exec))) {
        put_error(c, id, "GenericError", "QMP input member 'execute' must be a string");
        return;
    }
    if (args && !json_object_is_type(args, json_type_object)) {
        put_error(c, id, "GenericError", "QMP input member 'arguments' must be an object");
        return;
    }
    if (!args)
        args = empty = json_object_new_object();
    req.name = json_object_get_string(exec);
    req.args = args;
    req.id = id;
    if (strcmp(req.name, "qmp_capabilities") == 0) {
        negotiate(c, args, id);
        goto out;
    }
    if (!c->negotiated) {
        snprintf(desc, sizeof(desc),
                 "Expecting capabilities negotiation with 'qmp_capabilities' before command "
                 "'%.*s'",
                 NAME_SHOWN, req.name);
        put_error(c, id, "CommandNotFound", desc);
        goto out;
    }
    r = c->srv->dispatch(c->srv->opaque, &req);
    if (r == QMP_OK)
        put_return(c, id, req.ret);
    else if (r == QMP_ERR)
        put_error(c, id, req.err_class ? req.err_class : "GenericError", req.desc);
    else if (req.ret)
        json_object_put(req.ret);
out:
    if (empty)
        json_object_put(empty);
}

static void syntax_error(struct qmp_conn *c, const char *what)
{
    char desc[QMP_DESC_MAX];

    snprintf(desc, sizeof(desc), "JSON parse error, %s", what);
    put_error(c, NULL, "GenericError", desc);
    json_tokener_reset(c->tok);
    c->msg_bytes = 0;
    c->skipping = 1;
}

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* Parse and handle what the input buffer holds, until it is empty or a reply is owed. */
static void conn_process(struct qmp_conn *c)
{
    size_t off = 0;

    while (off < c->in_len && !c->defer_tag && !c->dead) {
        const char *p = c->in + off, *nul;
        size_t avail = c->in_len - off, feed, used;
        enum json_tokener_error err;
        json_object *obj;

        if (c->skipping) {
            const char *nl = memchr(p, '\n', avail);

            off += nl ? (size_t)(nl - p) + 1 : avail;
            c->skipping = !nl;
            continue;
        }
        if (c->msg_bytes == 0 && is_space(*p)) {
            off++;
            continue;
        }
        if (*p == '\0') {
            syntax_error(c, "NUL byte in the input");
            continue;
        }
        feed = avail;
        nul = memchr(p, '\0', feed); /* json-c would stop there: end the chunk before it */
        if (nul)
            feed = (size_t)(nul - p);
        if (feed > QMP_MAX_REQUEST - c->msg_bytes)
            feed = QMP_MAX_REQUEST - c->msg_bytes;
        obj = json_tokener_parse_ex(c->tok, p, (int)feed);
        err = json_tokener_get_error(c->tok);
        if (err == json_tokener_continue) {
            off += feed;
            c->msg_bytes += feed;
            if (c->msg_bytes >= QMP_MAX_REQUEST) {
                char what[96];

                snprintf(what, sizeof(what), "request longer than %d bytes", QMP_MAX_REQUEST);
                syntax_error(c, what);
            }
            continue;
        }
        used = json_tokener_get_parse_end(c->tok);
        if (used > feed)
            used = feed;
        if (err != json_tokener_success) {
            off += used;
            syntax_error(c, json_tokener_error_desc(err));
            continue;
        }
        off += used;
        c->msg_bytes = 0;
        json_tokener_reset(c->tok);
        handle_message(c, obj);
        json_object_put(obj);
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
}

int qmp_conn_feed(struct qmp_conn *c, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0 && !c->dead) {
        size_t n = sizeof(c->in) - c->in_len;

        if (n == 0)
            break; /* a reply is owed and the read-ahead is full: the rest waits */
        if (n > len)
            n = len;
        memcpy(c->in + c->in_len, p, n);
        c->in_len += n;
        p += n;
        len -= n;
        conn_process(c);
    }
    return c->dead ? -1 : 0;
}

/* ---- connections ---- */

struct qmp_conn *qmp_conn_new(struct qmp_server *s, int fd)
{
    struct qmp_conn *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->tok = json_tokener_new_ex(QMP_MAX_DEPTH);
    if (!c->tok) {
        free(c);
        return NULL;
    }
    json_tokener_set_flags(c->tok, JSON_TOKENER_VALIDATE_UTF8); /* replies stay valid JSON */
    c->srv = s;
    c->h.fd = fd;
    c->next = s->conns;
    s->conns = c;
    s->nr_conns++;
    put_greeting(c);
    return c;
}

/* The memory of a connection that left the server (the loop calls it once no event of the
 * batch in progress can name the connection any more). */
static void conn_release(struct loop_handler *h)
{
    struct qmp_conn *c = container_of(h, struct qmp_conn, h);

    json_tokener_free(c->tok);
    free(c->out);
    free(c);
}

void qmp_conn_free(struct qmp_conn *c)
{
    struct qmp_server *s = c->srv;
    int fd = c->h.fd;

    for (struct qmp_conn **pp = &s->conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            s->nr_conns--;
            break;
        }
    }
    if (c->defer_id)
        json_object_put(c->defer_id);
    c->defer_id = NULL;
    if (c->in_loop) /* its event may still wait in the loop's batch */
        loop_retire(s->loop, &c->h, conn_release);
    else
        conn_release(&c->h);
    if (fd >= 0)
        close(fd);
}

/* Ask epoll for what the client can make progress on now. */
static void conn_watch(struct qmp_conn *c)
{
    uint32_t want = 0;

    if (!c->in_loop || c->dead)
        return;
    if (!c->eof && c->in_len < sizeof(c->in) && c->out_len < QMP_OUT_PAUSE)
        want |= EPOLLIN;
    if (c->out_len)
        want |= EPOLLOUT;
    if (want != c->watching && loop_mod(c->srv->loop, &c->h, want) == 0)
        c->watching = want;
}

/* Drop dead clients (the loop frees each once its batch no longer names it). One that only shut
 * down its sending side (socat at the end of its input) still gets replies and events until it
 * closes: epoll then reports a hang-up. */
static void reap(struct qmp_server *s)
{
    struct qmp_conn *c = s->conns, *next;

    if (s->depth > 0)
        return;
    for (; c; c = next) {
        next = c->next;
        if (c->dead)
            qmp_conn_free(c);
    }
}

/* After new output: send what the socket takes, then re-arm. */
static void conn_kick(struct qmp_conn *c)
{
    if (c->out_len)
        conn_send(c);
    conn_watch(c);
}

static void conn_read(struct qmp_conn *c, int drain)
{
    do {
        size_t room = sizeof(c->in) - c->in_len;
        ssize_t n;

        if (room == 0 || c->out_len >= QMP_OUT_PAUSE)
            break;
        n = recv(c->h.fd, c->in + c->in_len, room, MSG_DONTWAIT);
        if (n > 0) {
            c->in_len += (size_t)n;
            conn_process(c);
            continue;
        }
        if (n == 0)
            c->eof = 1;
        else if (errno == EINTR)
            continue;
        else if (errno != EAGAIN && errno != EWOULDBLOCK)
            c->dead = 1;
        break;
    } while (drain && !c->dead);
}

static void on_client(struct loop_handler *h, uint32_t events)
{
    struct qmp_conn *c = container_of(h, struct qmp_conn, h);
    struct qmp_server *s = c->srv;

    s->depth++;
    if (events & EPOLLERR)
        c->dead = 1;
    if (!c->dead && (events & (EPOLLIN | EPOLLHUP)))
        conn_read(c, (events & EPOLLHUP) != 0);
    if (events & EPOLLHUP)
        c->dead = 1; /* both directions closed: nothing can reach it any more */
    conn_kick(c);
    s->depth--;
    reap(s);
}

/* Accept one client; 0 when there was none waiting. */
static int accept_one(struct qmp_server *s)
{
    struct qmp_conn *c;
    int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (fd < 0) {
        int err = errno;

        if (err != EAGAIN && err != EINTR && err != ECONNABORTED)
            log_warn("control socket: accept4: %s", strerror(err));
        return err == EINTR || err == ECONNABORTED;
    }
    if (s->nr_conns >= QMP_MAX_CLIENTS) {
        if (!s->refused_logged++)
            log_warn("control socket: more than %d clients; refusing new ones", QMP_MAX_CLIENTS);
        close(fd);
        return 1;
    }
    c = qmp_conn_new(s, fd);
    if (!c) {
        log_warn("control socket: out of memory for a new client");
        close(fd);
        return 1;
    }
    if (loop_add(s->loop, &c->h, EPOLLIN | EPOLLOUT) < 0) {
        log_warn("control socket: cannot watch a new client");
        qmp_conn_free(c);
        return 1;
    }
    c->in_loop = 1;
    c->watching = EPOLLIN | EPOLLOUT;
    c->h.fn = on_client;
    s->depth++;
    conn_kick(c);
    s->depth--;
    reap(s);
    return 1;
}

static void on_listen(struct loop_handler *h, uint32_t events)
{
    struct qmp_server *s = container_of(h, struct qmp_server, h_listen);

    (void)events;
    for (int i = 0; i < QMP_ACCEPT_BATCH && accept_one(s); i++)
        ;
}

/* ---- events ---- */

static void broadcast(struct qmp_server *s, const char *name, json_object *data,
                      const struct timeval *tv)
{
    json_object *o = json_object_new_object(), *ts = json_object_new_object();
    const char *text;

    json_object_object_add(o, "event", json_object_new_string(name));
    if (data)
        json_object_object_add(o, "data", data);
    json_object_object_add(ts, "seconds", json_object_new_int64(tv->tv_sec));
    json_object_object_add(ts, "microseconds", json_object_new_int64(tv->tv_usec));
    json_object_object_add(o, "timestamp", ts);
    text = json_object_to_json_string_ext(o,
                                          JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    s->depth++;
    for (struct qmp_conn *c = s->conns; c; c = c->next) {
        if (c->negotiated) {
            conn_put(c, text);
            conn_kick(c);
        }
    }
    s->depth--;
    json_object_put(o);
    reap(s);
}

void qmp_event(struct qmp_server *s, const char *name, json_object *data)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    if (!s) {
        json_object_put(data);
        return;
    }
    broadcast(s, name, data, &tv);
}

void qmp_event_async(struct qmp_server *s, const char *name, json_object *data)
{
    struct timeval tv;
    uint64_t one = 1;
    int dropped = 0;

    gettimeofday(&tv, NULL);
    if (!s) {
        json_object_put(data);
        return;
    }
    pthread_mutex_lock(&s->lock);
    if (s->nr_pending < QMP_MAX_PENDING)
        s->pending[s->nr_pending++] = (struct pending_event){name, data, tv};
    else
        dropped = 1;
    pthread_mutex_unlock(&s->lock);
    if (dropped) {
        log_warn("control socket: too many events waiting; dropped %s", name);
        json_object_put(data);
        return;
    }
    if (s->event_fd >= 0)
        (void)!write(s->event_fd, &one, sizeof(one));
}

static void on_event(struct loop_handler *h, uint32_t events)
{
    struct qmp_server *s = container_of(h, struct qmp_server, h_event);
    struct pending_event ev[QMP_MAX_PENDING];
    uint64_t v;
    int n;

    (void)events;
    (void)!read(h->fd, &v, sizeof(v));
    pthread_mutex_lock(&s->lock);
    n = s->nr_pending;
    memcpy(ev, s->pending, sizeof(ev[0]) * (size_t)n);
    s->nr_pending = 0;
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < n; i++)
        broadcast(s, ev[i].name, ev[i].data, &ev[i].ts);
}

/* ---- deferred replies ---- */

int qmp_complete(struct qmp_server *s, const char *tag, json_object *ret, const char *err_desc)
{
    int n = 0;

    if (!s) {
        json_object_put(ret);
        return 0;
    }
    s->depth++;
    for (struct qmp_conn *c = s->conns; c; c = c->next) {
        if (!c->defer_tag || strcmp(c->defer_tag, tag) != 0)
            continue;
        if (err_desc)
            put_error(c, c->defer_id, "GenericError", err_desc);
        else
            put_return(c, c->defer_id, ret ? json_object_get(ret) : NULL);
        if (c->defer_id)
            json_object_put(c->defer_id);
        c->defer_id = NULL;
        c->defer_tag = NULL;
        n++;
        conn_process(c); /* requests that waited behind it */
        conn_kick(c);
    }
    s->depth--;
    json_object_put(ret);
    reap(s);
    return n;
}

int qmp_deferred(struct qmp_server *s, const char *tag)
{
    int n = 0;

    for (struct qmp_conn *c = s ? s->conns : NULL; c; c = c->next)
        n += c->defer_tag && strcmp(c->defer_tag, tag) == 0;
    return n;
}

/* ---- the server ---- */

struct qmp_server *qmp_server_new(qmp_dispatch_fn dispatch, void *opaque, json_object *version)
{
    struct qmp_server *s = calloc(1, sizeof(*s));

    if (!s) {
        json_object_put(version);
        return NULL;
    }
    s->dispatch = dispatch;
    s->opaque = opaque;
    s->version = version;
    s->listen_fd = s->event_fd = -1;
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

/* Refuse to replace anything but a socket nobody listens on. */
static int clear_stale(const char *path, const struct sockaddr_un *sa)
{
    struct stat st;
    int fd, r;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode)) {
        log_err("--api-sock %s: exists and is not a socket; remove it or choose another path",
                path);
        return -EEXIST;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return log_errno("socket");
    r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
    close(fd);
    if (r == 0) {
        log_err("--api-sock %s: another process is serving this socket; choose another path", path);
        return -EADDRINUSE;
    }
    if (unlink(path) < 0) {
        int err = -errno;

        log_err("--api-sock %s: cannot remove the stale socket: %s", path, strerror(-err));
        return err;
    }
    return 0;
}

int qmp_server_listen(struct qmp_server *s, const char *path, struct loop *loop)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    mode_t old;
    int fd, err;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        log_err("--api-sock %s: longer than %zu bytes; use a shorter path", path,
                sizeof(sa.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    err = clear_stale(path, &sa);
    if (err)
        return err;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return log_errno("control socket: socket");
    old = umask(0177); /* created 0600: nobody else may connect */
    err = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
    umask(old);
    if (err) {
        log_err("--api-sock %s: bind: %s", path, strerror(-err));
        close(fd);
        return err;
    }
    if (listen(fd, ACCEPT_QUEUE) < 0) {
        err = log_errno("control socket: listen");
        goto fail;
    }
    s->path = strdup(path);
    s->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!s->path || s->event_fd < 0) {
        err = s->path ? log_errno("control socket: eventfd") : -ENOMEM;
        goto fail;
    }
    s->loop = loop;
    s->listen_fd = fd;
    s->h_listen = (struct loop_handler){.fd = fd, .fn = on_listen};
    s->h_event = (struct loop_handler){.fd = s->event_fd, .fn = on_event};
    err = loop_add(loop, &s->h_listen, EPOLLIN);
    if (!err)
        err = loop_add(loop, &s->h_event, EPOLLIN);
    if (err) {
        log_err("control socket: epoll_ctl: %s", strerror(-err));
        loop_del(loop, &s->h_listen);
        s->listen_fd = -1;
        goto fail;
    }
    return 0;
fail:
    close(fd);
    unlink(path);
    return err;
}

void qmp_server_flush(struct qmp_server *s, int timeout_ms)
{
    struct timespec start, now;

    if (!s)
        return;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct pollfd pfd[QMP_MAX_CLIENTS];
        int n = 0, left;

        for (struct qmp_conn *c = s->conns; c && n < QMP_MAX_CLIENTS; c = c->next) {
            if (c->h.fd >= 0 && c->out_len && !c->dead)
                pfd[n++] = (struct pollfd){.fd = c->h.fd, .events = POLLOUT};
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        left = timeout_ms -
               (int)((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
        if (n == 0 || left <= 0)
            return;
        if (poll(pfd, (nfds_t)n, left) < 0 && errno != EINTR)
            return;
        for (struct qmp_conn *c = s->conns; c; c = c->next) {
            if (c->out_len && !c->dead)
                conn_send(c);
        }
    }
}

int qmp_server_clients(const struct qmp_server *s)
{
    return s ? s->nr_conns : 0;
}

void qmp_server_free(struct qmp_server *s, int timeout_ms)
{
    if (!s)
        return;
    qmp_server_flush(s, timeout_ms);
    while (s->conns)
        qmp_conn_free(s->conns);
    if (s->listen_fd >= 0) {
        loop_del(s->loop, &s->h_listen);
        close(s->listen_fd);
        unlink(s->path);
    }
    if (s->event_fd >= 0) {
        if (s->loop)
            loop_del(s->loop, &s->h_event);
        close(s->event_fd);
    }
    for (int i = 0; i < s->nr_pending; i++)
        json_object_put(s->pending[i].data);
    pthread_mutex_destroy(&s->lock);
    json_object_put(s->version);
    free(s->path);
    free(s);
}
