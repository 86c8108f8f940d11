/* `ember exec` command-line parsing into an exec_config, one clear error per bad value. */
#include "cli_sandbox.h"
#include "exec.h"
#include "log.h"
#include "vm.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void)
{
    printf("Usage: ember exec [options] -- CMD [ARGS...]\n"
           "\n"
           "Run CMD in a throwaway microVM: its stdout and stderr come back on ember's stdout\n"
           "and stderr (apart, byte for byte), ember's stdin is its stdin, and ember exits with\n"
           "its status (128+n if a signal killed it). Nothing it writes persists.\n"
           "\n"
           "  --rootfs IMG           ext4 root, attached read-only under a tmpfs overlay\n"
           "                         (default: the guest image's initramfs, in guest RAM)\n"
           "  --copy-in HOST:GUEST   copy a host file or directory to GUEST before CMD starts\n"
           "                         (repeatable; packed into an image attached read-only)\n"
           "  --net none|user[,OPTS] no network (default) or user networking (libslirp); OPTS\n"
           "                         as for ember run --net user, e.g. host-loopback=on to\n"
           "                         reach the host's 127.0.0.1 as 10.0.2.2 (off by default)\n"
           "  --cpus N               vCPUs (default 1)\n"
           "  --memory SIZE          guest RAM (default 256M)\n"
           "  --timeout SECONDS      stop the VM and exit 124 after this long\n"
           "  --env K=V              environment variable for CMD (repeatable)\n"
           "  --workdir DIR          CMD's working directory (default /)\n"
           "  --kernel PATH, --initrd PATH\n"
           "                         guest kernel and initramfs (default: EMBER_IMAGES_DIR or\n"
           "                         the build's guest-images/out)\n"
           "  --no-jail              do not jail ember (it jails itself by default when root)\n"
           "  --no-snapshot          boot the VM instead of restoring the cached snapshot of\n"
           "                         these images waiting for a command (the first exec of\n"
           "                         them boots and saves it; EMBER_CACHE_DIR, else\n"
           "                         ~/.cache/ember, holds it)\n"
           "  -h, --help             this help\n"
           "\n"
           "Exit codes: CMD's status; 123 forbidden system call in ember; 124 --timeout;\n"
           "125 ember or the VM failed; 126 usage error or CMD not executable; 127 CMD not\n"
           "found. The sandbox and jail flags of `ember run --help` apply too.\n");
}

enum {
    X_ROOTFS = 256,
    X_COPY_IN,
    X_NET,
    X_CPUS,
    X_MEMORY,
    X_TIMEOUT,
    X_ENV,
    X_WORKDIR,
    X_KERNEL,
    X_INITRD,
    X_NO_JAIL,
    X_NO_SNAPSHOT,
};

static const struct option exec_options[] = {
        {"rootfs", required_argument, NULL, X_ROOTFS},
        {"copy-in", required_argument, NULL, X_COPY_IN},
        {"net", required_argument, NULL, X_NET},
        {"cpus", required_argument, NULL, X_CPUS},
        {"memory", required_argument, NULL, X_MEMORY},
        {"timeout", required_argument, NULL, X_TIMEOUT},
        {"env", required_argument, NULL, X_ENV},
        {"workdir", required_argument, NULL, X_WORKDIR},
        {"kernel", required_argument, NULL, X_KERNEL},
        {"initrd", required_argument, NULL, X_INITRD},
        {"no-jail", no_argument, NULL, X_NO_JAIL},
        {"no-snapshot", no_argument, NULL, X_NO_SNAPSHOT},
        CLI_SANDBOX_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
};

static int bad(const char *flag, const char *value, const char *expect)
{
    log_err("%s: '%s' is not valid; expected %s (see ember exec --help)", flag, value, expect);
    return -EINVAL;
}

static int parse_one(int opt, const char *arg, struct exec_config *x)
{
    char *end;
    unsigned long v;

    if (opt >= OPT_SANDBOX_FIRST && opt <= OPT_SANDBOX_LAST)
        return cli_sandbox_option(opt, arg, &x->vm);
    switch (opt) {
    case X_ROOTFS:
        x->rootfs = arg;
        return 0;
    case X_COPY_IN: {
        const char *colon = strrchr(arg, ':');
        if (x->nr_copy_in == EXEC_MAX_COPY_IN)
            return bad("--copy-in", arg, "at most " EMBER_STR(EXEC_MAX_COPY_IN) " of them");
        if (!colon || colon == arg || colon[1] != '/')
            return bad("--copy-in", arg, "HOSTPATH:/GUESTPATH");
        x->copy_in[x->nr_copy_in++] = arg;
        return 0;
    }
    case X_NET:
        x->net_user = 0;
        if (!strcmp(arg, "none"))
            return 0;
        if (strncmp(arg, "user", 4) != 0 || (arg[4] && arg[4] != ','))
            return bad("--net", arg, "none, or user with ember run's --net user options");
        if (parse_net(arg, &x->net))
            return -EINVAL;
        x->net_user = 1;
        return 0;
    case X_CPUS: /* the same flags as ember run's */
        return cli_apply_flag(&x->vm, "cpus", arg);
    case X_MEMORY:
        return cli_apply_flag(&x->vm, "memory", arg);
    case X_TIMEOUT:
        errno = 0;
        v = strtoul(arg, &end, 10);
        if (errno || end == arg || *end || v < 1 || v > 31536000)
            return bad("--timeout", arg, "whole seconds from 1 to 31536000");
        x->timeout_s = (unsigned)v;
        return 0;
    case X_ENV:
        if (x->nr_env == EXEC_MAX_ENV)
            return bad("--env", arg, "at most " EMBER_STR(EXEC_MAX_ENV) " of them");
        if (!strchr(arg, '=') || arg[0] == '=')
            return bad("--env", arg, "NAME=VALUE");
        x->env[x->nr_env++] = arg;
        return 0;
    case X_WORKDIR:
        if (arg[0] != '/')
            return bad("--workdir", arg, "an absolute path in the guest");
        x->workdir = arg;
        return 0;
    case X_KERNEL:
        return cli_apply_flag(&x->vm, "kernel", arg);
    case X_INITRD:
        return cli_apply_flag(&x->vm, "initrd", arg);
    case X_NO_JAIL:
        x->no_jail = 1;
        return 0;
    case X_NO_SNAPSHOT:
        x->no_snapshot = 1;
        return 0;
    }
    return -EINVAL;
}

int cli_parse_exec(int argc, char **argv, struct exec_config *x)
{
    int opt, err;

    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "+:h", exec_options, NULL)) != -1) {
        if (opt == 'h') {
            usage();
            return 1;
        }
        if (opt == '?') {
            log_err("unknown option '%s' (see ember exec --help)", argv[optind - 1]);
            return -EINVAL;
        }
        if (opt == ':') {
            log_err("option '%s' needs a value (see ember exec --help)", argv[optind - 1]);
            return -EINVAL;
        }
        err = parse_one(opt, optarg, x);
        if (err)
            return err;
    }
    if (optind >= argc) {
        log_err("no command: put it after -- (ember exec [options] -- CMD ARGS...)");
        return -EINVAL;
    }
    if (strcmp(argv[optind - 1], "--") != 0) {
        log_err("unexpected argument '%s'; put the command after -- (see ember exec --help)",
                argv[optind]);
        return -EINVAL;
    }
    x->argv = &argv[optind];
    x->argc = argc - optind;
    return 0;
}
