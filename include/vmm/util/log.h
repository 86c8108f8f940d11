/* One-line diagnostics on stderr: "ember: <message>". */
#ifndef EMBER_LOG_H
#define EMBER_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

__attribute__((format(printf, 1, 2))) void log_err(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void log_warn(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void log_info(const char *fmt, ...);
/* Debug messages are printed only when EMBER_DEBUG is set in the environment. */
__attribute__((format(printf, 1, 2))) void log_debug(const char *fmt, ...);

/* A message the guest can cause again and again (a device it breaks after every reset, a
 * panic or reset on every vCPU): per source (lim, e.g. one per device), at most
 * LOG_GUEST_BURST lines at once, then one a second; the rest are not printed but counted
 * (query-metrics: guest-log-suppressed, and per device). Any thread. */
#define LOG_GUEST_BURST 10
enum log_level { LOG_ERR, LOG_WARN, LOG_INFO };
struct log_limit {
    double tokens; /* lines that may go out now (starts full) */
    struct timespec refill;
    uint64_t suppressed, told;
    int started;
};
__attribute__((format(printf, 3, 4))) void log_guest(struct log_limit *lim, enum log_level level,
                                                     const char *fmt, ...);
/* Guest-caused messages not printed so far: from lim, or from all sources (lim NULL). */
uint64_t log_guest_suppressed(const struct log_limit *lim);

/* Also collect this thread's error, warning and info messages in buf ("; "-separated, always
 * NUL-terminated) until log_capture(NULL, 0): the control socket returns them as the reason a
 * request failed. */
void log_capture(char *buf, size_t cap);

/* Print "<what>: <strerror(errno)>" and return -errno (saved before printing). */
int log_errno(const char *what);

#endif
