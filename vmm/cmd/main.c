/* ember's entry point: dispatch subcommands; the only place that exits the process. */
#include "config.h"
#include "exec.h"
#include "exitcode.h"
#include "log.h"
#include "oci.h"
#include "run.h"
#include "snapshot_cli.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#ifndef EMBER_VERSION
#define EMBER_VERSION "0.1.0"
#endif

static void usage(FILE *f)
{
    fprintf(f, "Usage: ember COMMAND [options]\n"
               "\n"
               "Commands:\n"
               "  run       boot a Linux kernel in a microVM (ember run --help)\n"
               "  exec      run one command in a throwaway microVM (ember exec --help)\n"
               "  oci       the OCI runtime, as `ember-oci` (ember oci --help)\n"
               "  snapshot  save a running VM through its control socket (ember snapshot --help)\n"
               "  version   print ember's version\n"
               "  help      this help\n");
}

int main(int argc, char **argv)
{
    struct timespec start;
    struct vm_config cfg;
    int r;

    clock_gettime(CLOCK_MONOTONIC, &start);
    /* A reader that went away (stderr, a console pipe, a control client, the jail's relay) is
     * an error return, never a death that skips the exit code and the cleanup. */
    signal(SIGPIPE, SIG_IGN);
    /* ember-oci: the OCI runtime (a link to ember under that name, as containerd's BinaryName
     * and podman's --runtime take a bare path) */
    const char *base = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    if (!strcmp(base, "ember-oci"))
        return oci_main(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "oci"))
        return oci_main(argc - 1, argv + 1);
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("ember %s\n", EMBER_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "exec")) {
        static struct exec_config x;

        config_defaults(&x.vm);
        r = cli_parse_exec(argc - 1, argv + 1, &x);
        if (r == 1)
            return 0;
        if (r < 0)
            return EXIT_USAGE;
        return ember_exec(&x, &start);
    }
    if (!strcmp(argv[1], "snapshot"))
        return ember_snapshot(argc - 1, argv + 1);
    if (strcmp(argv[1], "run") != 0) {
        log_err("unknown command '%s' (see ember --help)", argv[1]);
        return EXIT_USAGE;
    }
    config_defaults(&cfg);
    r = cli_parse_run(argc - 1, argv + 1, &cfg);
    if (r == 0)
        r = ember_run(&cfg, &start);
    else
        r = r == 1 ? 0 : EXIT_USAGE;
    config_free(&cfg);
    return r;
}
