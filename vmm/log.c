/* One-line diagnostics on stderr, written with a single write() so lines never interleave. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static __thread char *capture_buf;
static __thread size_t capture_cap;

void log_capture(char *buf, size_t cap)
{
    capture_buf = cap ? buf : NULL;
    capture_cap = cap;
    if (capture_buf)
        capture_buf[0] = '\0';
}

/* Append one message (without the "ember: " prefix) to this thread's capture buffer. */
static void capture(const char *msg)
{
    size_t used;

    if (!capture_buf)
        return;
    used = strlen(capture_buf);
    snprintf(capture_buf + used, capture_cap - used, "%s%s", used ? "; " : "", msg);
}

static void vlog(const char *prefix, const char *fmt, va_list ap)
{
    char buf[1024];
    int n = snprintf(buf, sizeof(buf), "ember: %s", prefix);
    int start = n, m;

    if (n < 0)
        return;
    m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
    if (m < 0)
        return;
    n += m;
    if (n > (int)sizeof(buf) - 2)
        n = (int)sizeof(buf) - 2;
    buf[n] = '\0';
    if (strcmp(prefix, "debug: ") != 0)
        capture(buf + start);
    buf[n++] = '\n';
    /* The terminal may be in raw mode: a bare \n would not return the carriage. */
    if (isatty(STDERR_FILENO)) {
        buf[n - 1] = '\r';
        buf[n++] = '\n';
    }
    (void)!write(STDERR_FILENO, buf, (size_t)n);
}

#define LOG_FN(name, prefix)                                                                       \
    void name(const char *fmt, ...)                                                                \
    {                                                                                              \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        vlog(prefix, fmt, ap);                                                                     \
        va_end(ap);                                                                                \
    }

LOG_FN(log_err, "error: ")
LOG_FN(log_warn, "warning: ")
LOG_FN(log_info, "")

void log_debug(const char *fmt, ...)
{
    static int enabled = -1;
    va_list ap;

    if (enabled < 0)
        enabled = getenv("EMBER_DEBUG") != NULL;
    if (!enabled)
        return;
    va_start(ap, fmt);
    vlog("debug: ", fmt, ap);
    va_end(ap);
}

int log_errno(const char *what)
{
    int err = errno;

    log_err("%s: %s", what, strerror(err));
    return -err;
}
