// ember guest init: the ACPI power button watcher (power.c).
#ifndef EMBER_INIT_POWER_H
#define EMBER_INIT_POWER_H

#include <sys/types.h>

// Fork a process that sends init (PID 1) SIGPWR whenever the ACPI power button is pressed.
// Returns its pid (or -1); it exits quietly when the kernel has no ACPI events.
pid_t power_button_watch(void);

#endif
