/* Parsing of the sandbox and jail flags (--no-sandbox, --seccomp, --jail, --uid ...). */
#include "cli_sandbox.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_usage_sandbox(void)
{
    printf("\nSandbox (on by default; see README.md):\n"
           "  --no-sandbox           keep descriptors, privileges and all system calls\n"
           "  --seccomp trap|kill|log|off\n"
           "                         a forbidden call: report it and exit 123 (trap, default),\n"
           "                         let the kernel kill ember, only log it, or no filters\n"
           "  --jail DIR             new mount, PID, IPC and UTS namespaces with DIR as / holding\n"
           "                         only the kernel, initrd, disks and /dev/kvm (needs root)\n"
           "  --uid N, --gid N       run as this user and group in the jail (default 65534)\n"
           "  --netns PATH           join this network namespace (e.g. /run/netns/NAME)\n"
           "  --cgroup KEY=VALUE     cgroup v2 limit: memory.max, memory.swap.max, cpu.max,\n"
           "                         pids.max (repeatable; e.g. memory.max=512M)\n"
           "  --cgroup-parent DIR    where the jail's cgroup goes (default /sys/fs/cgroup)\n"
           "  --rlimit-nofile N      open descriptors in the jail (default 1024)\n"
           "  --rlimit-fsize SIZE    largest file ember may write in the jail (default no limit)\n"
           "  --jail-best-effort     go on without the namespaces or cgroups the host lacks\n");
}

static int bad(const char *flag, const char *value, const char *expect)
{
    log_err("%s: '%s' is not valid; expected %s", flag, value, expect);
    return -EINVAL;
}

static int parse_id(const char *flag, const char *arg, unsigned *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(arg, &end, 10);
    if (errno || end == arg || *end || *arg == '-' || v >= 0xffffffffUL)
        return bad(flag, arg, "a numeric id");
    *out = (unsigned)v;
    return 0;
}

static int parse_cgroup(const char *arg, struct jail_config *j)
{
    static const char *const keys[] = {"memory.max=", "memory.swap.max=", "memory.high=",
                                       "cpu.max=",    "cpu.weight=",      "pids.max="};

    if (j->nr_cgroup == CONFIG_MAX_CGROUP) {
        log_err("--cgroup: at most %d limits", CONFIG_MAX_CGROUP);
        return -EINVAL;
    }
    if (strchr(arg, '/') || strchr(arg, '\n'))
        return bad("--cgroup", arg, "KEY=VALUE without '/' or newlines");
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (!strncmp(arg, keys[i], strlen(keys[i])) && arg[strlen(keys[i])]) {
            j->cgroup[j->nr_cgroup++] = arg;
            return 0;
        }
    return bad("--cgroup", arg,
               "memory.max=, memory.swap.max=, memory.high=, cpu.max=, cpu.weight= or "
               "pids.max= with a value");
}

int cli_sandbox_option(int opt, const char *arg, struct vm_config *cfg)
{
    struct jail_config *j = &cfg->jail;
    uint64_t size;
    char *end;

    switch (opt) {
    case OPT_NO_SANDBOX:
        cfg->sandbox.disabled = 1;
        return 0;
    case OPT_SECCOMP:
        if (!strcmp(arg, "trap"))
            cfg->sandbox.seccomp = SECCOMP_ACTION_TRAP;
        else if (!strcmp(arg, "kill"))
            cfg->sandbox.seccomp = SECCOMP_ACTION_KILL;
        else if (!strcmp(arg, "log"))
            cfg->sandbox.seccomp = SECCOMP_ACTION_LOG;
        else if (!strcmp(arg, "off"))
            cfg->sandbox.seccomp = SECCOMP_ACTION_OFF;
        else
            return bad("--seccomp", arg, "trap, kill, log or off");
        return 0;
    case OPT_JAIL:
        if (arg[0] != '/')
            return bad("--jail", arg, "an absolute path to a directory");
        j->dir = arg;
        return 0;
    case OPT_UID:
        j->have_uid = 1;
        return parse_id("--uid", arg, &j->uid);
    case OPT_GID:
        j->have_gid = 1;
        return parse_id("--gid", arg, &j->gid);
    case OPT_NETNS:
        j->netns = arg;
        return 0;
    case OPT_CGROUP:
        return parse_cgroup(arg, j);
    case OPT_CGROUP_PARENT:
        if (arg[0] != '/')
            return bad("--cgroup-parent", arg, "an absolute path in the cgroup2 file system");
        j->cgroup_parent = arg;
        return 0;
    case OPT_RLIMIT_NOFILE:
        errno = 0;
        j->nofile = strtoull(arg, &end, 10);
        if (errno || end == arg || *end || j->nofile < 64 || j->nofile > (1 << 20))
            return bad("--rlimit-nofile", arg, "a number from 64 to 1048576");
        return 0;
    case OPT_RLIMIT_FSIZE:
        if (parse_size(arg, &size) || size == 0)
            return bad("--rlimit-fsize", arg, "a size like 1G");
        j->fsize = size;
        return 0;
    case OPT_JAIL_BEST_EFFORT:
        j->best_effort = 1;
        return 0;
    }
    return -EINVAL;
}
