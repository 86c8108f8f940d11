/* `create` and `run`: check the bundle, make the root disk, fork the VMM (left behind as the
 * caller's descendant), hand the pty to --console-socket, wait until the guest agent is ready,
 * record the state and write the pid file atomically, last. `run` then starts the workload
 * and, in the foreground, exits with its status. */
#include "exec.h"
#include "exec_spec.h"
#include "oci.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define READY_TIMEOUT_MS (180 * 1000) /* a guest boot in a nested, emulated test host: ~5-30 s */
#define MAX_FILES        64

/* runc's console-socket protocol (conmon and containerd take it as is): one message whose
 * data is the pty's name and whose one SCM_RIGHTS message carries the master. */
static int send_console(const char *path, int master, const char *name)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = (void *)name, .iov_len = strlen(name) + 1};
    struct msghdr msg = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
    struct cmsghdr *cm;
    int fd, r;

    if (strlen(path) >= sizeof(addr.sun_path))
        return oci_error("--console-socket %s: path too long for a unix socket", path);
    memcpy(addr.sun_path, path, strlen(path));
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        int err = errno;

        if (fd >= 0)
            close(fd);
        return oci_error("--console-socket %s: %s", path, strerror(err));
    }
    memset(cbuf, 0, sizeof(cbuf));
    cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &master, sizeof(int));
    do
        r = (int)sendmsg(fd, &msg, 0);
    while (r < 0 && errno == EINTR);
    close(fd);
    if (r < 0)
        return oci_error("--console-socket %s: sending the pty: %s", path, strerror(errno));
    return 0;
}

/* The container's pty: the master goes to the console socket, the VMM keeps the slave (raw:
 * the guest's pty does the line discipline). Returns the slave or -1. */
static int make_console(const struct oci_config *c, const char *socket_path)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC), slave = -1;
    struct termios t;
    char name[64];

    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 ||
        ptsname_r(master, name, sizeof(name)) != 0 ||
        (slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
        oci_error("cannot allocate the container's pty: %s", strerror(errno));
        goto fail;
    }
    if (tcgetattr(slave, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(slave, TCSANOW, &t);
    }
    if (c->rows && c->cols) {
        struct winsize ws = {.ws_row = (unsigned short)c->rows, .ws_col = (unsigned short)c->cols};

        ioctl(master, TIOCSWINSZ, &ws);
    }
    if (send_console(socket_path, master, name))
        goto fail;
    close(master);
    return slave;
fail:
    if (master >= 0)
        close(master);
    if (slave >= 0)
        close(slave);
    return -1;
}

/* The VMM failed before the agent was ready: the reason is in vmm.log. */
static void report_vmm_failure(const struct oci_state *s, const char *what)
{
    char path[PATH_MAX + 1200], buf[8192], reasons[1024] = "";
    int fd;
    ssize_t n = 0;

    oci_state_path(s, "vmm.log", path, sizeof(path));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        off_t size = lseek(fd, 0, SEEK_END);

        lseek(fd, size > (off_t)sizeof(buf) - 1 ? size - (off_t)sizeof(buf) + 1 : 0, SEEK_SET);
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
    }
    buf[n > 0 ? n : 0] = '\0';
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        const char *msg = strstr(line, "error: ");

        if (!msg)
            continue;
        msg += 7;
        if (strlen(reasons) + strlen(msg) + 3 < sizeof(reasons))
            snprintf(reasons + strlen(reasons), sizeof(reasons) - strlen(reasons), "%s%s",
                     reasons[0] ? "; " : "", msg);
    }
    oci_error("%s%s%s", what, reasons[0] ? ": " : " (see ", reasons[0] ? reasons : path);
    if (!reasons[0])
        oci_error("(see %s)", path);
}

/* Wait for the agent's readiness byte. 0, or -1 after oci_error (the VMM is reaped). */
static int wait_ready(const struct oci_state *s, int fd, pid_t pid)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    char b;
    int r, st;

    do
        r = poll(&pf, 1, READY_TIMEOUT_MS);
    while (r < 0 && errno == EINTR);
    if (r > 0 && read(fd, &b, 1) == 1)
        return 0;
    if (r == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        oci_error("the container's VM was not ready after %d s (see %s/vmm.log)",
                  READY_TIMEOUT_MS / 1000, s->dir);
        return -1;
    }
    waitpid(pid, &st, 0);
    report_vmm_failure(s, "the container's VM failed to start");
    return -1;
}

static int write_pid_file(const char *path, pid_t pid)
{
    char tmp[PATH_MAX + 32], val[32];
    int fd, n = snprintf(val, sizeof(val), "%d", (int)pid), ok;

    snprintf(tmp, sizeof(tmp), "%s.ember-tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ok = fd >= 0 && write(fd, val, (size_t)n) == n;
    if (fd >= 0)
        close(fd);
    if (!ok || rename(tmp, path) < 0) {
        int err = errno;

        unlink(tmp);
        return oci_error("--pid-file %s: %s", path, strerror(err));
    }
    return 0;
}

int oci_cmd_create(int argc, char **argv, int run)
{
    static struct oci_config cfg;
    static struct oci_state st;
    const char *bundle = NULL, *pid_file = NULL, *console = NULL, *no_pivot = NULL,
               *no_keyring = NULL, *preserve = NULL, *detach = NULL, *keep = NULL,
               *no_subreaper = NULL, *pos[1];
    const struct oci_opt opts[] = {
            {"bundle", 'b', 1, &bundle},           {"pid-file", 0, 1, &pid_file},
            {"console-socket", 0, 1, &console},    {"no-pivot", 0, 0, &no_pivot},
            {"no-new-keyring", 0, 0, &no_keyring}, {"preserve-fds", 0, 1, &preserve},
            {"detach", 'd', 0, &detach},           {"keep", 0, 0, &keep},
            {"no-subreaper", 0, 0, &no_subreaper}, {NULL, 0, 0, NULL},
    };
    static struct oci_rootfs rfs;
    char files_img[PATH_MAX + 1200] = "", vmdir[PATH_MAX + 1200];
    char *files[MAX_FILES] = {0};
    struct exec_spec spec = {0};
    int npos, nfiles = 0, slave = -1, ready[2] = {-1, -1}, go[2] = {-1, -1}, disk[2] = {-1, -1},
              code = 1, have_state = 0, exec_code = 0;
    pid_t pid = -1;

    if (oci_parse_args(argc, argv, opts, pos, 1, &npos))
        return 1;
    if (npos != 1)
        return oci_error("%s needs the container id (ember-oci %s [options] ID)",
                         run ? "run" : "create", run ? "run" : "create"),
               1;
    if (preserve && strcmp(preserve, "0") != 0)
        oci_debug("--preserve-fds %s: descriptors cannot reach a VM; ignored", preserve);
    if (oci_config_load(bundle ? bundle : ".", &cfg))
        goto out;
    if (cfg.terminal && !console) {
        oci_error("process.terminal is true but no --console-socket was given: ember-oci needs "
                  "one to hand over the container's pty");
        goto out;
    }
    if (!oci_guest_memory(&cfg)) {
        oci_error("linux.resources.memory.limit %lld is below ember-oci's minimum of 192 MiB "
                  "(a 128 MiB guest and 64 MiB for its VMM)",
                  cfg.mem_limit);
        goto out;
    }
    if ((exec_code = oci_lookup_executable(&cfg)))
        goto out;
    if (oci_state_new(&st, pos[0]))
        goto out;
    have_state = 1;
    snprintf(st.bundle, sizeof(st.bundle), "%s", cfg.bundle);
    snprintf(st.rootfs, sizeof(st.rootfs), "%s", cfg.rootfs);
    oci_state_path(&st, "vm", vmdir, sizeof(vmdir));
    if (mkdir(vmdir, 0711) < 0) {
        oci_error("cannot create %s: %s", vmdir, strerror(errno));
        goto out;
    }
    if (oci_rootfs_prepare(&cfg, &st, &rfs) ||
        oci_build_spec(&cfg, rfs.bytes, &spec, files, &nfiles, MAX_FILES) ||
        (nfiles &&
         copyin_pack((const char *const *)files, nfiles, st.dir, files_img, sizeof(files_img))))
        goto out;
    if (nfiles) {
        struct stat fst;

        exec_spec_addf(&spec, SPEC_FILES, "%lld",
                       stat(files_img, &fst) == 0 ? (long long)fst.st_size : 0LL);
    }
    if (exec_spec_finish(&spec)) {
        oci_error("the container's settings do not fit the guest's spec (at most 1 MiB)");
        goto out;
    }
    if (cfg.terminal && (slave = make_console(&cfg, console)) < 0)
        goto out;
    if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0 || pipe2(disk, O_CLOEXEC) < 0) {
        oci_error("pipe: %s", strerror(errno));
        goto out;
    }
    pid = fork();
    if (pid == 0) {
        struct oci_launch l = {.cfg = &cfg,
                               .st = &st,
                               .console_slave = slave,
                               .ready_fd = ready[1],
                               .go_fd = go[0],
                               .disk_fd = disk[0],
                               .image = rfs.img,
                               .files = files_img[0] ? files_img : NULL,
                               .spec = &spec};

        close(ready[0]);
        close(go[1]);
        close(disk[1]);
        _exit(oci_vmm_main(&l));
    }
    close(ready[1]);
    close(go[0]);
    close(disk[0]);
    ready[1] = go[0] = disk[0] = -1;
    if (pid < 0) {
        oci_error("fork: %s", strerror(errno));
        goto out;
    }
    /* In the container's cgroup before it forks anything (the engine's limits and OOM
     * handling see the VMM), then on. */
    if (oci_cgroup_enter(&cfg, pid, st.cgroup, sizeof(st.cgroup)) || write(go[1], "g", 1) != 1)
        goto out;
    close(go[1]);
    go[1] = -1;
    /* The root disk fills while the guest boots; the agent mounts it once told. */
    if (oci_rootfs_fill(&cfg, &rfs) || write(disk[1], "D", 1) != 1)
        goto out;
    close(disk[1]);
    disk[1] = -1;
    if (wait_ready(&st, ready[0], pid)) {
        pid = -1; /* reaped */
        goto out;
    }
    st.pid = pid;
    st.starttime = oci_proc_starttime(pid);
    st.status = ST_CREATED;
    oci_rfc3339(st.created, sizeof(st.created));
    st.annotations = json_object_object_get_ex(cfg.doc, "annotations", NULL)
                             ? json_object_get(json_object_object_get(cfg.doc, "annotations"))
                             : NULL;
    if (oci_run_hooks(&cfg, HOOK_PRESTART, &st) || oci_run_hooks(&cfg, HOOK_CREATE_RUNTIME, &st) ||
        oci_state_save(&st))
        goto out;
    /* Last: containerd and conmon take the pid file for "created". */
    if (pid_file && write_pid_file(pid_file, pid))
        goto out;
    oci_debug("created %s: VMM pid %d", st.id, (int)pid);
    code = 0;
    if (run) {
        code = oci_start(&st);
        if (!code && !oci_flag(detach)) {
            oci_state_close(&st);
            have_state = 0;
            code = oci_relay_and_wait(pid); /* run in the foreground */
        }
    }
out:
    if (ready[0] >= 0)
        close(ready[0]);
    if (ready[1] >= 0)
        close(ready[1]);
    for (int i = 0; i < 2; i++) {
        if (go[i] >= 0)
            close(go[i]);
        if (disk[i] >= 0)
            close(disk[i]);
    }
    if (slave >= 0)
        close(slave);
    if (code && have_state && (!run || st.status == ST_CREATED)) {
        /* Nothing stays behind a failed create: no VMM, no cgroup, no state. */
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        oci_cgroup_remove(st.cgroup);
        oci_state_remove(&st);
    } else if (have_state) {
        oci_state_close(&st);
    }
    for (int i = 0; i < nfiles; i++)
        free(files[i]);
    exec_spec_free(&spec);
    oci_config_free(&cfg);
    if (run && exec_code)
        return exec_code; /* 127: not found, 126: not executable, as runc's callers give */
    if (code == 1 && run)
        return 125; /* run: the container never ran */
    return code;
}
