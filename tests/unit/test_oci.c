/* Unit tests for ember-oci's host side without a VM: runc-style options, config.json checks
 * and errors, the executable lookup's texts and codes, the mount translation into the guest's
 * spec, guest sizing, the state file and the agent link's parsing of the guest's lines. */
#include "check.h"
#include "exec_io.h"
#include "exec_spec.h"
#include "oci.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static char dir[PATH_MAX];

static void write_file(const char *name, const char *text, mode_t mode)
{
    char path[PATH_MAX + 64];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd >= 0) {
        (void)!write(fd, text, strlen(text));
        close(fd);
    }
    chmod(path, mode);
}

static void test_args(void)
{
    const char *bundle = NULL, *pid = NULL, *detach = NULL, *pos[2];
    const struct oci_opt opts[] = {{"bundle", 'b', 1, &bundle},
                                   {"pid-file", 0, 1, &pid},
                                   {"detach", 'd', 0, &detach},
                                   {NULL, 0, 0, NULL}};
    char *argv1[] = {"--bundle", "/b", "id1", "--pid-file=/p", "-d"};
    char *argv2[] = {"-b", "/c", "--detach=false", "--", "-id"};
    char *argv3[] = {"--console-socket", "/s", "id"};
    int n;

    CHECK_EQ(oci_parse_args(5, argv1, opts, pos, 2, &n), 0);
    CHECK_EQ(n, 1);
    CHECK(!strcmp(pos[0], "id1") && !strcmp(bundle, "/b") && !strcmp(pid, "/p"));
    CHECK(oci_flag(detach));
    CHECK_EQ(oci_parse_args(5, argv2, opts, pos, 2, &n), 0);
    CHECK(!strcmp(bundle, "/c") && !oci_flag(detach) && n == 1 && !strcmp(pos[0], "-id"));
    oci_quiet(1);
    CHECK_EQ(oci_parse_args(3, argv3, opts, pos, 2, &n), -1); /* unknown option */
    oci_quiet(0);
}

static const char *config_with(const char *process, const char *extra)
{
    static char buf[4 * PATH_MAX];

    snprintf(buf, sizeof(buf),
             "{\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"rootfs\",\"readonly\":true},"
             "\"process\":%s%s}",
             process, extra);
    return buf;
}

static int load(const char *text, struct oci_config *c)
{
    int r;

    write_file("config.json", text, 0644);
    oci_quiet(1);
    r = oci_config_load(dir, c);
    oci_quiet(0);
    return r;
}

static void test_config(void)
{
    const char *proc = "{\"args\":[\"/bin/sh\",\"-c\",\"x\"],\"cwd\":\"/w\",\"env\":[\"PATH=/"
                       "bin\",\"A=b\"],\"user\":{\"uid\":5,\"gid\":6,\"umask\":18,"
                       "\"additionalGids\":[7,8]},\"rlimits\":[{\"type\":\"RLIMIT_NOFILE\","
                       "\"soft\":100,\"hard\":200}],\"terminal\":true,\"consoleSize\":{"
                       "\"height\":24,\"width\":80}}";
    struct oci_config c;
    char path[PATH_MAX + 16];

    snprintf(path, sizeof(path), "%s/rootfs", dir);
    mkdir(path, 0755);
    CHECK_EQ(load(config_with(proc, ",\"hostname\":\"h\",\"linux\":{\"resources\":{\"memory\":"
                                    "{\"limit\":536870912},\"cpu\":{\"quota\":150000,"
                                    "\"period\":100000}},\"cgroupsPath\":\"/a/b\","
                                    "\"namespaces\":[{\"type\":\"network\"}]}"),
                  &c),
             0);
    CHECK(!strcmp(c.rootfs, path) && c.readonly && c.terminal);
    CHECK(c.nargs == 3 && !strcmp(c.args[2], "x") && c.nenv == 2 && !strcmp(c.cwd, "/w"));
    CHECK(c.uid == 5 && c.gid == 6 && c.have_umask && c.umask == 18 && c.ngroups == 2);
    CHECK(c.nrlimits == 1 && c.rlimits[0].soft == 100 && c.rlimits[0].hard == 200);
    CHECK(c.rows == 24 && c.cols == 80 && !strcmp(c.hostname, "h"));
    CHECK(c.mem_limit == 536870912 && c.new_netns && !strcmp(c.cgroups_path, "/a/b"));
    CHECK(!strcmp(oci_config_path(&c), "/bin"));
    /* guest sizing: the limit less the VMM's 64 MiB; CPU quota rounded up */
    CHECK_EQ(oci_guest_memory(&c), 448ULL << 20);
    CHECK_EQ(oci_guest_cpus(&c), 2);
    c.mem_limit = 100 << 20;
    CHECK_EQ(oci_guest_memory(&c), 0); /* below the 192 MiB minimum: refused */
    c.mem_limit = -1;
    CHECK_EQ(oci_guest_memory(&c), 256ULL << 20);
    c.cpu_quota = 0;
    c.cpuset_cpus = "0-2,5";
    CHECK_EQ(oci_guest_cpus(&c), 4);
    oci_config_free(&c);

    /* bad documents are refused, naming what is wrong */
    CHECK_EQ(load("{\"root\":{\"path\":\"rootfs\"},\"process\":{", &c), -1);
    oci_config_free(&c);
    CHECK_EQ(load(config_with(proc, "} trailing"), &c), -1);
    oci_config_free(&c);
    CHECK_EQ(load(config_with("{\"args\":[],\"cwd\":\"/\"}", ""), &c), -1);
    oci_config_free(&c);
    CHECK_EQ(load(config_with("{\"args\":[\"x\"],\"cwd\":\"relative\"}", ""), &c), -1);
    oci_config_free(&c);
    CHECK_EQ(load(config_with("{\"args\":\"x\",\"cwd\":\"/\"}", ""), &c), -1);
    oci_config_free(&c);
    CHECK_EQ(load("{\"process\":{\"args\":[\"x\"],\"cwd\":\"/\"}}", &c), -1); /* no root */
    oci_config_free(&c);
}

static void test_lookup(void)
{
    struct oci_config c;
    const char *proc;
    char path[PATH_MAX + 32];

    snprintf(path, sizeof(path), "%s/rootfs/bin", dir);
    mkdir(path, 0755);
    write_file("rootfs/bin/tool", "#!/bin/sh\n", 0755);
    write_file("rootfs/bin/data", "x", 0644);
    snprintf(path, sizeof(path), "%s/rootfs/bin/link", dir);
    symlink("/bin/tool", path); /* absolute: resolved inside the rootfs, not on the host */
    /* The lookup resolves inside the rootfs with openat2; qemu-user (the cross build's unit
     * tests) does not implement it. */
    if (syscall(SYS_openat2, AT_FDCWD, ".", NULL, 0) < 0 && errno == ENOSYS) {
        printf("oci: openat2 unavailable here (qemu-user?): executable lookup skipped\n");
        return;
    }
    proc = "{\"args\":[\"tool\"],\"cwd\":\"/\",\"env\":[\"PATH=/nowhere:/bin\"]}";
    CHECK_EQ(load(config_with(proc, ""), &c), 0);
    CHECK_EQ(oci_lookup_executable(&c), 0);
    c.args[0] = "link";
    CHECK_EQ(oci_lookup_executable(&c), 0);
    oci_quiet(1);
    c.args[0] = "missing";
    CHECK_EQ(oci_lookup_executable(&c), 127);
    c.args[0] = "data"; /* in PATH but not executable: Go's LookPath says not found */
    CHECK_EQ(oci_lookup_executable(&c), 127);
    c.args[0] = "/bin/data";
    CHECK_EQ(oci_lookup_executable(&c), 126);
    c.args[0] = "/bin/missing";
    CHECK_EQ(oci_lookup_executable(&c), 127);
    c.args[0] = "/bin";
    CHECK_EQ(oci_lookup_executable(&c), 126);
    oci_quiet(0);
    oci_config_free(&c);
}

/* Find entry kind with value val in the spec, after position *at; returns its position. */
static int spec_has(const struct exec_spec *s, char kind, const char *val)
{
    for (size_t i = 8; i < s->len; i += strlen((const char *)s->buf + i) + 1)
        if (s->buf[i] == (uint8_t)kind && !strcmp((const char *)s->buf + i + 1, val))
            return 1;
    return 0;
}

static void test_spec(void)
{
    struct oci_config c;
    struct exec_spec s;
    char *files[8], extra[2 * PATH_MAX + 1024], flags[32];
    int n;

    write_file("hosts", "127.0.0.1 localhost\n", 0644);
    snprintf(extra, sizeof(extra),
             ",\"mounts\":[{\"destination\":\"/proc\",\"type\":\"proc\",\"source\":\"proc\","
             "\"options\":[\"nosuid\",\"noexec\",\"nodev\"]},{\"destination\":\"/dev\",\"type\":"
             "\"tmpfs\",\"source\":\"tmpfs\",\"options\":[\"nosuid\",\"mode=755\",\"size=65536k\""
             "]},{\"destination\":\"/etc/hosts\",\"type\":\"bind\",\"source\":\"%s/hosts\","
             "\"options\":[\"rbind\",\"ro\",\"rprivate\"]},{\"destination\":\"/dev/shm\",\"type\":"
             "\"bind\",\"source\":\"%s\",\"options\":[\"bind\",\"nosuid\"]},{\"destination\":"
             "\"/dev/mqueue\",\"type\":\"mqueue\",\"source\":\"mqueue\"}]",
             dir, dir);
    CHECK_EQ(load(config_with("{\"args\":[\"tool\"],\"cwd\":\"/\"}", extra), &c), 0);
    CHECK_EQ(oci_build_spec(&c, 1 << 30, &s, files, &n, 8), 0);
    CHECK_EQ(exec_spec_finish(&s), 0);
    CHECK_EQ(n, 1);
    CHECK(n == 1 && strstr(files[0], "/hosts:/0") != NULL);
    CHECK(spec_has(&s, SPEC_OCI, "") && spec_has(&s, SPEC_ROOT, "ro 1073741824"));
    CHECK(spec_has(&s, SPEC_MOUNT, "/proc") && spec_has(&s, SPEC_MNT_TYPE, "proc"));
    snprintf(flags, sizeof(flags), "%lu", (unsigned long)(MS_NOSUID | MS_NOEXEC | MS_NODEV));
    CHECK(spec_has(&s, SPEC_MNT_FLAGS, flags));
    CHECK(spec_has(&s, SPEC_MNT_DATA, "mode=755,size=65536k"));
    CHECK(spec_has(&s, SPEC_MNT_FILE, "0"));
    snprintf(flags, sizeof(flags), "%lu", (unsigned long)(MS_BIND | MS_RDONLY));
    CHECK(spec_has(&s, SPEC_MNT_FLAGS, flags)); /* rbind's MS_REC dropped, ro kept */
    CHECK(spec_has(&s, SPEC_MOUNT, "/dev/shm") && spec_has(&s, SPEC_MNT_SRC, "shm"));
    CHECK(spec_has(&s, SPEC_MNT_TYPE, "mqueue") && spec_has(&s, SPEC_MNT_OPT, ""));
    CHECK(!memcmp(s.buf, SPEC_MAGIC, 4));
    free(files[0]);
    exec_spec_free(&s);
    oci_config_free(&c);

    /* a bind-mounted directory (a volume) cannot reach the VM: refused */
    snprintf(extra, sizeof(extra),
             ",\"mounts\":[{\"destination\":\"/data\",\"type\":\"bind\",\"source\":\"%s\"}]", dir);
    CHECK_EQ(load(config_with("{\"args\":[\"tool\"],\"cwd\":\"/\"}", extra), &c), 0);
    oci_quiet(1);
    CHECK_EQ(oci_build_spec(&c, 1 << 30, &s, files, &n, 8), -1);
    oci_quiet(0);
    exec_spec_free(&s);
    oci_config_free(&c);
}

static void test_state(void)
{
    struct oci_state s, t;
    json_object *o, *v;

    oci_g.root = dir;
    oci_quiet(1);
    CHECK_EQ(oci_check_id("../x"), -1);
    CHECK_EQ(oci_check_id("-x"), -1);
    CHECK_EQ(oci_state_open(&t, "nosuch"), -1);
    oci_state_close(&t);
    oci_quiet(0);
    CHECK_EQ(oci_check_id("a.b_c-1"), 0);
    CHECK_EQ(oci_state_new(&s, "c1"), 0);
    s.pid = getpid();
    s.starttime = oci_proc_starttime(getpid());
    s.status = ST_RUNNING;
    snprintf(s.bundle, sizeof(s.bundle), "/b");
    snprintf(s.created, sizeof(s.created), "2026-01-02T03:04:05.000000006Z");
    CHECK(s.starttime != 0);
    CHECK_EQ(oci_state_save(&s), 0);
    oci_quiet(1);
    CHECK_EQ(oci_state_new(&t, "c1"), -1); /* container with id exists */
    oci_quiet(0);
    oci_state_close(&s);
    CHECK_EQ(oci_state_open(&s, "c1"), 0);
    CHECK_EQ(oci_state_status(&s), ST_RUNNING); /* we are alive */
    o = oci_state_json(&s);
    CHECK(json_object_object_get_ex(o, "status", &v) &&
          !strcmp(json_object_get_string(v), "running"));
    CHECK(json_object_object_get_ex(o, "created", &v));
    json_object_put(o);
    s.starttime++; /* the pid now belongs to another process */
    CHECK_EQ(oci_state_status(&s), ST_STOPPED);
    o = oci_state_json(&s);
    CHECK(json_object_object_get_ex(o, "pid", &v) && json_object_get_int(v) == 0);
    json_object_put(o);
    oci_state_remove(&s);
    CHECK(access(s.dir, F_OK) != 0);
}

/* The root disk cache: a tree's identity changes with any entry; a cached disk comes back. */
static void test_rootfs_cache(void)
{
    static struct oci_rootfs a, b;
    char tree[PATH_MAX + 32], cache[PATH_MAX + 32], buf[16] = "";
    int fd;

    snprintf(tree, sizeof(tree), "%s/rootfs", dir);
    snprintf(cache, sizeof(cache), "%s/cache", dir);
    setenv("EMBER_CACHE_DIR", cache, 1);
    CHECK_EQ(oci_rootfs_walk(tree, &a), 0);
    CHECK_EQ(oci_rootfs_walk(tree, &b), 0);
    CHECK(a.key[0] && !strcmp(a.key, b.key) && a.files == b.files && a.files > 2);
    write_file("rootfs/bin/tool", "#!/bin/sh\n# changed\n", 0755);
    CHECK_EQ(oci_rootfs_walk(tree, &b), 0);
    CHECK(strcmp(a.key, b.key) != 0);
    a.bytes = 1 << 20;
    snprintf(a.img, sizeof(a.img), "%s/a.img", dir);
    snprintf(b.img, sizeof(b.img), "%s/b.img", dir);
    CHECK_EQ(oci_rootfs_from_cache(&a), -ENOENT);
    fd = open(a.img, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0 && ftruncate(fd, 1 << 20) == 0 && pwrite(fd, "disk", 4, 512 << 10) == 4);
    close(fd);
    oci_rootfs_to_cache(&a);
    snprintf(b.key, sizeof(b.key), "%s", a.key);
    fd = open(b.img, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0 && ftruncate(fd, 1 << 20) == 0);
    close(fd);
    CHECK_EQ(oci_rootfs_from_cache(&b), 0);
    fd = open(b.img, O_RDONLY);
    CHECK(fd >= 0 && pread(fd, buf, 4, 512 << 10) == 4 && !memcmp(buf, "disk", 4));
    close(fd);
    unsetenv("EMBER_CACHE_DIR");
}

static int agent_changes;
static void on_agent(void *opaque)
{
    (void)opaque;
    agent_changes++;
}

static void test_agent_lines(void)
{
    int p[2];
    char b;
    struct exec_io io = {.ready_fd = -1, .exit_fd = -1, .ctl = 1, .on_agent = on_agent};

    CHECK_EQ(pipe(p), 0);
    io.ready_fd = p[1];
    exec_agent_line(&io, "started 5"); /* before ready: ignored */
    CHECK_EQ(io.agent, AGENT_BOOTING);
    exec_agent_line(&io, "ready");
    CHECK_EQ(io.agent, AGENT_READY);
    CHECK(read(p[0], &b, 1) == 1 && b == 'R');
    CHECK_EQ(io.ready_fd, -1);
    io.agent = AGENT_STARTING;
    exec_agent_line(&io, "started 0");   /* not a pid */
    exec_agent_line(&io, "started 12x"); /* trailing junk */
    exec_agent_line(&io, "started 99999999999999999999");
    CHECK_EQ(io.agent, AGENT_STARTING);
    exec_agent_line(&io, "started 42");
    CHECK(io.agent == AGENT_STARTED && io.workload_pid == 42);
    exec_agent_line(&io, "exit 300 0"); /* out of range */
    exec_agent_line(&io, "exit 137");   /* missing the oom field */
    CHECK_EQ(io.agent, AGENT_STARTED);
    exec_agent_line(&io, "exit 137 1");
    CHECK(io.agent == AGENT_EXITED && io.exit_status == 137 && io.oom == 1);
    exec_agent_line(&io, "exit 0 0"); /* only once */
    CHECK_EQ(io.exit_status, 137);
    CHECK_EQ(agent_changes, 3);
    for (int i = 0; i < 100; i++) /* a chatty guest is heard a bounded number of times */
        exec_agent_line(&io, "nonsense");
    CHECK(io.agent_notes <= 16);
    close(p[0]);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/ember-test-oci.XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    test_args();
    test_config();
    test_lookup();
    test_spec();
    test_state();
    test_rootfs_cache();
    test_agent_lines();
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    (void)!system(cmd);
    return check_done("oci");
}
