/* config.json turned into the guest agent's spec (guest-images/init/proto.h): the process,
 * and the mounts with their options as MS_* flags. Bind-mounted files travel on a disk of
 * their own; a bind-mounted directory cannot reach a VM yet and is refused by name. */
#include "exec_spec.h"
#include "oci.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

static const struct {
    const char *name;
    unsigned long set, clear;
} flag_opts[] = {
        {"ro", MS_RDONLY, 0},
        {"rw", 0, MS_RDONLY},
        {"nosuid", MS_NOSUID, 0},
        {"suid", 0, MS_NOSUID},
        {"nodev", MS_NODEV, 0},
        {"dev", 0, MS_NODEV},
        {"noexec", MS_NOEXEC, 0},
        {"exec", 0, MS_NOEXEC},
        {"sync", MS_SYNCHRONOUS, 0},
        {"async", 0, MS_SYNCHRONOUS},
        {"dirsync", MS_DIRSYNC, 0},
        {"noatime", MS_NOATIME, 0},
        {"atime", 0, MS_NOATIME},
        {"nodiratime", MS_NODIRATIME, 0},
        {"diratime", 0, MS_NODIRATIME},
        {"relatime", MS_RELATIME, 0},
        {"norelatime", 0, MS_RELATIME},
        {"strictatime", MS_STRICTATIME, 0},
        {"nostrictatime", 0, MS_STRICTATIME},
        {"bind", MS_BIND, 0},
        {"rbind", MS_BIND | MS_REC, 0},
};

/* Options with no meaning in a VM of its own: propagation, and those runtimes add. */
static const char *const ignored_opts[] = {
        "private",     "rprivate",   "shared",      "rshared",  "slave",
        "rslave",      "unbindable", "runbindable", "defaults", "tmpcopyup",
        "notmpcopyup", "mand",       "nomand",      "z",        "Z",
};

/* Options into flags and the data string (the rest, comma-joined). */
static void translate(const struct oci_mount_cfg *m, unsigned long *flags, char *data, size_t len)
{
    size_t used = 0;

    *flags = 0;
    data[0] = '\0';
    for (int i = 0; i < m->nopts; i++) {
        const char *o = m->options[i];
        int known = 0;

        for (size_t k = 0; k < sizeof(flag_opts) / sizeof(flag_opts[0]) && !known; k++)
            if (!strcmp(o, flag_opts[k].name)) {
                *flags = (*flags & ~flag_opts[k].clear) | flag_opts[k].set;
                known = 1;
            }
        for (size_t k = 0; k < sizeof(ignored_opts) / sizeof(ignored_opts[0]) && !known; k++)
            known = !strcmp(o, ignored_opts[k]);
        if (!known && used + strlen(o) + 2 < len)
            used += (size_t)snprintf(data + used, len - used, "%s%s", used ? "," : "", o);
    }
}

static int is_bind(const struct oci_mount_cfg *m)
{
    if (!strcmp(m->type, "bind"))
        return 1;
    for (int i = 0; i < m->nopts; i++)
        if (!strcmp(m->options[i], "bind") || !strcmp(m->options[i], "rbind"))
            return 1;
    return 0;
}

static int add_mount(const struct oci_mount_cfg *m, struct exec_spec *spec, char **files,
                     int *nfiles, int max_files)
{
    static const char *const native[] = {"proc", "sysfs", "tmpfs", "devpts"};
    static const char *const optional[] = {"mqueue", "cgroup", "cgroup2"};
    unsigned long flags;
    char data[1024];
    struct stat st;

    translate(m, &flags, data, sizeof(data));
    if (is_bind(m)) {
        if (stat(m->source, &st) < 0)
            return oci_error("mount %s: source %s: %s", m->dest, m->source, strerror(errno));
        if (S_ISDIR(st.st_mode) && !strcmp(m->dest, "/dev/shm")) {
            /* The engine's shared-memory directory: the guest has its own. */
            exec_spec_add(spec, SPEC_MOUNT, m->dest);
            exec_spec_add(spec, SPEC_MNT_TYPE, "tmpfs");
            exec_spec_add(spec, SPEC_MNT_SRC, "shm");
            exec_spec_addf(spec, SPEC_MNT_FLAGS, "%lu", flags & ~(MS_BIND | MS_REC));
            exec_spec_add(spec, SPEC_MNT_DATA, "mode=1777,size=65536k");
            return 0;
        }
        if (S_ISDIR(st.st_mode))
            return oci_error("bind mount of the directory %s on %s is not supported by "
                             "ember-oci: a microVM cannot share host directories yet (volumes "
                             "need virtio-fs); only files are copied in",
                             m->source, m->dest);
        if (!S_ISREG(st.st_mode))
            return oci_error("bind mount of %s on %s: only regular files can be bind-mounted "
                             "into an ember-oci container",
                             m->source, m->dest);
        if (*nfiles == max_files)
            return oci_error("more than %d bind-mounted files", max_files);
        if (asprintf(&files[*nfiles], "%s:/%d", m->source, *nfiles) < 0)
            return oci_error("out of memory");
        exec_spec_add(spec, SPEC_MOUNT, m->dest);
        exec_spec_addf(spec, SPEC_MNT_FILE, "%d", (*nfiles)++);
        exec_spec_addf(spec, SPEC_MNT_FLAGS, "%lu", flags & ~MS_REC);
        return 0;
    }
    for (size_t i = 0;
         i < sizeof(native) / sizeof(native[0]) + sizeof(optional) / sizeof(optional[0]); i++) {
        int is_optional = i >= sizeof(native) / sizeof(native[0]);
        const char *type =
                is_optional ? optional[i - sizeof(native) / sizeof(native[0])] : native[i];

        if (strcmp(m->type, type) != 0)
            continue;
        exec_spec_add(spec, SPEC_MOUNT, m->dest);
        exec_spec_add(spec, SPEC_MNT_TYPE, m->type);
        exec_spec_add(spec, SPEC_MNT_SRC, m->source[0] ? m->source : m->type);
        exec_spec_addf(spec, SPEC_MNT_FLAGS, "%lu", flags);
        exec_spec_add(spec, SPEC_MNT_DATA, data);
        if (is_optional)
            exec_spec_add(spec, SPEC_MNT_OPT, "");
        return 0;
    }
    return oci_error("mount %s: type '%s' is not supported by ember-oci (proc, sysfs, tmpfs, "
                     "devpts, mqueue, cgroup, and bind-mounted files are)",
                     m->dest, m->type[0] ? m->type : "(none)");
}

int oci_build_spec(const struct oci_config *c, unsigned long long root_bytes,
                   struct exec_spec *spec, char **files, int *nfiles, int max_files)
{
    *nfiles = 0;
    exec_spec_init(spec);
    exec_spec_add(spec, SPEC_OCI, "");
    exec_spec_addf(spec, SPEC_ROOT, "%s %llu", c->readonly ? "ro" : "rw", root_bytes);
    exec_spec_add(spec, SPEC_ROOT_LATER, ""); /* mkfs runs while the guest boots (create.c) */
    for (int i = 0; i < c->nargs; i++)
        exec_spec_add(spec, SPEC_ARG, c->args[i]);
    for (int i = 0; i < c->nenv; i++)
        exec_spec_add(spec, SPEC_ENV, c->env[i]);
    exec_spec_add(spec, SPEC_WORKDIR, c->cwd);
    exec_spec_addf(spec, SPEC_UID, "%u", c->uid);
    exec_spec_addf(spec, SPEC_GID, "%u", c->gid);
    for (int i = 0; i < c->ngroups; i++)
        exec_spec_addf(spec, SPEC_GROUP, "%u", c->groups[i]);
    if (c->have_umask)
        exec_spec_addf(spec, SPEC_UMASK, "%u", c->umask);
    for (int i = 0; i < c->nrlimits; i++)
        exec_spec_addf(spec, SPEC_RLIMIT, "%d %lld %lld", c->rlimits[i].resource,
                       c->rlimits[i].soft, c->rlimits[i].hard);
    if (c->hostname)
        exec_spec_add(spec, SPEC_HOSTNAME, c->hostname);
    if (c->terminal)
        exec_spec_add(spec, SPEC_TERMINAL, "");
    if (c->terminal && c->rows && c->cols)
        exec_spec_addf(spec, SPEC_TTY_SIZE, "%u %u", c->rows, c->cols);
    for (int i = 0; i < c->nmounts; i++)
        if (add_mount(&c->mounts[i], spec, files, nfiles, max_files))
            return -1;
    return 0;
}
