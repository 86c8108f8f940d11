/* `ember run`: build a microVM from a vm_config, run it to the end, return the exit code. */
#ifndef EMBER_RUN_H
#define EMBER_RUN_H

#include <signal.h>
#include <time.h>

#include "config.h"

/* start_wall: CLOCK_MONOTONIC at process start (for --boot-timer). Returns an exit code
 * from exitcode.h. */
int ember_run(struct vm_config *cfg, const struct timespec *start_wall);

/* The signals ember takes through its signalfd (and the jail's supervisor relays): SIGINT,
 * SIGTERM, SIGHUP stop the VM; with ember-oci's agent link also SIGQUIT, SIGUSR1, SIGUSR2 and
 * SIGWINCH, which go to the workload. */
void run_host_signals(const struct vm_config *cfg, sigset_t *mask);

#endif
