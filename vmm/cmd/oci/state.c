/* A container's state directory <root>/<id>/: the lock every command takes, state.json
 * (written atomically), and whether the VMM still lives (its start time guards pid reuse). */
#include "oci.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const status_names[] = {"creating", "created", "running", "paused", "stopped"};

const char *oci_status_name(enum oci_status st)
{
    return status_names[st];
}

int oci_check_id(const char *id)
{
    size_t n = strlen(id);

    if (n == 0 || n > 1024 || !isalnum((unsigned char)id[0]))
        return oci_error("invalid container id '%.64s': letters, digits, '_', '.' and '-', "
                         "starting with a letter or digit, at most 1024",
                         id);
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)id[i]) && !strchr("_.-", id[i]))
            return oci_error("invalid container id '%.64s': '%c' is not allowed", id, id[i]);
    return 0;
}

void oci_state_path(const struct oci_state *s, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", s->dir, name);
}

static void init(struct oci_state *s, const char *id)
{
    memset(s, 0, sizeof(*s));
    s->dirfd = s->lockfd = -1;
    snprintf(s->id, sizeof(s->id), "%s", id);
    snprintf(s->dir, sizeof(s->dir), "%s/%s", oci_g.root, id);
}

static int lock(struct oci_state *s)
{
    s->lockfd = openat(s->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lockfd < 0 || flock(s->lockfd, LOCK_EX) < 0)
        return oci_error("cannot lock %s/lock: %s", s->dir, strerror(errno));
    return 0;
}

static int mkdir_p(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];

    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, mode) < 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    return mkdir(tmp, mode) < 0 && errno != EEXIST ? -1 : 0;
}

int oci_state_new(struct oci_state *s, const char *id)
{
    init(s, id);
    if (oci_check_id(id))
        return -1;
    if (mkdir_p(oci_g.root, 0711) < 0)
        return oci_error("cannot create the state root %s: %s", oci_g.root, strerror(errno));
    if (mkdir(s->dir, 0711) < 0) {
        if (errno == EEXIST)
            return oci_error("container with id exists: %s", id);
        return oci_error("cannot create %s: %s", s->dir, strerror(errno));
    }
    s->dirfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0)
        return oci_error("cannot open %s: %s", s->dir, strerror(errno));
    s->status = ST_CREATING;
    return lock(s);
}

static void copy_str(json_object *o, const char *key, char *buf, size_t len)
{
    json_object *v;

    if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
        snprintf(buf, len, "%s", json_object_get_string(v));
}

int oci_state_open(struct oci_state *s, const char *id)
{
    json_object *doc, *v;
    char path[PATH_MAX + 1200];

    init(s, id);
    if (oci_check_id(id))
        return -1;
    s->dirfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        if (errno == ENOENT)
            return oci_error("container \"%s\" does not exist", id);
        return oci_error("cannot open %s: %s", s->dir, strerror(errno));
    }
    if (lock(s))
        return -1;
    oci_state_path(s, "state.json", path, sizeof(path));
    doc = json_object_from_file(path);
    if (!doc) {
        /* create failed half-way, or runc's own container in a shared --root (Docker) */
        if (faccessat(s->dirfd, "state.json", F_OK, 0) < 0)
            return oci_error("container \"%s\" does not exist (no state.json in %s)", id, s->dir);
        return oci_error("%s: unreadable state", path);
    }
    v = NULL;
    json_object_object_get_ex(doc, "runtime", &v);
    if (!v || strcmp(json_object_get_string(v), "ember-oci") != 0) {
        json_object_put(doc);
        return oci_error("container \"%s\" does not exist (its state in %s is not ember-oci's)", id,
                         s->dir);
    }
    s->status = ST_STOPPED;
    if (json_object_object_get_ex(doc, "status", &v))
        for (int i = 0; i <= ST_STOPPED; i++)
            if (!strcmp(json_object_get_string(v), status_names[i]))
                s->status = (enum oci_status)i;
    if (json_object_object_get_ex(doc, "pid", &v))
        s->pid = (pid_t)json_object_get_int(v);
    if (json_object_object_get_ex(doc, "ember_pid_starttime", &v))
        s->starttime = (unsigned long long)json_object_get_int64(v);
    copy_str(doc, "bundle", s->bundle, sizeof(s->bundle));
    copy_str(doc, "rootfs", s->rootfs, sizeof(s->rootfs));
    copy_str(doc, "created", s->created, sizeof(s->created));
    copy_str(doc, "ember_cgroup", s->cgroup, sizeof(s->cgroup));
    if (json_object_object_get_ex(doc, "annotations", &v))
        s->annotations = json_object_get(v);
    json_object_put(doc);
    return 0;
}

unsigned long long oci_proc_starttime(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long start = 0;
    char state;
    int fd;
    ssize_t n;

    if (pid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* the command name may hold anything */
    /* state is field 3; starttime field 22 */
    if (!p || sscanf(p + 2,
                     "%c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d "
                     "%*d %*d %*d %llu",
                     &state, &start) != 2)
        return 0;
    return state == 'Z' || state == 'X' ? 0 : start;
}

enum oci_status oci_state_status(const struct oci_state *s)
{
    if (s->status == ST_STOPPED || s->status == ST_CREATING)
        return s->status;
    if (!s->pid || oci_proc_starttime(s->pid) != s->starttime)
        return ST_STOPPED;
    return s->status;
}

json_object *oci_state_json(const struct oci_state *s)
{
    json_object *o = json_object_new_object();
    enum oci_status st = oci_state_status(s);

    json_object_object_add(o, "ociVersion", json_object_new_string(OCI_VERSION));
    json_object_object_add(o, "id", json_object_new_string(s->id));
    json_object_object_add(o, "pid", json_object_new_int(st == ST_STOPPED ? 0 : (int)s->pid));
    json_object_object_add(
            o, "status", json_object_new_string(status_names[st == ST_CREATING ? ST_CREATED : st]));
    json_object_object_add(o, "bundle", json_object_new_string(s->bundle));
    json_object_object_add(o, "rootfs", json_object_new_string(s->rootfs));
    if (s->created[0])
        json_object_object_add(o, "created", json_object_new_string(s->created));
    json_object_object_add(o, "owner", json_object_new_string(""));
    json_object_object_add(o, "annotations",
                           s->annotations ? json_object_get(s->annotations)
                                          : json_object_new_object());
    return o;
}

int oci_state_save(struct oci_state *s)
{
    json_object *o = oci_state_json(s);
    char tmp[PATH_MAX + 1200], path[PATH_MAX + 1200];
    const char *text;
    int fd, ok;

    /* What is ours beside the spec's fields: the recorded status (not the live one) and the
     * VMM's start time. */
    json_object_object_add(o, "status", json_object_new_string(status_names[s->status]));
    json_object_object_add(o, "pid", json_object_new_int((int)s->pid));
    json_object_object_add(o, "runtime", json_object_new_string("ember-oci"));
    json_object_object_add(o, "ember_pid_starttime", json_object_new_int64((int64_t)s->starttime));
    json_object_object_add(o, "ember_cgroup", json_object_new_string(s->cgroup));
    text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    oci_state_path(s, "state.json.tmp", tmp, sizeof(tmp));
    oci_state_path(s, "state.json", path, sizeof(path));
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ok = fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text) && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    json_object_put(o);
    if (!ok || rename(tmp, path) < 0)
        return oci_error("cannot write %s: %s", path, strerror(errno));
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

void oci_state_remove(struct oci_state *s)
{
    /* The jail's bind mounts lived in its own mount namespace: here all are plain files. */
    nftw(s->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    oci_state_close(s);
}

void oci_state_close(struct oci_state *s)
{
    if (s->lockfd >= 0)
        close(s->lockfd);
    if (s->dirfd >= 0)
        close(s->dirfd);
    s->lockfd = s->dirfd = -1;
    json_object_put(s->annotations);
    s->annotations = NULL;
}

void oci_note_oom(const struct oci_state *s, const char *bundle)
{
    char path[PATH_MAX + 1200], buf[256];
    ssize_t n;
    int fd;

    oci_state_path(s, "exit", path, sizeof(path));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    if (!strstr(buf, "\"oom_killed\":true"))
        return;
    snprintf(path, sizeof(path), "%s/oom", bundle);
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0)
        close(fd);
}
