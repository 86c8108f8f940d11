/* Unit tests for the control socket's commands without a socket or a VM: configure refuses
 * paths that would block (FIFOs) or are no file, at once. */
#include "check.h"
#include "config.h"
#include "control.h"
#include "qmp.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static struct vm_config cfg;
static struct control ctl;
static char dir[] = "/tmp/ember-test-control-XXXXXX";
static char fifo[64], file[64];

/* configure with the JSON object `args`; the result, and the error text in desc. */
static enum qmp_result configure(const char *args, char *desc, size_t n)
{
    struct qmp_request req = {.name = "configure", .args = json_tokener_parse(args)};
    enum qmp_result r;

    CHECK(req.args != NULL);
    r = control_dispatch(&ctl, &req);
    snprintf(desc, n, "%s", r == QMP_ERR ? req.desc : "");
    if (req.ret)
        json_object_put(req.ret);
    json_object_put(req.args);
    return r;
}

/* configure in a child that may take at most 2 s: an open that blocks fails the test instead
 * of hanging it. True when it was refused with an error holding `words`. */
static bool refused_at_once(const char *args, const char *words)
{
    char desc[QMP_DESC_MAX];
    int st;
    pid_t pid = fork();

    if (pid == 0) {
        alarm(2);
        _exit(configure(args, desc, sizeof(desc)) == QMP_ERR && strstr(desc, words) ? 0 : 1);
    }
    return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void test_paths_that_would_block(void)
{
    char args[256];

    snprintf(args, sizeof(args), "{\"kernel\": \"%s\"}", fifo);
    CHECK(refused_at_once(args, "FIFO"));
    snprintf(args, sizeof(args), "{\"initrd\": \"%s\"}", fifo);
    CHECK(refused_at_once(args, "FIFO"));
    snprintf(args, sizeof(args), "{\"disk\": \"%s,ro\"}", fifo);
    CHECK(refused_at_once(args, "FIFO"));
    snprintf(args, sizeof(args), "{\"disk\": \"%s\"}", fifo);
    CHECK(refused_at_once(args, "FIFO"));
    snprintf(args, sizeof(args), "{\"kernel\": \"%s\"}", dir);
    CHECK(refused_at_once(args, "directory"));
    snprintf(args, sizeof(args), "{\"disk\": \"%s,ro\"}", dir);
    CHECK(refused_at_once(args, "directory"));
    snprintf(args, sizeof(args), "{\"kernel\": \"/dev/null\"}");
    CHECK(refused_at_once(args, "character device"));
}

int main(void)
{
    int fd;

    signal(SIGPIPE, SIG_IGN);
    CHECK(mkdtemp(dir) != NULL);
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    snprintf(file, sizeof(file), "%s/kernel", dir);
    CHECK_EQ(mkfifo(fifo, 0600), 0);
    fd = open(file, O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0 && write(fd, "k", 1) == 1);
    close(fd);
    config_defaults(&cfg);
    ctl.cfg = &cfg;
    ctl.state = CTL_PRELAUNCH;

    test_paths_that_would_block();

    config_free(&cfg);
    unlink(fifo);
    unlink(file);
    rmdir(dir);
    return check_done("control");
}
