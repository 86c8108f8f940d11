/* `features` (what ember-oci supports, runtime-spec features.md) and `spec` (a default
 * config.json to start from, like runc's). */
#include "exec.h"
#include "oci.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static json_object *strings(const char *const *v)
{
    json_object *a = json_object_new_array();

    for (; *v; v++)
        json_object_array_add(a, json_object_new_string(*v));
    return a;
}

int oci_cmd_features(int argc, char **argv)
{
    static const char *const hooks[] = {"prestart", "createRuntime", "poststart", "poststop", NULL};
    static const char *const opts[] = {"ro",         "rw",          "nosuid",        "suid",
                                       "nodev",      "dev",         "noexec",        "exec",
                                       "sync",       "async",       "dirsync",       "noatime",
                                       "atime",      "nodiratime",  "diratime",      "relatime",
                                       "norelatime", "strictatime", "nostrictatime", "bind",
                                       "rbind",      NULL};
    static const char *const ns[] = {"network", NULL};
    json_object *o = json_object_new_object(), *linux_ = json_object_new_object(),
                *cg = json_object_new_object(), *ann = json_object_new_object();
    const char *pos[1];
    int n;

    if (oci_parse_args(argc, argv, NULL, pos, 0, &n))
        return 1;
    json_object_object_add(o, "ociVersionMin", json_object_new_string("1.0.0"));
    json_object_object_add(o, "ociVersionMax", json_object_new_string(OCI_VERSION));
    json_object_object_add(o, "hooks", strings(hooks));
    json_object_object_add(o, "mountOptions", strings(opts));
    /* The VM is the boundary; only the network namespace is made or joined on the host. */
    json_object_object_add(linux_, "namespaces", strings(ns));
    json_object_object_add(cg, "v1", json_object_new_boolean(1));
    json_object_object_add(cg, "v2", json_object_new_boolean(1));
    json_object_object_add(cg, "systemd", json_object_new_boolean(0));
    json_object_object_add(linux_, "cgroup", cg);
    json_object_object_add(o, "linux", linux_);
    json_object_object_add(ann, "org.ember.runtime", json_object_new_string("ember-oci"));
    json_object_object_add(ann, "org.ember.isolation", json_object_new_string("microvm"));
    json_object_object_add(ann, "org.ember.images", json_object_new_string(exec_images_dir()));
    json_object_object_add(o, "annotations", ann);
    printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
    return 0;
}

static const char default_spec[] =
        "{\n"
        "  \"ociVersion\": \"" OCI_VERSION "\",\n"
        "  \"process\": {\n"
        "    \"terminal\": true,\n"
        "    \"user\": {\"uid\": 0, \"gid\": 0},\n"
        "    \"args\": [\"sh\"],\n"
        "    \"env\": [\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\", "
        "\"TERM=xterm\"],\n"
        "    \"cwd\": \"/\",\n"
        "    \"rlimits\": [{\"type\": \"RLIMIT_NOFILE\", \"hard\": 1024, \"soft\": 1024}]\n"
        "  },\n"
        "  \"root\": {\"path\": \"rootfs\", \"readonly\": true},\n"
        "  \"hostname\": \"ember\",\n"
        "  \"mounts\": [\n"
        "    {\"destination\": \"/proc\", \"type\": \"proc\", \"source\": \"proc\"},\n"
        "    {\"destination\": \"/dev\", \"type\": \"tmpfs\", \"source\": \"tmpfs\",\n"
        "     \"options\": [\"nosuid\", \"strictatime\", \"mode=755\", \"size=65536k\"]},\n"
        "    {\"destination\": \"/dev/pts\", \"type\": \"devpts\", \"source\": \"devpts\",\n"
        "     \"options\": [\"nosuid\", \"noexec\", \"newinstance\", \"ptmxmode=0666\", "
        "\"mode=0620\", \"gid=5\"]},\n"
        "    {\"destination\": \"/dev/shm\", \"type\": \"tmpfs\", \"source\": \"shm\",\n"
        "     \"options\": [\"nosuid\", \"noexec\", \"nodev\", \"mode=1777\", \"size=65536k\"]},\n"
        "    {\"destination\": \"/sys\", \"type\": \"sysfs\", \"source\": \"sysfs\",\n"
        "     \"options\": [\"nosuid\", \"noexec\", \"nodev\", \"ro\"]}\n"
        "  ],\n"
        "  \"linux\": {\"namespaces\": [{\"type\": \"pid\"}, {\"type\": \"network\"}, "
        "{\"type\": \"ipc\"}, {\"type\": \"uts\"}, {\"type\": \"mount\"}]}\n"
        "}\n";

int oci_cmd_spec(int argc, char **argv)
{
    const char *bundle = ".", *rootless = NULL, *pos[1];
    const struct oci_opt opts[] = {
            {"bundle", 'b', 1, &bundle}, {"rootless", 0, 0, &rootless}, {NULL, 0, 0, NULL}};
    char path[PATH_MAX + 16];
    int n, fd;

    if (oci_parse_args(argc, argv, opts, pos, 0, &n))
        return 1;
    snprintf(path, sizeof(path), "%s/config.json", bundle);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return oci_error(errno == EEXIST ? "%s exists already: remove it first"
                                         : "cannot create %s",
                         path),
               1;
    if (write(fd, default_spec, sizeof(default_spec) - 1) != (ssize_t)sizeof(default_spec) - 1) {
        close(fd);
        return oci_error("cannot write %s: %s", path, strerror(errno)), 1;
    }
    close(fd);
    return 0;
}
