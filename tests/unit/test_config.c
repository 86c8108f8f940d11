/* Unit tests for the JSON configuration (--config, `configure`): the flags' own parser, all or
 * nothing, unknown fields named, "args", lists, and query-config's round trip. */
#include "check.h"
#include "config.h"

#include <json-c/json.h>
#include <string.h>

static int apply(struct vm_config *cfg, const char *text, const char *const *allowed, char *err)
{
    json_object *doc = json_tokener_parse(text);
    int r = config_apply_json(cfg, doc, allowed, err, 256);

    json_object_put(doc);
    return r;
}

int main(void)
{
    static const char *const only_cpus[] = {"cpus", NULL};
    struct vm_config cfg;
    char err[256];

    config_defaults(&cfg);
    CHECK_EQ(apply(&cfg,
                   "{\"kernel\": \"k\", \"cpus\": 2, \"memory\": \"1G\", \"hugepages\": true,"
                   " \"console\": \"virtio\", \"disk\": [\"a.img,ro,id=root\", \"b.img\"],"
                   " \"net\": \"user,hostfwd=tcp::8080-:80,host-loopback=on\","
                   " \"args\": [\"sh\", \"-c\", \"x\"]}",
                   NULL, err),
             0);
    CHECK(strcmp(cfg.kernel, "k") == 0);
    CHECK_EQ(cfg.cpus, 2);
    CHECK_EQ(cfg.memory, 1ULL << 30);
    CHECK_EQ(cfg.hugepages, 1);
    CHECK_EQ(cfg.console, CONSOLE_KIND_VIRTIO);
    CHECK_EQ(cfg.nr_disks, 2);
    CHECK_EQ(cfg.disk[0].readonly, 1);
    CHECK(strcmp(cfg.disk[0].id, "root") == 0);
    CHECK_EQ(cfg.nr_nets, 1);
    CHECK_EQ(cfg.net[0].nr_fwd, 1);
    CHECK_EQ(cfg.net[0].host_loopback, 1);
    CHECK_EQ(cfg.nr_init_args, 3);
    CHECK(strcmp(cfg.init_args[2], "x") == 0);

    /* A number is MiB, like the flag; false clears a flag without a value. */
    CHECK_EQ(apply(&cfg, "{\"memory\": 512, \"hugepages\": false}", NULL, err), 0);
    CHECK_EQ(cfg.memory, 512ULL << 20);
    CHECK_EQ(cfg.hugepages, 0);
    CHECK_EQ(cfg.virtio_cmdline, 0); /* the DSDT alone describes the virtio devices */
    CHECK_EQ(apply(&cfg, "{\"virtio-cmdline\": true}", NULL, err), 0);
    CHECK_EQ(cfg.virtio_cmdline, 1);
    CHECK_EQ(apply(&cfg, "{\"virtio-cmdline\": false}", NULL, err), 0);
    CHECK_EQ(cfg.virtio_cmdline, 0);

    /* All or nothing, and the error names the field or flag. */
    CHECK(apply(&cfg, "{\"cpus\": 4, \"memory\": \"lots\"}", NULL, err) < 0);
    CHECK(strstr(err, "--memory") != NULL);
    CHECK_EQ(cfg.cpus, 2);
    CHECK(apply(&cfg, "{\"cpu\": 4}", NULL, err) < 0);
    CHECK(strstr(err, "unknown field 'cpu'") != NULL);
    CHECK(apply(&cfg, "{\"config\": \"x.json\"}", NULL, err) < 0); /* no recursion */
    CHECK(apply(&cfg, "{\"memory\": 2}", only_cpus, err) < 0);
    CHECK(strstr(err, "here") != NULL);
    CHECK(apply(&cfg, "{\"args\": [\"a\", 1]}", NULL, err) < 0);
    CHECK(apply(&cfg, "{\"kernel\": \"a\\u0000b\"}", NULL, err) < 0);
    CHECK(apply(&cfg, "{\"cpus\": 1.5}", NULL, err) < 0);
    CHECK(apply(&cfg, "[1]", NULL, err) < 0);
    CHECK_EQ(cfg.nr_disks, 2);

    /* An array is the whole list. */
    CHECK_EQ(apply(&cfg, "{\"disk\": [\"c.img\"]}", NULL, err), 0);
    CHECK_EQ(cfg.nr_disks, 1);
    CHECK(strcmp(cfg.disk[0].path, "c.img") == 0);

    /* query-config speaks the same schema: applying its output changes nothing. */
    {
        json_object *out = config_to_json(&cfg);
        struct vm_config again;

        config_defaults(&again);
        json_object_object_del(out, "initrd"); /* null: not set */
        json_object_object_del(out, "cmdline");
        CHECK_EQ(config_apply_json(&again, out, NULL, err, sizeof(err)), 0);
        CHECK_EQ(again.cpus, cfg.cpus);
        CHECK_EQ(again.memory, cfg.memory);
        CHECK_EQ(again.nr_disks, 1);
        CHECK_EQ(again.nr_nets, 1);
        CHECK_EQ(again.net[0].fwd[0].host_port, 8080);
        CHECK_EQ(again.net[0].host_loopback, 1);
        CHECK_EQ(again.nr_init_args, 3);
        json_object_put(out);
        config_free(&again);
    }
    config_free(&cfg);
    return check_done("config");
}
