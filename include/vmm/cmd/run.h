/* `ember run`: build a microVM from a vm_config, run it to the end, return the exit code. */
#ifndef EMBER_RUN_H
#define EMBER_RUN_H

#include <time.h>

#include "config.h"

/* start_wall: CLOCK_MONOTONIC at process start (for --boot-timer). Returns an exit code
 * from exitcode.h. */
int ember_run(struct vm_config *cfg, const struct timespec *start_wall);

#endif
