/* libFuzzer target: the control socket's protocol (framing, negotiation, replies) and its
 * commands (vmm/qmp_commands.c), fed client bytes on a connection without a socket or a VM. */
#include "control.h"
#include "fuzz_common.h"
#include "qmp.h"

#include <stdlib.h>
#include <string.h>

/* configure opens the kernel, initrd and disks it is given (read-only, or read-write without
 * writing, for disks): with no '/' anywhere in its arguments, only files of the working
 * directory (the repository's top, under tests/fuzz/run) can be. */
static enum qmp_result dispatch(void *opaque, struct qmp_request *req)
{
    if (strcmp(req->name, "configure") == 0 &&
        strchr(json_object_to_json_string_ext(req->args, JSON_C_TO_STRING_PLAIN), '/'))
        return qmp_error(req, NULL, "fuzz: no paths with '/'");
    return control_dispatch(opaque, req);
}

/* Every reply and event is one CRLF-terminated line of valid JSON. */
static void check_output(struct qmp_conn *conn)
{
    size_t len, used = 0;
    const char *p = qmp_conn_output(conn, &len);
    const char *nl;

    while ((nl = memchr(p + used, '\n', len - used))) {
        char *line;
        json_object *o;

        if (nl == p + used || nl[-1] != '\r')
            abort();
        line = strndup(p + used, (size_t)(nl - p - used));
        if (!line)
            abort();
        o = json_tokener_parse(line);
        if (!o || !json_object_is_type(o, json_type_object))
            abort();
        json_object_put(o);
        free(line);
        used = (size_t)(nl - p) + 1;
    }
    if (used != len) /* nothing but whole lines */
        abort();
    qmp_conn_consume(conn, used);
}

/* Input: [mode, client bytes...]. mode bits 0-1: the control state (no VM in any of them, as
 * while one is being rebuilt); bits 2-7: the client's bytes arrive in pieces of that many
 * (0: all at once). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vm_config cfg;
    struct control c;
    struct qmp_conn *conn;
    size_t chunk;

    if (size < 1)
        return 0;
    config_defaults(&cfg);
    memset(&c, 0, sizeof(c));
    c.cfg = &cfg;
    c.statm_fd = -1;
    c.state = (enum control_state)(data[0] & 3);
    chunk = data[0] >> 2;
    data++;
    size--;
    if (!chunk)
        chunk = size ? size : 1;
    c.qmp = qmp_server_new(dispatch, &c, json_object_new_object());
    if (!c.qmp)
        abort();
    conn = qmp_conn_new(c.qmp, -1);
    if (!conn)
        abort();
    check_output(conn); /* the greeting */
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;

        if (qmp_conn_feed(conn, data + off, n) < 0)
            abort(); /* its output is consumed: it can never pile up */
        check_output(conn);
    }
    /* What the VM's side would do next: answer a deferred `cont`, send an event. */
    qmp_complete(c.qmp, "cont", NULL, "fuzz: no VM");
    qmp_event(c.qmp, "FUZZ", json_object_new_object());
    check_output(conn);
    qmp_conn_free(conn);
    qmp_server_free(c.qmp, 0);
    config_free(&cfg);
    return 0;
}
