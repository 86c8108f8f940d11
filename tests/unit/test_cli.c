/* Unit tests for `ember run` and `ember exec` flag parsing: sizes, ranges, guest arguments,
 * errors. */
#include "check.h"
#include "config.h"
#include "exec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

static int parse(struct vm_config *cfg, char **argv)
{
    int argc = 0;

    while (argv[argc])
        argc++;
    config_defaults(cfg);
    return cli_parse_run(argc, argv, cfg);
}

/* `ember exec --net VALUE -- true`: the parser's result, and the exec config it filled. */
static int parse_exec_net(const char *value, struct exec_config *x)
{
    char *argv[] = {"exec", "--net", (char *)value, "--", "true", NULL};

    memset(x, 0, sizeof(*x));
    config_defaults(&x->vm);
    return cli_parse_exec(5, argv, x);
}

/* exec's --net user takes run's options; the host's loopback stays out unless asked for. */
static void test_exec_net(void)
{
    struct exec_config x;

    CHECK_EQ(parse_exec_net("none", &x), 0);
    CHECK_EQ(x.net_user, 0);
    CHECK_EQ(parse_exec_net("user", &x), 0);
    CHECK_EQ(x.net_user, 1);
    CHECK_EQ(x.net.backend, NET_USER);
    CHECK_EQ(x.net.host_loopback, 0);
    CHECK_EQ(parse_exec_net("user,host-loopback=on", &x), 0);
    CHECK_EQ(x.net.host_loopback, 1);
    CHECK_EQ(parse_exec_net("tap=tap0", &x), -EINVAL);
    CHECK_EQ(parse_exec_net("username", &x), -EINVAL);
    CHECK_EQ(parse_exec_net("user,bogus", &x), -EINVAL);
}

int main(void)
{
    struct vm_config cfg;
    uint64_t v = 0;

    CHECK_EQ(parse_size("512M", &v), 0);
    CHECK_EQ(v, 512ULL << 20);
    CHECK_EQ(parse_size("2G", &v), 0);
    CHECK_EQ(v, 2ULL << 30);
    CHECK_EQ(parse_size("2GiB", &v), 0);
    CHECK_EQ(v, 2ULL << 30);
    CHECK_EQ(parse_size("1024", &v), 0);
    CHECK_EQ(v, 1024ULL << 20);
    CHECK_EQ(parse_size("64k", &v), 0);
    CHECK_EQ(v, 64ULL << 10);
    CHECK_EQ(parse_size("", &v), -EINVAL);
    CHECK_EQ(parse_size("-1G", &v), -EINVAL);
    CHECK_EQ(parse_size("12X", &v), -EINVAL);
    CHECK_EQ(parse_size("G", &v), -EINVAL);
    CHECK_EQ(parse_size("99999999999999999999", &v), -ERANGE);
    CHECK_EQ(parse_size("17179869184T", &v), -ERANGE);

    {
        char *a[] = {"run",          "--kernel", "k",  "--cpus", "4",      "--memory", "1G",
                     "--boot-timer", "--",       "sh", "-c",     "exit 3", NULL};
        CHECK_EQ(parse(&cfg, a), 0);
        CHECK(strcmp(cfg.kernel, "k") == 0);
        CHECK_EQ(cfg.cpus, 4);
        CHECK_EQ(cfg.memory, 1ULL << 30);
        CHECK_EQ(cfg.boot_timer, 1);
        CHECK_EQ(cfg.nr_init_args, 3);
        CHECK(strcmp(cfg.init_args[2], "exit 3") == 0);
    }
    {
        /* Options of the guest command after -- are not ember's. */
        char *a[] = {"run", "--kernel", "k", "--", "ls", "--cpus", NULL};
        CHECK_EQ(parse(&cfg, a), 0);
        CHECK_EQ(cfg.cpus, CONFIG_DEFAULT_CPUS);
        CHECK_EQ(cfg.nr_init_args, 2);
    }
    {
        char *a[] = {"run", "--kernel", "k", "--on-reboot", "restart", "--console", "none", NULL};
        CHECK_EQ(parse(&cfg, a), 0);
        CHECK_EQ(cfg.on_reboot, ON_REBOOT_RESTART);
        CHECK_EQ(cfg.console, CONSOLE_KIND_NONE);
    }
    {
        char *a1[] = {"run", "--kernel", "k", "--cpus", "0", NULL};
        char *a2[] = {"run", "--kernel", "k", "--cpus", "65", NULL};
        char *a3[] = {"run", "--kernel", "k", "--memory", "1M", NULL};
        char *a4[] = {"run", "--kernel", "k", "--memory", "lots", NULL};
        char *a5[] = {"run", "--cpus", "2", NULL};
        char *a6[] = {"run", "--kernel", "k", "--bogus", NULL};
        char *a7[] = {"run", "--kernel", NULL};
        char *a8[] = {"run", "--kernel", "k", "stray", NULL};
        char *a9[] = {"run", "--kernel", "k", "--console", "tty9", NULL};
        char *a10[] = {"run", "--kernel", "k", "--cpus", "2x", NULL};
        CHECK_EQ(parse(&cfg, a1), -EINVAL);
        CHECK_EQ(parse(&cfg, a2), -EINVAL);
        CHECK_EQ(parse(&cfg, a3), -EINVAL);
        CHECK_EQ(parse(&cfg, a4), -EINVAL);
        CHECK_EQ(parse(&cfg, a5), -EINVAL);
        CHECK_EQ(parse(&cfg, a6), -EINVAL);
        CHECK_EQ(parse(&cfg, a7), -EINVAL);
        CHECK_EQ(parse(&cfg, a8), -EINVAL);
        CHECK_EQ(parse(&cfg, a9), -EINVAL);
        CHECK_EQ(parse(&cfg, a10), -EINVAL);
    }
    {
        struct disk_config d;
        struct net_config n;

        CHECK_EQ(parse_disk("/img/a.raw", &d), 0);
        CHECK(strcmp(d.path, "/img/a.raw") == 0 && !d.readonly && !d.id[0]);
        CHECK_EQ(parse_disk("/img/a.raw,ro,id=root-disk", &d), 0);
        CHECK(strcmp(d.path, "/img/a.raw") == 0 && d.readonly && !strcmp(d.id, "root-disk"));
        CHECK_EQ(parse_disk("", &d), -EINVAL);
        CHECK_EQ(parse_disk("a,bogus", &d), -EINVAL);
        CHECK_EQ(parse_disk("a,id=123456789012345678901", &d), -EINVAL); /* 21 bytes */
        CHECK_EQ(parse_disk("a,id=", &d), -EINVAL);

        CHECK_EQ(parse_net("user", &n), 0);
        CHECK_EQ(n.backend, NET_USER);
        CHECK_EQ(n.host_loopback, 0); /* the guest does not reach the host's loopback */
        CHECK_EQ(parse_net("user,host-loopback=on", &n), 0);
        CHECK_EQ(n.host_loopback, 1);
        CHECK_EQ(parse_net("user,host-loopback=on,host-loopback=off", &n), 0);
        CHECK_EQ(n.host_loopback, 0);
        CHECK_EQ(parse_net("user,host-loopback=yes", &n), -EINVAL);
        CHECK_EQ(parse_net("tap=tap0,host-loopback=on", &n), -EINVAL);
        CHECK_EQ(parse_net("user,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=tcp::2222-:22", &n), 0);
        CHECK_EQ(n.nr_fwd, 2);
        CHECK_EQ(n.fwd[0].host_port, 8080);
        CHECK_EQ(n.fwd[0].guest_port, 80);
        CHECK_EQ(n.fwd[0].host_addr, htonl(0x7f000001));
        CHECK_EQ(n.fwd[1].host_addr, 0);
        CHECK_EQ(parse_net("tap=tap0,mac=52:54:00:12:34:56", &n), 0);
        CHECK_EQ(n.backend, NET_TAP);
        CHECK(strcmp(n.tap_name, "tap0") == 0 && n.mac_set && n.mac[5] == 0x56);
        CHECK_EQ(parse_net("tap-fd=7", &n), 0);
        CHECK_EQ(n.tap_fd, 7);
        CHECK_EQ(parse_net("tap=tap0,hostfwd=tcp::1-:2", &n), -EINVAL);
        CHECK_EQ(parse_net("user,mac=01:00:00:00:00:01", &n), -EINVAL); /* multicast */
        CHECK_EQ(parse_net("user,mac=zz", &n), -EINVAL);
        CHECK_EQ(parse_net("user,hostfwd=tcp:1.2.3:80-:80", &n), -EINVAL);
        CHECK_EQ(parse_net("user,hostfwd=tcp::0-:80", &n), -EINVAL);
        CHECK_EQ(parse_net("user,hostfwd=tcp::80-:70000", &n), -EINVAL);
        CHECK_EQ(parse_net("tap=", &n), -EINVAL);
        CHECK_EQ(parse_net("tap=averyveryverylongname", &n), -EINVAL);
        CHECK_EQ(parse_net("tap-fd=x", &n), -EINVAL);
        CHECK_EQ(parse_net("vde", &n), -EINVAL);
    }
    test_exec_net();
    return check_done("cli");
}
