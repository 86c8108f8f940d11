/* ember's exit codes (documented in README.md): never reuse a number for another meaning. */
#ifndef EMBER_EXITCODE_H
#define EMBER_EXITCODE_H

#define EXIT_GUEST_POWEROFF 0 /* guest powered off without writing an exit status */
/* 1..119: the value the guest wrote to the exit-status device (any 0..255 is passed on). */
#define EXIT_GUEST_RESET 120 /* guest reset/rebooted and --on-reboot exit */
#define EXIT_GUEST_PANIC 121 /* guest kernel panicked (pvpanic) */
#define EXIT_GUEST_CRASH 122 /* KVM could not go on running the guest */
#define EXIT_BAD_SYSCALL 123 /* ember's sandbox stopped a forbidden system call */
#define EXIT_TIMEOUT     124 /* a time limit expired */
#define EXIT_VMM_ERROR   125 /* ember failed: setup, host resources, I/O */
#define EXIT_USAGE       126 /* bad command line or configuration */
#define EXIT_SIGNAL_BASE 128 /* 128+n: stopped by host signal n (SIGTERM: 143) */

#endif
