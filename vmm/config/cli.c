/* `ember run` command-line parsing into a vm_config, with one clear error per bad value. */
#include "config.h"
#include "arch.h"
#include "cli_sandbox.h"
#include "cmdline.h"
#include "log.h"
#include "vm.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void config_defaults(struct vm_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->cpus = CONFIG_DEFAULT_CPUS;
    cfg->memory = CONFIG_DEFAULT_MEMORY;
    cfg->console = CONSOLE_KIND_SERIAL;
    cfg->on_reboot = ON_REBOOT_EXIT;
}

int parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    unsigned shift = 20; /* a bare number is MiB */

    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s)
        return errno == ERANGE ? -ERANGE : -EINVAL;
    switch (*end) {
    case '\0':
        break;
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    case 't':
    case 'T':
        shift = 40;
        end++;
        break;
    case 'b':
    case 'B':
        shift = 0;
        end++;
        break;
    default:
        return -EINVAL;
    }
    if (*end == 'i' && shift)
        end++;
    if ((*end == 'B' || *end == 'b') && shift)
        end++;
    if (*end)
        return -EINVAL;
    if (v > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = (uint64_t)v << shift;
    return 0;
}

static int parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

void cli_usage_run(void)
{
    printf("Usage: ember run --kernel PATH [options] [-- CMD ARGS...]\n"
           "\n"
           "Boot a Linux kernel in a microVM. Arguments after -- go to the guest's init\n"
           "(ember's guest images run them as a command and report its exit status).\n"
           "\n"
           "  --kernel PATH          %s\n"
           "  --initrd PATH          initramfs / initrd image\n"
           "  --cmdline STR          kernel command line, appended to ember's default\n"
           "  --no-default-cmdline   use --cmdline alone, without the default\n"
           "  --cpus N               vCPUs, 1..%d (default %d)\n"
           "  --memory SIZE          guest RAM: 512M, 2G, or MiB (default %lluM)\n"
           "  --hugepages            back guest RAM with huge pages\n"
           "  --console serial|virtio|none\n"
           "                         guest console through stdin/stdout: ttyS0 (default),\n"
           "                         hvc0 (virtio-console, faster), or none\n"
           "  --disk PATH[,ro][,id=NAME]\n"
           "                         virtio-blk disk (raw file or block device); repeatable;\n"
           "                         the first is /dev/vda (boot from it: --cmdline "
           "root=/dev/vda)\n"
           "  --net user[,hostfwd=tcp:[ADDR]:PORT-:GPORT...][,host-loopback=on][,mac=MAC]\n"
           "  --net tap=NAME[,mac=MAC] | tap-fd=N[,mac=MAC]\n"
           "                         virtio-net: user networking (libslirp, no privileges) or a\n"
           "                         TAP device (opened by ember, or passed in as fd N); with\n"
           "                         host-loopback=on the guest reaches the host's 127.0.0.1 as\n"
           "                         10.0.2.2 (off by default: the guest is not trusted)\n"
           "  --no-rng               no virtio-rng entropy device\n"
           "  --virtio-cmdline       also describe the virtio devices on the kernel command\n"
           "                         line (virtio_mmio.device=), for kernels without ACPI\n"
           "  --boot-timer           print the time from ember's start to guest userspace\n"
           "  --on-reboot exit|restart\n"
           "                         when the guest reboots: exit with code 120 (default),\n"
           "                         or boot it again\n"
           "  --api-sock PATH        control socket (QMP, docs/api.md); without --kernel, wait\n"
           "                         there for the configuration and a `cont` to boot\n"
           "  --config FILE          these flags as one JSON document, e.g. {\"cpus\": 2,\n"
           "                         \"disk\": [\"a.img,ro\"], \"args\": [\"sh\"]}; later flags "
           "win\n"
           "  --restore DIR          start from a snapshot (snapshot-save on the control\n"
           "                         socket) instead of booting: the machine is the saved one;\n"
           "                         --disk and --net, if given, replace its disks and\n"
           "                         networks one for one (fresh slirp, new MAC by default)\n"
           "  -h, --help             this help\n"
           "\n"
           "On a terminal, Ctrl-a x quits and Ctrl-a Ctrl-a sends Ctrl-a.\n"
           "Default kernel command line: %s\n"
           "Exit codes: see README.md (0 guest powered off, its exit status when it set one,\n"
           "120 reset, 121 panic, 122 guest crash, 123 forbidden system call, 125 ember error,\n"
           "126 usage, 128+n signal).\n",
           arch_map.kernel_formats, VM_MAX_CPUS, CONFIG_DEFAULT_CPUS,
           (unsigned long long)(CONFIG_DEFAULT_MEMORY >> 20), cmdline_default(CONSOLE_KIND_SERIAL));
    cli_usage_sandbox();
}

enum {
    OPT_KERNEL = 256,
    OPT_INITRD,
    OPT_CMDLINE,
    OPT_NO_DEFAULT_CMDLINE,
    OPT_CPUS,
    OPT_MEMORY,
    OPT_HUGEPAGES,
    OPT_CONSOLE,
    OPT_BOOT_TIMER,
    OPT_ON_REBOOT,
    OPT_DISK,
    OPT_NET,
    OPT_NO_RNG,
    OPT_VIRTIO_CMDLINE,
    OPT_API_SOCK,
    OPT_CONFIG,
    OPT_RESTORE,
};

static const struct option run_options[] = {
        {"kernel", required_argument, NULL, OPT_KERNEL},
        {"initrd", required_argument, NULL, OPT_INITRD},
        {"cmdline", required_argument, NULL, OPT_CMDLINE},
        {"no-default-cmdline", no_argument, NULL, OPT_NO_DEFAULT_CMDLINE},
        {"cpus", required_argument, NULL, OPT_CPUS},
        {"memory", required_argument, NULL, OPT_MEMORY},
        {"hugepages", no_argument, NULL, OPT_HUGEPAGES},
        {"console", required_argument, NULL, OPT_CONSOLE},
        {"boot-timer", no_argument, NULL, OPT_BOOT_TIMER},
        {"on-reboot", required_argument, NULL, OPT_ON_REBOOT},
        {"disk", required_argument, NULL, OPT_DISK},
        {"net", required_argument, NULL, OPT_NET},
        {"no-rng", no_argument, NULL, OPT_NO_RNG},
        {"virtio-cmdline", no_argument, NULL, OPT_VIRTIO_CMDLINE},
        {"api-sock", required_argument, NULL, OPT_API_SOCK},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"restore", required_argument, NULL, OPT_RESTORE},
        CLI_SANDBOX_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
};

static int bad(const char *flag, const char *value, const char *expect)
{
    log_err("%s: '%s' is not valid; expected %s (see --help)", flag, value, expect);
    return -EINVAL;
}

static int parse_one(int opt, const char *arg, struct vm_config *cfg)
{
    long n;
    int err;

    if (opt >= OPT_SANDBOX_FIRST && opt <= OPT_SANDBOX_LAST)
        return cli_sandbox_option(opt, arg, cfg);
    if (opt >= OPT_KERNEL && opt <= OPT_RESTORE)
        cfg->given |= 1ULL << (opt - OPT_KERNEL);
    switch (opt) {
    case OPT_RESTORE:
        cfg->restore = arg;
        return 0;
    case OPT_KERNEL:
        cfg->kernel = arg;
        return 0;
    case OPT_INITRD:
        cfg->initrd = arg;
        return 0;
    case OPT_CMDLINE:
        cfg->cmdline = arg;
        return 0;
    case OPT_NO_DEFAULT_CMDLINE:
        cfg->no_default_cmdline = 1;
        return 0;
    case OPT_CPUS:
        if (parse_int(arg, 1, VM_MAX_CPUS, &n))
            return bad("--cpus", arg, "a number of vCPUs from 1 to " EMBER_STR(VM_MAX_CPUS));
        cfg->cpus = (int)n;
        return 0;
    case OPT_MEMORY:
        err = parse_size(arg, &cfg->memory);
        if (err)
            return bad("--memory", arg, "a size like 512M or 2G");
        if (cfg->memory < CONFIG_MIN_MEMORY || cfg->memory > CONFIG_MAX_MEMORY)
            return bad("--memory", arg, "a size from 16M to 1T");
        if (cfg->memory & 0xfff)
            return bad("--memory", arg, "a multiple of 4K");
        return 0;
    case OPT_HUGEPAGES:
        cfg->hugepages = 1;
        return 0;
    case OPT_CONSOLE:
        if (strcmp(arg, "serial") == 0)
            cfg->console = CONSOLE_KIND_SERIAL;
        else if (strcmp(arg, "virtio") == 0)
            cfg->console = CONSOLE_KIND_VIRTIO;
        else if (strcmp(arg, "none") == 0)
            cfg->console = CONSOLE_KIND_NONE;
        else
            return bad("--console", arg, "serial, virtio or none");
        return 0;
    case OPT_DISK:
        if (cfg->nr_disks == CONFIG_MAX_DISKS) {
            log_err("--disk: at most %d disks", CONFIG_MAX_DISKS);
            return -EINVAL;
        }
        err = parse_disk(arg, &cfg->disk[cfg->nr_disks]);
        if (err)
            return err;
        cfg->nr_disks++;
        return 0;
    case OPT_NET:
        if (cfg->nr_nets == CONFIG_MAX_NETS) {
            log_err("--net: at most %d network interfaces", CONFIG_MAX_NETS);
            return -EINVAL;
        }
        err = parse_net(arg, &cfg->net[cfg->nr_nets]);
        if (err)
            return err;
        cfg->nr_nets++;
        return 0;
    case OPT_NO_RNG:
        cfg->no_rng = 1;
        return 0;
    case OPT_VIRTIO_CMDLINE:
        cfg->virtio_cmdline = 1;
        return 0;
    case OPT_API_SOCK:
        cfg->api_sock = arg;
        return 0;
    case OPT_CONFIG:
        return config_load_file(cfg, arg);
    case OPT_BOOT_TIMER:
        cfg->boot_timer = 1;
        return 0;
    case OPT_ON_REBOOT:
        if (strcmp(arg, "exit") == 0)
            cfg->on_reboot = ON_REBOOT_EXIT;
        else if (strcmp(arg, "restart") == 0)
            cfg->on_reboot = ON_REBOOT_RESTART;
        else
            return bad("--on-reboot", arg, "exit or restart");
        return 0;
    }
    return -EINVAL;
}

int cli_flag_kind(const char *name)
{
    for (const struct option *o = run_options; o->name; o++) {
        if (strcmp(o->name, name) == 0 && o->val != 'h')
            return o->has_arg == no_argument ? 0 : 1;
    }
    return -1;
}

int cli_flag_given(const struct vm_config *cfg, const char *name)
{
    for (const struct option *o = run_options; o->name; o++)
        if (strcmp(o->name, name) == 0 && o->val >= OPT_KERNEL && o->val <= OPT_RESTORE)
            return (cfg->given >> (o->val - OPT_KERNEL)) & 1;
    return 0;
}

int cli_apply_flag(struct vm_config *cfg, const char *name, const char *value)
{
    for (const struct option *o = run_options; o->name; o++) {
        if (strcmp(o->name, name) != 0 || o->val == 'h')
            continue;
        if ((o->has_arg == no_argument) != (value == NULL))
            return -EINVAL;
        return parse_one(o->val, value, cfg);
    }
    return -ENOENT;
}

int cli_parse_run(int argc, char **argv, struct vm_config *cfg)
{
    int opt, err;

    opterr = 0;
    optind = 1;
    /* "+": stop at the first non-option so guest arguments are never taken as ours. */
    while ((opt = getopt_long(argc, argv, "+:h", run_options, NULL)) != -1) {
        if (opt == 'h') {
            cli_usage_run();
            return 1;
        }
        if (opt == '?') {
            if (optopt)
                log_err("unknown option '-%c' (see ember run --help)", optopt);
            else
                log_err("unknown option '%s' (see ember run --help)", argv[optind - 1]);
            return -EINVAL;
        }
        if (opt == ':') {
            log_err("option '%s' needs a value (see ember run --help)", argv[optind - 1]);
            return -EINVAL;
        }
        err = parse_one(opt, optarg, cfg);
        if (err)
            return err;
    }
    if (optind < argc) {
        if (strcmp(argv[optind - 1], "--") != 0) {
            log_err("unexpected argument '%s'; put the guest command after -- "
                    "(see ember run --help)",
                    argv[optind]);
            return -EINVAL;
        }
        cfg->init_args = &argv[optind];
        cfg->nr_init_args = argc - optind;
    }
    if (!cfg->kernel && !cfg->api_sock && !cfg->restore) {
        log_err("--kernel is required, or --restore DIR to start from a snapshot, or "
                "--api-sock to configure the VM over the control socket (see ember run --help)");
        return -EINVAL;
    }
    return 0;
}
