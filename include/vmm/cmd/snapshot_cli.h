/* `ember snapshot`: save a running ember's VM through its control socket (vmm/snapshot_cli.c). */
#ifndef EMBER_SNAPSHOT_CLI_H
#define EMBER_SNAPSHOT_CLI_H

/* argv[0] is "snapshot". Returns the exit code (0, 125 ember refused or failed, 126 usage). */
int ember_snapshot(int argc, char **argv);

#endif
