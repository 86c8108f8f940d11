/* One-line diagnostics on stderr: "ember: <message>". */
#ifndef EMBER_LOG_H
#define EMBER_LOG_H

__attribute__((format(printf, 1, 2))) void log_err(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void log_warn(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void log_info(const char *fmt, ...);
/* Debug messages are printed only when EMBER_DEBUG is set in the environment. */
__attribute__((format(printf, 1, 2))) void log_debug(const char *fmt, ...);

/* Print "<what>: <strerror(errno)>" and return -errno (saved before printing). */
int log_errno(const char *what);

#endif
