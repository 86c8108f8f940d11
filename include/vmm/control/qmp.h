/* The control socket's wire protocol (QEMU's QMP): greeting, capabilities negotiation,
 * framing, replies and events, with bounded per-client buffers. Commands are the caller's. */
#ifndef EMBER_QMP_H
#define EMBER_QMP_H

#include <json-c/json.h>
#include <stddef.h>

#include "eventloop.h"

#define QMP_MAX_REQUEST (64 * 1024)   /* bytes of one request; longer ones get an error */
#define QMP_MAX_DEPTH   32            /* JSON nesting of one request */
#define QMP_IN_BUF      (16 * 1024)   /* bytes read ahead per client */
#define QMP_OUT_PAUSE   (64 * 1024)   /* stop reading requests while this much is unsent */
#define QMP_MAX_OUTPUT  (1024 * 1024) /* unsent bytes past which a client is dropped */
#define QMP_MAX_CLIENTS 64
#define QMP_MAX_PENDING 64 /* events posted from other threads, not yet sent */
#define QMP_DESC_MAX    512

struct qmp_server;
struct qmp_conn;

enum qmp_result {
    QMP_OK,       /* reply {"return": ret} (ret NULL: {}) */
    QMP_ERR,      /* reply {"error": {"class": err_class, "desc": desc}} */
    QMP_DEFERRED, /* qmp_defer() was called: the reply comes later, from qmp_complete() */
};

/* One request, as the dispatcher sees it. args is never NULL (an empty object when absent). */
struct qmp_request {
    struct qmp_conn *conn;
    const char *name;
    json_object *args;
    json_object *id; /* NULL when the client sent none */
    json_object *ret;
    const char *err_class; /* "GenericError" unless set */
    char desc[QMP_DESC_MAX];
};

typedef enum qmp_result (*qmp_dispatch_fn)(void *opaque, struct qmp_request *req);

/* Set an error on req and return QMP_ERR. */
__attribute__((format(printf, 3, 4))) enum qmp_result
qmp_error(struct qmp_request *req, const char *err_class, const char *fmt, ...);

/* A server without a socket (unit tests feed connections directly): version is the
 * greeting's {"qemu": ..., "package": ...} object (taken). NULL when out of memory. */
struct qmp_server *qmp_server_new(qmp_dispatch_fn dispatch, void *opaque, json_object *version);
/* Listen on a Unix socket at path (mode 0600; a stale socket there is replaced, anything else
 * is an error) and serve clients from loop. 0 or -errno after one error line. */
int qmp_server_listen(struct qmp_server *s, const char *path, struct loop *loop);
/* Send what is queued (up to timeout_ms), close every client and the socket, unlink it. */
void qmp_server_free(struct qmp_server *s, int timeout_ms);

/* Broadcast an event to every negotiated client (event loop thread). data may be NULL; it
 * is taken. */
void qmp_event(struct qmp_server *s, const char *name, json_object *data);
/* The same from any thread: queued and sent from the event loop (at most QMP_MAX_PENDING
 * waiting; more are dropped with a warning). */
void qmp_event_async(struct qmp_server *s, const char *name, json_object *data);

/* Inside a dispatch: answer later. The client's further requests wait until then. tag names
 * what is awaited (e.g. "stop"). Returns QMP_DEFERRED. */
enum qmp_result qmp_defer(struct qmp_request *req, const char *tag);
/* Answer every request deferred with tag: with ret (NULL: {}) when err_desc is NULL, else
 * with a GenericError. ret is taken. Returns how many were answered. */
int qmp_complete(struct qmp_server *s, const char *tag, json_object *ret, const char *err_desc);
/* Number of requests waiting under tag. */
int qmp_deferred(struct qmp_server *s, const char *tag);

/* Wait up to timeout_ms for every client's output to be sent (before exit). */
void qmp_server_flush(struct qmp_server *s, int timeout_ms);
int qmp_server_clients(const struct qmp_server *s);

/* ---- one connection, without a socket (fd -1) for unit tests ---- */
struct qmp_conn *qmp_conn_new(struct qmp_server *s, int fd);
/* Close the client and drop it from the server; a client in the loop is freed through
 * loop_retire (its event may still wait in the batch being dispatched). */
void qmp_conn_free(struct qmp_conn *c);
/* Process bytes from the client. Returns 0, or -1 when the client must be dropped (it let
 * more than QMP_MAX_OUTPUT bytes of output pile up). */
int qmp_conn_feed(struct qmp_conn *c, const void *data, size_t len);
/* Output not yet sent; qmp_conn_consume(c, n) removes n bytes of it. */
const char *qmp_conn_output(struct qmp_conn *c, size_t *len);
void qmp_conn_consume(struct qmp_conn *c, size_t n);

#endif
