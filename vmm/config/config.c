/* --config FILE and the control socket's `configure`: JSON documents whose keys are the long
 * flags of `ember run`, applied through the command line's own parser (one schema). */
#include "config.h"
#include "hostfile.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONFIG_FILE_MAX (1024 * 1024)
#define CONFIG_MAX_ARGS 256

/* Memory kept for the configuration: strings from JSON, the guest's argument vector. */
struct config_owned {
    struct config_owned *next;
    size_t len;
    char data[];
};

static void *keep(struct vm_config *cfg, const void *src, size_t len)
{
    struct config_owned *o = malloc(sizeof(*o) + len + 1);

    if (!o)
        return NULL;
    o->len = len + 1;
    if (src)
        memcpy(o->data, src, len);
    else
        memset(o->data, 0, len);
    o->data[len] = '\0';
    o->next = cfg->owned;
    cfg->owned = o;
    return o->data;
}

/* Free what was kept after `until` (the whole list when NULL). */
static void release(struct vm_config *cfg, struct config_owned *until)
{
    while (cfg->owned && cfg->owned != until) {
        struct config_owned *o = cfg->owned;

        cfg->owned = o->next;
        free(o);
    }
}

int config_check_file(const char *path, const char **why)
{
    struct host_file f;
    int err;

    if (!path)
        return 0;
    err = host_file_open(path, O_RDONLY, HOSTFILE_REGULAR, &f, why);
    if (!err)
        close(f.fd);
    return err;
}

void config_free(struct vm_config *cfg)
{
    release(cfg, NULL);
}

void config_revert(struct vm_config *cfg, const struct vm_config *before)
{
    release(cfg, before->owned);
    *cfg = *before;
}

/* Whether p is one of the strings (or the argument vector) the configuration points at. */
static int referenced(const struct vm_config *cfg, const void *p)
{
    const char *const strings[] = {cfg->kernel,
                                   cfg->initrd,
                                   cfg->cmdline,
                                   cfg->api_sock,
                                   cfg->jail.dir,
                                   cfg->jail.netns,
                                   cfg->jail.cgroup_parent,
                                   cfg->restore};

    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
        if (strings[i] == p)
            return 1;
    for (int i = 0; i < cfg->jail.nr_cgroup; i++)
        if (cfg->jail.cgroup[i] == p)
            return 1;
    if ((const void *)cfg->init_args == p)
        return 1;
    for (int i = 0; cfg->init_args && i < cfg->nr_init_args; i++)
        if (cfg->init_args[i] == p)
            return 1;
    return 0;
}

void config_compact(struct vm_config *cfg)
{
    struct config_owned **pp = &cfg->owned;

    while (*pp) {
        struct config_owned *o = *pp;

        if (referenced(cfg, o->data)) {
            pp = &o->next;
            continue;
        }
        *pp = o->next;
        free(o);
    }
}

size_t config_owned_bytes(const struct vm_config *cfg)
{
    size_t n = 0;

    for (const struct config_owned *o = cfg->owned; o; o = o->next)
        n += o->len;
    return n;
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* A JSON string without NUL bytes inside (the command line cannot carry those either). */
static const char *plain_string(json_object *v)
{
    const char *s = json_object_get_string(v);

    if ((size_t)json_object_get_string_len(v) != strlen(s))
        return NULL;
    return s;
}

/* Run one flag through the command-line parser; its error line becomes err. */
static int apply_flag(struct vm_config *cfg, const char *key, const char *value, char *err,
                      size_t n)
{
    const char *v = value ? keep(cfg, value, strlen(value)) : NULL;
    int r;

    if (value && !v)
        return fail(err, n, "out of memory for field '%s'", key);
    log_capture(err, n);
    r = cli_apply_flag(cfg, key, v);
    log_capture(NULL, 0);
    if (r && !err[0])
        fail(err, n, "field '%s': invalid value", key);
    return r ? -EINVAL : 0;
}

/* Flags without a value are booleans in JSON; false clears the ones ember knows. */
static int apply_bool(struct vm_config *cfg, const char *key, json_object *v, char *err, size_t n)
{
    int *field = NULL;

    if (!json_object_is_type(v, json_type_boolean))
        return fail(err, n, "field '%s' must be true or false", key);
    if (json_object_get_boolean(v))
        return apply_flag(cfg, key, NULL, err, n);
    if (strcmp(key, "hugepages") == 0)
        field = &cfg->hugepages;
    else if (strcmp(key, "no-default-cmdline") == 0)
        field = &cfg->no_default_cmdline;
    else if (strcmp(key, "no-rng") == 0)
        field = &cfg->no_rng;
    else if (strcmp(key, "virtio-cmdline") == 0)
        field = &cfg->virtio_cmdline;
    else if (strcmp(key, "boot-timer") == 0)
        field = &cfg->boot_timer;
    if (!field)
        return fail(err, n, "field '%s': false is not supported; leave the field out", key);
    *field = 0;
    return 0;
}

static int apply_value(struct vm_config *cfg, const char *key, json_object *v, char *err, size_t n)
{
    char num[32];
    const char *s;

    if (json_object_is_type(v, json_type_int)) {
        snprintf(num, sizeof(num), "%lld", (long long)json_object_get_int64(v));
        s = num;
    } else if (json_object_is_type(v, json_type_string)) {
        s = plain_string(v);
        if (!s)
            return fail(err, n, "field '%s' holds a NUL byte", key);
    } else {
        return fail(err, n, "field '%s' must be a string%s", key,
                    strcmp(key, "disk") == 0 || strcmp(key, "net") == 0 ? " or an array of strings"
                    : (strcmp(key, "cpus") == 0 || strcmp(key, "memory") == 0) ? " or a number"
                                                                               : "");
    }
    return apply_flag(cfg, key, s, err, n);
}

/* "args": the guest command, like the words after -- on the command line. */
static int apply_args(struct vm_config *cfg, json_object *v, char *err, size_t n)
{
    size_t len;
    char **argv;

    if (!json_object_is_type(v, json_type_array))
        return fail(err, n, "field 'args' must be an array of strings");
    len = json_object_array_length(v);
    if (len > CONFIG_MAX_ARGS)
        return fail(err, n, "field 'args': more than " EMBER_STR(CONFIG_MAX_ARGS) " words");
    argv = keep(cfg, NULL, (len + 1) * sizeof(char *));
    if (!argv)
        return fail(err, n, "out of memory for field 'args'");
    for (size_t i = 0; i < len; i++) {
        json_object *a = json_object_array_get_idx(v, i);
        const char *s = json_object_is_type(a, json_type_string) ? plain_string(a) : NULL;

        if (!s)
            return fail(err, n, "field 'args': every word must be a string without NUL bytes");
        argv[i] = keep(cfg, s, strlen(s));
        if (!argv[i])
            return fail(err, n, "out of memory for field 'args'");
    }
    cfg->init_args = argv;
    cfg->nr_init_args = (int)len;
    return 0;
}

static int allowed_key(const char *key, const char *const *allowed)
{
    if (!allowed)
        return 1;
    for (; *allowed; allowed++) {
        if (strcmp(*allowed, key) == 0)
            return 1;
    }
    return 0;
}

static int apply_key(struct vm_config *cfg, const char *key, json_object *v,
                     const char *const *allowed, char *err, size_t n)
{
    int kind = strcmp(key, "config") == 0 ? -1 : cli_flag_kind(key);

    if (strcmp(key, "args") == 0 && allowed_key(key, allowed))
        return apply_args(cfg, v, err, n);
    if (kind < 0 || !allowed_key(key, allowed))
        return fail(err, n,
                    "unknown field '%.64s'%s; fields are the long flags of ember run (\"cpus\", "
                    "\"memory\", \"kernel\", \"disk\", ...) and \"args\"",
                    key, allowed ? " here" : "");
    if (kind == 0)
        return apply_bool(cfg, key, v, err, n);
    if (json_object_is_type(v, json_type_array) &&
        (strcmp(key, "disk") == 0 || strcmp(key, "net") == 0)) {
        /* An array is the whole list; a single string adds one, like the flag. */
        if (strcmp(key, "disk") == 0)
            cfg->nr_disks = 0;
        else
            cfg->nr_nets = 0;
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            int r = apply_value(cfg, key, json_object_array_get_idx(v, i), err, n);

            if (r)
                return r;
        }
        return 0;
    }
    return apply_value(cfg, key, v, err, n);
}

int config_apply_json(struct vm_config *cfg, struct json_object *doc, const char *const *allowed,
                      char *err, size_t errlen)
{
    struct vm_config tmp = *cfg;
    int r = 0;

    err[0] = '\0';
    if (!json_object_is_type(doc, json_type_object))
        return fail(err, errlen, "the configuration must be a JSON object");
    json_object_object_foreach(doc, key, val)
    {
        r = apply_key(&tmp, key, val, allowed, err, errlen);
        if (r)
            break;
    }
    if (r) {
        release(&tmp, cfg->owned);
        return r;
    }
    *cfg = tmp;
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    struct host_file f;
    const char *why;
    char *buf = NULL;
    size_t got = 0;

    if (host_file_open(path, O_RDONLY, HOSTFILE_REGULAR, &f, &why)) {
        log_err("--config %s: %s", path, why);
        return NULL;
    }
    if (f.size > CONFIG_FILE_MAX) {
        log_err("--config %s: larger than %d bytes", path, CONFIG_FILE_MAX);
        goto out;
    }
    buf = malloc((size_t)f.size + 1);
    if (!buf) {
        log_err("--config %s: out of memory", path);
        goto out;
    }
    while (got < f.size) {
        ssize_t r = read(f.fd, buf + got, (size_t)f.size - got);

        if (r <= 0) {
            log_err("--config %s: read: %s", path, r < 0 ? strerror(errno) : "file shrank");
            free(buf);
            buf = NULL;
            goto out;
        }
        got += (size_t)r;
    }
    buf[got] = '\0';
    *len = got;
out:
    close(f.fd);
    return buf;
}

int config_apply_text(struct vm_config *cfg, const char *text, size_t len,
                      const char *const *allowed, char *err, size_t errlen)
{
    json_tokener *tok = json_tokener_new_ex(32);
    json_object *doc = NULL;
    size_t end;
    int r = -EINVAL;

    if (!tok || len > INT32_MAX) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    doc = json_tokener_parse_ex(tok, text, (int)len);
    if (json_tokener_get_error(tok) != json_tokener_success) {
        enum json_tokener_error e = json_tokener_get_error(tok);

        snprintf(err, errlen, "not valid JSON at byte %zu: %s", json_tokener_get_parse_end(tok),
                 e == json_tokener_continue ? "unexpected end of file"
                                            : json_tokener_error_desc(e));
        goto out;
    }
    end = json_tokener_get_parse_end(tok);
    while (end < len && strchr(" \t\r\n", text[end]) && text[end])
        end++;
    if (end < len) {
        snprintf(err, errlen, "text after the JSON document at byte %zu",
                 json_tokener_get_parse_end(tok));
        goto out;
    }
    r = config_apply_json(cfg, doc, allowed, err, errlen);
out:
    json_object_put(doc);
    if (tok)
        json_tokener_free(tok);
    return r;
}

int config_load_file(struct vm_config *cfg, const char *path)
{
    char err[512];
    size_t len = 0;
    char *text = read_file(path, &len);
    int r = -EINVAL;

    if (!text)
        return r;
    r = config_apply_text(cfg, text, len, NULL, err, sizeof(err));
    if (r)
        log_err("--config %s: %s", path, err);
    free(text);
    return r;
}

/* ---- the configuration back as JSON (query-config) ---- */

static json_object *disk_json(const struct disk_config *d)
{
    char buf[sizeof(d->path) + 40];

    snprintf(buf, sizeof(buf), "%s%s%s%s", d->path, d->readonly ? ",ro" : "",
             d->id[0] ? ",id=" : "", d->id);
    return json_object_new_string(buf);
}

static json_object *net_json(const struct net_config *nc)
{
    char buf[1024];
    size_t used;

    if (nc->backend == NET_TAP)
        snprintf(buf, sizeof(buf), "tap=%s", nc->tap_name);
    else if (nc->backend == NET_TAP_FD)
        snprintf(buf, sizeof(buf), "tap-fd=%d", nc->tap_fd);
    else
        snprintf(buf, sizeof(buf), "user");
    for (int i = 0; i < nc->nr_fwd; i++) {
        const struct hostfwd *f = &nc->fwd[i];
        char addr[INET_ADDRSTRLEN] = "";
        struct in_addr a = {.s_addr = f->host_addr};

        if (f->host_addr)
            inet_ntop(AF_INET, &a, addr, sizeof(addr));
        used = strlen(buf);
        snprintf(buf + used, sizeof(buf) - used, ",hostfwd=%s:%s:%u-:%u", f->udp ? "udp" : "tcp",
                 addr, f->host_port, f->guest_port);
    }
    if (nc->host_loopback) {
        used = strlen(buf);
        snprintf(buf + used, sizeof(buf) - used, ",host-loopback=on");
    }
    if (nc->mac_set) {
        used = strlen(buf);
        snprintf(buf + used, sizeof(buf) - used, ",mac=%02x:%02x:%02x:%02x:%02x:%02x", nc->mac[0],
                 nc->mac[1], nc->mac[2], nc->mac[3], nc->mac[4], nc->mac[5]);
    }
    return json_object_new_string(buf);
}

static void add_str(json_object *o, const char *key, const char *v)
{
    json_object_object_add(o, key, v ? json_object_new_string(v) : NULL);
}

json_object *config_to_json(const struct vm_config *cfg)
{
    static const char *const consoles[] = {"serial", "virtio", "none"};
    json_object *o = json_object_new_object(), *a;
    char mem[32];

    add_str(o, "kernel", cfg->kernel);
    add_str(o, "initrd", cfg->initrd);
    add_str(o, "cmdline", cfg->cmdline);
    json_object_object_add(o, "no-default-cmdline",
                           json_object_new_boolean(cfg->no_default_cmdline));
    json_object_object_add(o, "cpus", json_object_new_int(cfg->cpus));
    if (cfg->memory % (1ULL << 20) == 0)
        snprintf(mem, sizeof(mem), "%lluM", (unsigned long long)(cfg->memory >> 20));
    else
        snprintf(mem, sizeof(mem), "%lluK", (unsigned long long)(cfg->memory >> 10));
    add_str(o, "memory", mem);
    json_object_object_add(o, "hugepages", json_object_new_boolean(cfg->hugepages));
    add_str(o, "console", consoles[cfg->console]);
    a = json_object_new_array();
    for (int i = 0; i < cfg->nr_disks; i++)
        json_object_array_add(a, disk_json(&cfg->disk[i]));
    json_object_object_add(o, "disk", a);
    a = json_object_new_array();
    for (int i = 0; i < cfg->nr_nets; i++)
        json_object_array_add(a, net_json(&cfg->net[i]));
    json_object_object_add(o, "net", a);
    json_object_object_add(o, "no-rng", json_object_new_boolean(cfg->no_rng));
    json_object_object_add(o, "virtio-cmdline", json_object_new_boolean(cfg->virtio_cmdline));
    json_object_object_add(o, "boot-timer", json_object_new_boolean(cfg->boot_timer));
    add_str(o, "on-reboot", cfg->on_reboot == ON_REBOOT_RESTART ? "restart" : "exit");
    a = json_object_new_array();
    for (int i = 0; i < cfg->nr_init_args; i++)
        json_object_array_add(a, json_object_new_string(cfg->init_args[i]));
    json_object_object_add(o, "args", a);
    return o;
}
