// ember guest init: the power button watcher (power.c).
#ifndef EMBER_INIT_POWER_H
#define EMBER_INIT_POWER_H

#include <sys/types.h>

// Fork a process that sends init (PID 1) SIGPWR whenever the power button is pressed (ACPI
// event, or KEY_POWER on an input device), and return once it listens: a press from then on
// is seen. Returns its pid (or -1); it exits quietly when the kernel has neither.
pid_t power_button_watch(void);

#endif
