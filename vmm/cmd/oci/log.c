/* ember-oci's errors as callers read them: a line on stderr and one record in --log (a JSON
 * object with --log-format json: containerd takes its last error line, podman parses the file
 * as one object), plus debug lines with --debug. */
#include "oci.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char first_error[1024];
static int error_pending, quiet;

void oci_quiet(int on)
{
    quiet = on;
}

void oci_rfc3339(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    char sec[32];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%09ldZ", sec, ts.tv_nsec);
}

static void log_record(const char *level, const char *msg)
{
    char when[64], line[2048];
    int fd, n;

    if (!oci_g.log)
        return;
    oci_rfc3339(when, sizeof(when));
    if (oci_g.log_json) {
        json_object *o = json_object_new_object();

        json_object_object_add(o, "level", json_object_new_string(level));
        json_object_object_add(o, "msg", json_object_new_string(msg));
        json_object_object_add(o, "time", json_object_new_string(when));
        n = snprintf(line, sizeof(line), "%s\n",
                     json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                               JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
    } else {
        char esc[1200];
        size_t j = 0;

        for (size_t i = 0; msg[i] && j + 2 < sizeof(esc); i++) {
            if (msg[i] == '"' || msg[i] == '\\')
                esc[j++] = '\\';
            esc[j++] = msg[i];
        }
        esc[j] = '\0';
        n = snprintf(line, sizeof(line), "time=\"%s\" level=%s msg=\"%s\"\n", when, level, esc);
    }
    if (n >= (int)sizeof(line))
        n = (int)sizeof(line) - 1;
    fd = open(oci_g.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    (void)!write(fd, line, (size_t)n);
    close(fd);
}

int oci_error(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    int err = errno;

    if (quiet)
        return -1;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    dprintf(STDERR_FILENO, "ember-oci: %s\n", msg);
    if (!first_error[0]) { /* the first error is the cause; later ones follow from it */
        snprintf(first_error, sizeof(first_error), "%s", msg);
        error_pending = 1;
    }
    errno = err;
    return -1;
}

void oci_debug(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (!oci_g.debug)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_record("debug", msg);
}

const char *oci_last_error(void)
{
    return first_error;
}

void oci_log_flush(void)
{
    if (error_pending)
        log_record("error", first_error);
    error_pending = 0;
}
