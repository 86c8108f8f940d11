/* One-line diagnostics on stderr, written with a single write() so lines never interleave. */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

/* Leaves errno as it found it: callers log a failure, then return -errno. */
static void vlog(const char *prefix, const char *fmt, va_list ap)
{
    char buf[1024];
    int saved = errno;
    int n = snprintf(buf, sizeof(buf), "ember: %s", prefix);
    int start = n, m;

    if (n < 0)
        goto out;
    m = vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
    if (m < 0)
        goto out;
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
out:
    errno = saved;
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

static pthread_mutex_t guest_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t guest_suppressed; /* from every source */

/* One token per line, LOG_GUEST_BURST at most, one more a second. Returns the lines
 * suppressed since the last one printed (to say so), or -1 when this one is suppressed too. */
static int64_t guest_token(struct log_limit *lim)
{
    struct timespec now;
    int64_t untold = -1;

    clock_gettime(CLOCK_MONOTONIC, &now);
    pthread_mutex_lock(&guest_lock);
    if (!lim->started) {
        lim->started = 1;
        lim->tokens = LOG_GUEST_BURST;
    } else {
        lim->tokens += (double)(now.tv_sec - lim->refill.tv_sec) +
                       (double)(now.tv_nsec - lim->refill.tv_nsec) / 1e9;
    }
    if (lim->tokens > LOG_GUEST_BURST)
        lim->tokens = LOG_GUEST_BURST;
    lim->refill = now;
    if (lim->tokens >= 1) {
        lim->tokens -= 1;
        untold = (int64_t)(lim->suppressed - lim->told);
        lim->told = lim->suppressed;
    } else {
        lim->suppressed++;
        guest_suppressed++;
    }
    pthread_mutex_unlock(&guest_lock);
    return untold;
}

void log_guest(struct log_limit *lim, enum log_level level, const char *fmt, ...)
{
    static const char *const prefix[] = {"error: ", "warning: ", ""};
    int64_t untold = guest_token(lim);
    va_list ap;

    if (untold < 0)
        return;
    if (untold)
        log_warn("%lld more such messages were not printed (query-metrics counts them: "
                 "guest-log-suppressed)",
                 (long long)untold);
    va_start(ap, fmt);
    vlog(prefix[level], fmt, ap);
    va_end(ap);
}

uint64_t log_guest_suppressed(const struct log_limit *lim)
{
    uint64_t n;

    pthread_mutex_lock(&guest_lock);
    n = lim ? lim->suppressed : guest_suppressed;
    pthread_mutex_unlock(&guest_lock);
    return n;
}

int log_errno(const char *what)
{
    int err = errno;

    log_err("%s: %s", what, strerror(err));
    return -err;
}
