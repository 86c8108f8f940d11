/* Unit tests for the control socket's commands without a socket or a VM: configure refuses
 * paths that would block (FIFOs) or are no file, at once, and what repeated or refused
 * configure calls keep stays bounded. */
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

/* A configure request setting the kernel and a command line of len bytes. */
static char *request(const char *kernel, size_t len)
{
    char *r = malloc(len + strlen(kernel) + 64);
    int n = sprintf(r, "{\"kernel\": \"%s\", \"cmdline\": \"", kernel);

    memset(r + n, 'k', len);
    strcpy(r + n + len, "\"}");
    return r;
}

/* 1000 configure calls of a 48 KiB command line, every other one refused (a missing kernel):
 * what is kept is one command line, not a thousand. */
static void test_kept_memory_is_bounded(void)
{
    size_t len = 48 * 1024, most = 0;
    char missing[80], desc[QMP_DESC_MAX];
    char *ok, *bad;

    snprintf(missing, sizeof(missing), "%s-missing", file);
    ok = request(file, len);
    bad = request(missing, len);
    for (int i = 0; i < 1000; i++) {
        size_t kept;

        CHECK_EQ(configure(i % 2 ? bad : ok, desc, sizeof(desc)), i % 2 ? QMP_ERR : QMP_OK);
        kept = config_owned_bytes(&cfg);
        if (kept > most)
            most = kept;
    }
    CHECK(most < 4 * len);
    CHECK(cfg.cmdline && strlen(cfg.cmdline) == len);
    CHECK(strcmp(cfg.kernel, file) == 0);
    free(ok);
    free(bad);
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
    test_kept_memory_is_bounded();

    config_free(&cfg);
    unlink(fifo);
    unlink(file);
    rmdir(dir);
    return check_done("control");
}
