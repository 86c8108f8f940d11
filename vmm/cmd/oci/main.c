/* ember-oci's entry: runc's global flags (all accepted), the commands, the exit code. */
#include "oci.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef EMBER_VERSION
#define EMBER_VERSION "0.1.0"
#endif
#ifndef EMBER_COMMIT
#define EMBER_COMMIT "unknown"
#endif

struct oci_globals oci_g;

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: ember-oci [global options] COMMAND [options] ID [args]\n"
            "\n"
            "ember as an OCI runtime (runc's command line): each container runs in a microVM.\n"
            "\n"
            "Commands:\n"
            "  create [--bundle DIR] [--pid-file F] [--console-socket S] ID   set it up (its VM\n"
            "                         boots; the workload waits for start)\n"
            "  start ID               start the workload\n"
            "  run [create's options] [--detach] ID   create and start; without --detach\n"
            "                         exit with the workload's status\n"
            "  state ID               the OCI state as JSON\n"
            "  kill [--all] ID [SIGNAL]   signal the workload (KILL: the VM)\n"
            "  delete [--force] ID    remove a stopped container (--force: stop it first)\n"
            "  ps [--format json|table] ID   the container's processes on the host (the VMM)\n"
            "  pause ID, resume ID    stop and continue the VM's vCPUs\n"
            "  features               what this runtime supports, as JSON\n"
            "  spec [--bundle DIR]    write a default config.json\n"
            "  exec                   not supported: refused (never runs anything on the host)\n"
            "\n"
            "Global options (runc's; all accepted):\n"
            "  --root DIR             state directory (default /run/ember-oci for root,\n"
            "                         $XDG_RUNTIME_DIR/ember-oci otherwise)\n"
            "  --log FILE, --log-format text|json, --debug\n"
            "  --systemd-cgroup, --rootless[=BOOL], --cgroup-manager MODE, --criu PATH (ignored)\n"
            "  -v, --version, -h, --help\n");
}

/* Global flags before the command; returns the index of the command, or -1. */
static int parse_globals(int argc, char **argv)
{
    static const char *rootless, *cgroup_manager, *criu, *format, *debug, *systemd, *version, *help;
    static const struct oci_opt opts[] = {
            {"root", 0, 1, &oci_g.root},
            {"log", 0, 1, &oci_g.log},
            {"log-format", 0, 1, &format},
            {"debug", 0, 0, &debug},
            {"systemd-cgroup", 0, 0, &systemd},
            {"rootless", 0, 1, &rootless},
            {"cgroup-manager", 0, 1, &cgroup_manager},
            {"criu", 0, 1, &criu},
            {"version", 'v', 0, &version},
            {"help", 'h', 0, &help},
            {NULL, 0, 0, NULL},
    };
    int i = 1, end = 1, n;
    const char *pos[1];

    while (end < argc && argv[end][0] == '-') {
        const char *a = argv[end];
        /* A value-taking flag without '=' owns the next word. */
        int takes =
                strchr(a, '=') == NULL &&
                (!strcmp(a, "--root") || !strcmp(a, "-root") || !strcmp(a, "--log") ||
                 !strcmp(a, "-log") || !strcmp(a, "--log-format") || !strcmp(a, "-log-format") ||
                 !strcmp(a, "--cgroup-manager") || !strcmp(a, "--criu") || !strcmp(a, "-criu"));
        end += 1 + (takes && end + 1 < argc);
    }
    /* --rootless takes a value only with '=' (runc: --rootless=true); bare is a flag. */
    for (int k = i; k < end; k++)
        if (!strcmp(argv[k], "--rootless") || !strcmp(argv[k], "-rootless"))
            argv[k] = "--rootless=true";
    if (oci_parse_args(end - i, argv + i, opts, pos, 0, &n))
        return -1;
    if (format && strcmp(format, "json") && strcmp(format, "text"))
        return oci_error("--log-format '%s': expected text or json", format);
    oci_g.log_json = format && !strcmp(format, "json");
    oci_g.debug = oci_flag(debug);
    oci_g.systemd_cgroup = oci_flag(systemd);
    if (oci_flag(help)) {
        usage(stdout);
        exit(0);
    }
    if (oci_flag(version)) {
        printf("ember-oci version %s\ncommit: %s\nspec: %s\n", EMBER_VERSION, EMBER_COMMIT,
               OCI_SPEC);
        exit(0);
    }
    return end;
}

static void default_root(void)
{
    static char dir[PATH_MAX];
    const char *xdg = getenv("XDG_RUNTIME_DIR");

    if (oci_g.root)
        return;
    if (geteuid() == 0)
        oci_g.root = "/run/ember-oci";
    else if (xdg && *xdg) {
        snprintf(dir, sizeof(dir), "%s/ember-oci", xdg);
        oci_g.root = dir;
    } else {
        snprintf(dir, sizeof(dir), "/tmp/ember-oci-%u", (unsigned)geteuid());
        oci_g.root = dir;
    }
}

static int dispatch(const char *cmd, int argc, char **argv)
{
    if (!strcmp(cmd, "create"))
        return oci_cmd_create(argc, argv, 0);
    if (!strcmp(cmd, "run"))
        return oci_cmd_create(argc, argv, 1);
    if (!strcmp(cmd, "start"))
        return oci_cmd_start(argc, argv);
    if (!strcmp(cmd, "state"))
        return oci_cmd_state(argc, argv);
    if (!strcmp(cmd, "kill"))
        return oci_cmd_kill(argc, argv);
    if (!strcmp(cmd, "delete"))
        return oci_cmd_delete(argc, argv);
    if (!strcmp(cmd, "ps"))
        return oci_cmd_ps(argc, argv);
    if (!strcmp(cmd, "pause"))
        return oci_cmd_pause(argc, argv, 1);
    if (!strcmp(cmd, "resume"))
        return oci_cmd_pause(argc, argv, 0);
    if (!strcmp(cmd, "features"))
        return oci_cmd_features(argc, argv);
    if (!strcmp(cmd, "spec"))
        return oci_cmd_spec(argc, argv);
    if (!strcmp(cmd, "exec")) {
        /* Never nsenter into the VMM's namespaces: that would run it on the host. */
        oci_error("exec is not supported by ember-oci: the container runs in a microVM and "
                  "ember-oci cannot start a second process in it yet");
        return 1;
    }
    if (!strcmp(cmd, "update") || !strcmp(cmd, "events") || !strcmp(cmd, "checkpoint") ||
        !strcmp(cmd, "restore") || !strcmp(cmd, "list") || !strcmp(cmd, "init")) {
        oci_error("%s is not supported by ember-oci", cmd);
        return 1;
    }
    if (!strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    oci_error("unknown command '%s' (see ember-oci --help)", cmd);
    return 1;
}

int oci_main(int argc, char **argv)
{
    int i = parse_globals(argc, argv), code;

    if (i < 0) {
        oci_log_flush();
        return 1;
    }
    if (i >= argc) {
        usage(stderr);
        return 1;
    }
    default_root();
    code = dispatch(argv[i], argc - i - 1, argv + i + 1);
    oci_log_flush();
    return code;
}
