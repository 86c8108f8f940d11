/* Sandbox and jail flags shared by `ember run` and `ember exec` (vmm/cli_sandbox.c). */
#ifndef EMBER_CLI_SANDBOX_H
#define EMBER_CLI_SANDBOX_H

#include <getopt.h>

#include "config.h"

enum {
    OPT_SANDBOX_FIRST = 512,
    OPT_NO_SANDBOX = OPT_SANDBOX_FIRST,
    OPT_SECCOMP,
    OPT_JAIL,
    OPT_UID,
    OPT_GID,
    OPT_NETNS,
    OPT_CGROUP,
    OPT_CGROUP_PARENT,
    OPT_RLIMIT_NOFILE,
    OPT_RLIMIT_FSIZE,
    OPT_JAIL_BEST_EFFORT,
    OPT_SANDBOX_LAST = OPT_JAIL_BEST_EFFORT,
};

/* Entries for a getopt_long table. */
#define CLI_SANDBOX_OPTIONS                                                                        \
    {"no-sandbox", no_argument, NULL, OPT_NO_SANDBOX},                                             \
            {"seccomp", required_argument, NULL, OPT_SECCOMP},                                     \
            {"jail", required_argument, NULL, OPT_JAIL},                                           \
            {"uid", required_argument, NULL, OPT_UID}, {"gid", required_argument, NULL, OPT_GID},  \
            {"netns", required_argument, NULL, OPT_NETNS},                                         \
            {"cgroup", required_argument, NULL, OPT_CGROUP},                                       \
            {"cgroup-parent", required_argument, NULL, OPT_CGROUP_PARENT},                         \
            {"rlimit-nofile", required_argument, NULL, OPT_RLIMIT_NOFILE},                         \
            {"rlimit-fsize", required_argument, NULL, OPT_RLIMIT_FSIZE},                           \
    {                                                                                              \
        "jail-best-effort", no_argument, NULL, OPT_JAIL_BEST_EFFORT                                \
    }

/* One sandbox/jail flag into cfg; 0 or -EINVAL after one error line naming the flag. */
int cli_sandbox_option(int opt, const char *arg, struct vm_config *cfg);
/* The flags' help text. */
void cli_usage_sandbox(void);

#endif
