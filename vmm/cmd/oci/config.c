/* The bundle's config.json: the fields ember-oci honours, each checked and named in errors. */
#include "oci.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_MAX   (4 << 20)
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static json_object *get(json_object *o, const char *key)
{
    json_object *v = NULL;

    return o && json_object_object_get_ex(o, key, &v) && !json_object_is_type(v, json_type_null)
                   ? v
                   : NULL;
}

static int want(json_object *v, json_type t, const char *field)
{
    static const char *const names[] = {"null",   "boolean", "number", "number",
                                        "object", "array",   "string"};

    if (!v || json_object_is_type(v, t) ||
        (t == json_type_double && json_object_is_type(v, json_type_int)))
        return 0;
    return oci_error("config.json: %s must be a%s %s", field, t == json_type_array ? "n" : "",
                     names[t]);
}

static const char *str(json_object *o, const char *key, const char *field, int *bad)
{
    json_object *v = get(o, key);

    if (want(v, json_type_string, field))
        *bad = 1;
    return v && !*bad ? json_object_get_string(v) : NULL;
}

/* A string array into out (at most max); -1 after an error naming field. */
static int strings(json_object *a, const char **out, int max, int *n, const char *field)
{
    *n = 0;
    if (!a)
        return 0;
    if (want(a, json_type_array, field))
        return -1;
    if ((int)json_object_array_length(a) > max)
        return oci_error("config.json: %s has more than %d entries", field, max);
    for (size_t i = 0; i < json_object_array_length(a); i++) {
        json_object *e = json_object_array_get_idx(a, i);

        if (!json_object_is_type(e, json_type_string))
            return oci_error("config.json: %s[%zu] must be a string", field, i);
        out[(*n)++] = json_object_get_string(e);
    }
    return 0;
}

static int uint_field(json_object *o, const char *key, const char *field, unsigned *out)
{
    json_object *v = get(o, key);
    int64_t x;

    if (!v)
        return 0;
    if (!json_object_is_type(v, json_type_int) || (x = json_object_get_int64(v)) < 0 ||
        x > 0xffffffffLL)
        return oci_error("config.json: %s must be a number from 0 to 4294967295", field);
    *out = (unsigned)x;
    return 1;
}

static const struct {
    const char *name;
    int resource;
} rlimit_names[] = {
        {"RLIMIT_AS", RLIMIT_AS},
        {"RLIMIT_CORE", RLIMIT_CORE},
        {"RLIMIT_CPU", RLIMIT_CPU},
        {"RLIMIT_DATA", RLIMIT_DATA},
        {"RLIMIT_FSIZE", RLIMIT_FSIZE},
        {"RLIMIT_LOCKS", RLIMIT_LOCKS},
        {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},
        {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE},
        {"RLIMIT_NICE", RLIMIT_NICE},
        {"RLIMIT_NOFILE", RLIMIT_NOFILE},
        {"RLIMIT_NPROC", RLIMIT_NPROC},
        {"RLIMIT_RSS", RLIMIT_RSS},
        {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},
        {"RLIMIT_RTTIME", RLIMIT_RTTIME},
        {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
        {"RLIMIT_STACK", RLIMIT_STACK},
};

static long long limit_value(json_object *v)
{
    /* JSON numbers up to 2^64-1 ("unlimited" is often written as 18446744073709551615). */
    uint64_t u = json_object_get_uint64(v);

    return u >= (uint64_t)RLIM_INFINITY || u > (uint64_t)INT64_MAX ? -1 : (long long)u;
}

static int process(struct oci_config *c, json_object *p)
{
    json_object *user = get(p, "user"), *size = get(p, "consoleSize"), *rl = get(p, "rlimits");
    json_object *v;
    int bad = 0, n;

    if (!p)
        return oci_error("config.json: process is missing (the workload to run)");
    if (want(p, json_type_object, "process"))
        return -1;
    v = get(p, "terminal");
    if (want(v, json_type_boolean, "process.terminal"))
        return -1;
    c->terminal = v && json_object_get_boolean(v);
    if (size && !want(size, json_type_object, "process.consoleSize")) {
        uint_field(size, "height", "process.consoleSize.height", &c->rows);
        uint_field(size, "width", "process.consoleSize.width", &c->cols);
    }
    c->args = calloc(1024, sizeof(*c->args));
    c->env = calloc(4096, sizeof(*c->env));
    if (!c->args || !c->env)
        return oci_error("out of memory");
    if (strings(get(p, "args"), c->args, 1024, &c->nargs, "process.args") ||
        strings(get(p, "env"), c->env, 4096, &c->nenv, "process.env"))
        return -1;
    if (c->nargs == 0 || !c->args[0][0])
        return oci_error("config.json: process.args must name the program to run");
    c->cwd = str(p, "cwd", "process.cwd", &bad);
    if (bad)
        return -1;
    if (!c->cwd || c->cwd[0] != '/')
        return oci_error("config.json: process.cwd must be an absolute path");
    if (user) {
        if (want(user, json_type_object, "process.user") ||
            uint_field(user, "uid", "process.user.uid", &c->uid) < 0 ||
            uint_field(user, "gid", "process.user.gid", &c->gid) < 0)
            return -1;
        n = uint_field(user, "umask", "process.user.umask", &c->umask);
        if (n < 0)
            return -1;
        c->have_umask = n;
        v = get(user, "additionalGids");
        if (v && (want(v, json_type_array, "process.user.additionalGids") ||
                  json_object_array_length(v) > 64))
            return oci_error("config.json: process.user.additionalGids: at most 64");
        for (size_t i = 0; v && i < json_object_array_length(v); i++) {
            json_object *g = json_object_array_get_idx(v, i);

            if (!json_object_is_type(g, json_type_int) || json_object_get_int64(g) < 0)
                return oci_error("config.json: process.user.additionalGids[%zu] must be a gid", i);
            c->groups[c->ngroups++] = (unsigned)json_object_get_int64(g);
        }
        if (get(user, "username"))
            return oci_error("config.json: process.user.username is Windows-only");
    }
    if (rl && want(rl, json_type_array, "process.rlimits"))
        return -1;
    for (size_t i = 0; rl && i < json_object_array_length(rl); i++) {
        json_object *r = json_object_array_get_idx(rl, i), *soft = get(r, "soft"),
                    *hard = get(r, "hard");
        const char *type = json_object_is_type(r, json_type_object)
                                   ? str(r, "type", "process.rlimits[].type", &bad)
                                   : NULL;
        int res = -1;

        for (size_t k = 0; type && k < sizeof(rlimit_names) / sizeof(rlimit_names[0]); k++)
            if (!strcmp(type, rlimit_names[k].name))
                res = rlimit_names[k].resource;
        if (res < 0 || !soft || !hard || !json_object_is_type(soft, json_type_int) ||
            !json_object_is_type(hard, json_type_int))
            return oci_error("config.json: process.rlimits[%zu] needs a known type and numeric "
                             "soft and hard",
                             i);
        if (c->nrlimits == 32)
            return oci_error("config.json: process.rlimits: at most 32");
        c->rlimits[c->nrlimits].resource = res;
        c->rlimits[c->nrlimits].soft = limit_value(soft);
        c->rlimits[c->nrlimits].hard = limit_value(hard);
        c->nrlimits++;
    }
    return 0;
}

static int mounts(struct oci_config *c, json_object *a)
{
    if (!a)
        return 0;
    if (want(a, json_type_array, "mounts"))
        return -1;
    c->nmounts = (int)json_object_array_length(a);
    if (c->nmounts > 128)
        return oci_error("config.json: mounts: at most 128");
    c->mounts = calloc((size_t)c->nmounts + 1, sizeof(*c->mounts));
    if (!c->mounts)
        return oci_error("out of memory");
    for (int i = 0; i < c->nmounts; i++) {
        json_object *m = json_object_array_get_idx(a, (size_t)i);
        struct oci_mount_cfg *mc = &c->mounts[i];
        char field[64];
        int bad = 0;

        snprintf(field, sizeof(field), "mounts[%d]", i);
        if (want(m, json_type_object, field))
            return -1;
        mc->dest = str(m, "destination", "mounts[].destination", &bad);
        mc->type = str(m, "type", "mounts[].type", &bad);
        mc->source = str(m, "source", "mounts[].source", &bad);
        if (bad)
            return -1;
        if (!mc->dest || mc->dest[0] != '/')
            return oci_error("config.json: %s.destination must be an absolute path", field);
        if (!mc->type)
            mc->type = "";
        if (!mc->source)
            mc->source = "";
        snprintf(field, sizeof(field), "mounts[%d].options", i);
        if (strings(get(m, "options"), mc->options, 32, &mc->nopts, field))
            return -1;
    }
    return 0;
}

static int hooks(struct oci_config *c, json_object *h)
{
    static const char *const kinds[HOOK_KINDS] = {"prestart", "createRuntime", "poststart",
                                                  "poststop"};

    if (!h)
        return 0;
    if (want(h, json_type_object, "hooks"))
        return -1;
    for (int k = 0; k < HOOK_KINDS; k++) {
        json_object *a = get(h, kinds[k]);
        char field[64];

        snprintf(field, sizeof(field), "hooks.%s", kinds[k]);
        if (!a)
            continue;
        if (want(a, json_type_array, field))
            return -1;
        if (json_object_array_length(a) > OCI_MAX_HOOKS)
            return oci_error("config.json: %s: at most %d hooks", field, OCI_MAX_HOOKS);
        for (size_t i = 0; i < json_object_array_length(a); i++) {
            json_object *e = json_object_array_get_idx(a, i), *t;
            struct oci_hook *hk = &c->hooks[k][c->nhooks[k]++];
            int bad = 0;

            if (want(e, json_type_object, field))
                return -1;
            hk->path = str(e, "path", "hooks[].path", &bad);
            if (bad || !hk->path || hk->path[0] != '/')
                return oci_error("config.json: %s[%zu].path must be an absolute path", field, i);
            if (strings(get(e, "args"), hk->args, 63, &hk->nargs, "hooks[].args") ||
                strings(get(e, "env"), hk->env, 63, &hk->nenv, "hooks[].env"))
                return -1;
            t = get(e, "timeout");
            if (t && (!json_object_is_type(t, json_type_int) || json_object_get_int(t) < 1))
                return oci_error("config.json: %s[%zu].timeout must be a positive number", field,
                                 i);
            hk->timeout = t ? json_object_get_int(t) : 0;
        }
    }
    return 0;
}

static int linux_section(struct oci_config *c, json_object *l)
{
    json_object *res = get(l, "resources"), *mem = get(res, "memory"), *cpu = get(res, "cpu");
    json_object *ns = get(l, "namespaces"), *v;
    int bad = 0;

    c->mem_limit = -1;
    if (!l)
        return 0;
    if (want(l, json_type_object, "linux"))
        return -1;
    c->cgroups_path = str(l, "cgroupsPath", "linux.cgroupsPath", &bad);
    if ((v = get(mem, "limit"))) {
        if (!json_object_is_type(v, json_type_int))
            return oci_error("config.json: linux.resources.memory.limit must be a number");
        c->mem_limit = json_object_get_int64(v) > 0 ? json_object_get_int64(v) : -1;
    }
    if ((v = get(cpu, "quota")) && json_object_is_type(v, json_type_int))
        c->cpu_quota = json_object_get_int64(v);
    if ((v = get(cpu, "period")) && json_object_is_type(v, json_type_int))
        c->cpu_period = json_object_get_int64(v);
    if (cpu)
        c->cpuset_cpus = str(cpu, "cpus", "linux.resources.cpu.cpus", &bad);
    if (bad || (ns && want(ns, json_type_array, "linux.namespaces")))
        return -1;
    for (size_t i = 0; ns && i < json_object_array_length(ns); i++) {
        json_object *e = json_object_array_get_idx(ns, i);
        const char *type = str(e, "type", "linux.namespaces[].type", &bad);
        const char *path = str(e, "path", "linux.namespaces[].path", &bad);

        if (bad)
            return -1;
        if (type && !strcmp(type, "network")) {
            c->netns_path = path;
            c->new_netns = !path;
        }
        /* The VM is the container's pid, mount, ipc, uts and user boundary: those are not
         * needed on the host. */
    }
    return 0;
}

static int read_config(const char *path, char **text, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    ssize_t n;

    if (fd < 0)
        return oci_error("cannot read %s: %s", path, strerror(errno));
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > CONFIG_MAX) {
        close(fd);
        return oci_error("%s: not a regular file of at most %d bytes", path, CONFIG_MAX);
    }
    *text = malloc((size_t)st.st_size + 1);
    n = *text ? read(fd, *text, (size_t)st.st_size) : -1;
    close(fd);
    if (n != st.st_size) {
        free(*text);
        return oci_error("cannot read %s", path);
    }
    (*text)[n] = '\0';
    *len = (size_t)n;
    return 0;
}

int oci_config_load(const char *bundle, struct oci_config *c)
{
    char path[PATH_MAX + 16], *text = NULL;
    json_object *doc, *root;
    json_tokener *tok;
    size_t len = 0, end;
    int bad = 0;
    const char *rp;

    memset(c, 0, sizeof(*c));
    c->mem_limit = -1;
    if (!realpath(bundle, c->bundle))
        return oci_error("bundle %s: %s", bundle, strerror(errno));
    snprintf(path, sizeof(path), "%s/config.json", c->bundle);
    if (read_config(path, &text, &len))
        return -1;
    tok = json_tokener_new_ex(64);
    doc = tok ? json_tokener_parse_ex(tok, text, (int)len) : NULL;
    end = tok ? json_tokener_get_parse_end(tok) : 0;
    if (!doc || json_tokener_get_error(tok) != json_tokener_success ||
        text[end + strspn(text + end, " \t\r\n")] != '\0') {
        if (tok)
            json_tokener_free(tok);
        json_object_put(doc);
        free(text);
        return oci_error("%s: not valid JSON (at byte %zu)", path, end);
    }
    json_tokener_free(tok);
    free(text);
    c->doc = doc;
    if (want(doc, json_type_object, "the document"))
        return -1;
    root = get(doc, "root");
    if (!root || want(root, json_type_object, "root"))
        return root ? -1
                    : oci_error("config.json: root is missing (the container's root filesystem)");
    rp = str(root, "path", "root.path", &bad);
    if (bad || !rp || !*rp)
        return bad ? -1 : oci_error("config.json: root.path is missing");
    if (rp[0] == '/')
        snprintf(path, sizeof(path), "%s", rp);
    else
        snprintf(path, sizeof(path), "%s/%s", c->bundle, rp);
    if (!realpath(path, c->rootfs))
        return oci_error("root.path %s: %s", path, strerror(errno));
    c->readonly = get(root, "readonly") && json_object_get_boolean(get(root, "readonly"));
    c->hostname = str(doc, "hostname", "hostname", &bad);
    if (bad || process(c, get(doc, "process")) || mounts(c, get(doc, "mounts")) ||
        hooks(c, get(doc, "hooks")) || linux_section(c, get(doc, "linux")))
        return -1;
    return 0;
}

void oci_config_free(struct oci_config *c)
{
    json_object_put(c->doc);
    free(c->args);
    free(c->env);
    free(c->mounts);
    c->doc = NULL;
    c->args = c->env = NULL;
    c->mounts = NULL;
}

const char *oci_config_path(const struct oci_config *c)
{
    for (int i = 0; i < c->nenv; i++)
        if (!strncmp(c->env[i], "PATH=", 5))
            return c->env[i] + 5;
    return DEFAULT_PATH;
}
