/* One-line diagnostics on stderr: "ember: <message>". */
#ifndef EMBER_LOG_H
#define EMBER_LOG_H

#include <stddef.h>

__attribute__((format(printf, 1, 2))) void log_err(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void log_warn(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void log_info(const char *fmt, ...);
/* Debug messages are printed only when EMBER_DEBUG is set in the environment. */
__attribute__((format(printf, 1, 2))) void log_debug(const char *fmt, ...);

/* Also collect this thread's error, warning and info messages in buf ("; "-separated, always
 * NUL-terminated) until log_capture(NULL, 0): the control socket returns them as the reason a
 * request failed. */
void log_capture(char *buf, size_t cap);

/* Print "<what>: <strerror(errno)>" and return -errno (saved before printing). */
int log_errno(const char *what);

#endif
