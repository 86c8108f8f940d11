/* The control socket's commands for ember-oci's guest agent: x-ember-start (answered when the
 * workload runs or failed to start) and x-ember-signal. */
#include "control.h"
#include "exec_io.h"
#include "log.h"
#include "qmp.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define START_TAG "x-ember-start"

static struct exec_io *agent_io(struct control *c)
{
    return c->cfg->exec && c->cfg->exec->ctl ? c->cfg->exec : NULL;
}

/* The agent's state changed: answer a waiting x-ember-start. */
static void agent_changed(void *opaque)
{
    struct control *c = opaque;
    struct exec_io *io = agent_io(c);
    char desc[128];
    json_object *ret;

    if (!io || !qmp_deferred(c->qmp, START_TAG))
        return;
    switch (io->agent) {
    case AGENT_STARTED:
        ret = json_object_new_object();
        json_object_object_add(ret, "pid", json_object_new_int(io->workload_pid));
        qmp_complete(c->qmp, START_TAG, ret, NULL);
        break;
    case AGENT_FAILED:
        snprintf(desc, sizeof(desc), "cannot start the workload: %s (errno %d)",
                 strerror(io->exec_errno), io->exec_errno);
        qmp_complete(c->qmp, START_TAG, NULL, desc);
        break;
    case AGENT_EXITED:
        qmp_complete(c->qmp, START_TAG, NULL, "the workload ended before it was started");
        break;
    default:
        break;
    }
}

int control_serves_container(const struct control *c)
{
    return c && c->cfg->exec && c->cfg->exec->ctl;
}

void control_agent_attach(struct control *c)
{
    struct exec_io *io = agent_io(c);

    if (!io)
        return;
    io->on_agent = agent_changed;
    io->on_agent_opaque = c;
}

enum qmp_result control_cmd_start(struct control *c, struct qmp_request *req)
{
    struct exec_io *io = agent_io(c);
    int err;

    if (!io)
        return qmp_error(req, NULL, "there is no container workload to start (ember-oci only)");
    switch (io->agent) {
    case AGENT_BOOTING:
        return qmp_error(req, NULL, "the guest agent is not ready yet");
    case AGENT_STARTING:
        return qmp_defer(req, START_TAG);
    case AGENT_STARTED:
        return QMP_OK;
    case AGENT_FAILED:
    case AGENT_EXITED:
        return qmp_error(req, NULL, "the workload was started already and has ended");
    case AGENT_READY:
        break;
    }
    err = exec_agent_start(io);
    if (err)
        return qmp_error(req, NULL, "cannot ask the guest agent to start: %s", strerror(-err));
    return qmp_defer(req, START_TAG);
}

enum qmp_result control_cmd_signal(struct control *c, struct qmp_request *req)
{
    struct exec_io *io = agent_io(c);
    json_object *v;
    int sig, all = 0, err;

    if (!io)
        return qmp_error(req, NULL, "there is no container workload to signal (ember-oci only)");
    json_object_object_get_ex(req->args, "signal", &v);
    sig = json_object_get_int(v);
    if (json_object_object_get_ex(req->args, "all", &v))
        all = json_object_get_boolean(v);
    err = exec_agent_signal(io, sig, all);
    if (err == -EINVAL)
        return qmp_error(req, NULL, "signal %d is not a signal number (1-64)", sig);
    if (err == -ESRCH)
        return qmp_error(req, "ProcessNotFound", "the workload is not running");
    if (err)
        return qmp_error(req, NULL, "cannot send the signal to the guest agent: %s",
                         strerror(-err));
    return QMP_OK;
}
