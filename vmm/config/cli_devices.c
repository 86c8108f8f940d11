/* Parsing of the device flags of `ember run`: --disk and --net values. */
#include "config.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Split "a,b,c" in place: returns the next option and advances *s. */
static char *next_opt(char **s)
{
    char *o = *s, *comma;

    if (!o)
        return NULL;
    comma = strchr(o, ',');
    if (comma) {
        *comma = '\0';
        *s = comma + 1;
    } else {
        *s = NULL;
    }
    return o;
}

int parse_disk(const char *arg, struct disk_config *d)
{
    char *copy = strdup(arg), *rest = copy, *o;
    int err = 0;

    if (!copy)
        return -ENOMEM;
    memset(d, 0, sizeof(*d));
    o = next_opt(&rest);
    if (!o || !*o) {
        log_err("--disk '%s': expected PATH[,ro][,id=NAME] (see ember run --help)", arg);
        err = -EINVAL;
        goto out;
    }
    if (strlen(o) >= sizeof(d->path)) {
        log_err("--disk: the path is longer than %zu bytes", sizeof(d->path) - 1);
        err = -ENAMETOOLONG;
        goto out;
    }
    strcpy(d->path, o);
    while (!err && (o = next_opt(&rest))) {
        if (strcmp(o, "ro") == 0) {
            d->readonly = 1;
        } else if (strcmp(o, "rw") == 0) {
            d->readonly = 0;
        } else if (strncmp(o, "id=", 3) == 0 && strlen(o + 3) <= 20 && o[3]) {
            snprintf(d->id, sizeof(d->id), "%s", o + 3);
        } else if (strncmp(o, "id=", 3) == 0) {
            log_err("--disk '%s': id must be 1 to 20 characters", arg);
            err = -EINVAL;
        } else {
            log_err("--disk '%s': unknown option '%s'; expected ro, rw or id=NAME", arg, o);
            err = -EINVAL;
        }
    }
out:
    free(copy);
    return err;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
    unsigned v[6];
    char end;

    if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &end) != 6)
        return -EINVAL;
    for (int i = 0; i < 6; i++) {
        if (v[i] > 0xff)
            return -EINVAL;
        mac[i] = (uint8_t)v[i];
    }
    if (mac[0] & 1) /* multicast */
        return -EINVAL;
    return 0;
}

static int parse_port(const char *s, uint16_t *port)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > 65535)
        return -EINVAL;
    *port = (uint16_t)v;
    return 0;
}

/* tcp:HOSTADDR:HOSTPORT-:GUESTPORT (HOSTADDR may be empty: any address) */
static int parse_hostfwd(const char *s, struct hostfwd *f)
{
    char buf[128], *p, *colon, *dash;
    struct in_addr a;

    if (strlen(s) >= sizeof(buf))
        return -EINVAL;
    strcpy(buf, s);
    memset(f, 0, sizeof(*f));
    if (strncmp(buf, "tcp:", 4) == 0)
        p = buf + 4;
    else if (strncmp(buf, "udp:", 4) == 0) {
        f->udp = 1;
        p = buf + 4;
    } else
        return -EINVAL;
    dash = strstr(p, "-:");
    if (!dash)
        return -EINVAL;
    *dash = '\0';
    if (parse_port(dash + 2, &f->guest_port))
        return -EINVAL;
    colon = strrchr(p, ':');
    if (!colon)
        return -EINVAL;
    *colon = '\0';
    if (parse_port(colon + 1, &f->host_port))
        return -EINVAL;
    if (*p) {
        if (inet_pton(AF_INET, p, &a) != 1)
            return -EINVAL;
        f->host_addr = a.s_addr;
    }
    return 0;
}

static int parse_net_option(const char *arg, const char *o, struct net_config *n)
{
    if (strncmp(o, "mac=", 4) == 0) {
        if (parse_mac(o + 4, n->mac)) {
            log_err("--net '%s': '%s' is not a unicast MAC address like 52:54:00:12:34:56", arg,
                    o + 4);
            return -EINVAL;
        }
        n->mac_set = 1;
        return 0;
    }
    if (strncmp(o, "hostfwd=", 8) == 0) {
        if (n->backend != NET_USER) {
            log_err("--net '%s': hostfwd= works only with --net user", arg);
            return -EINVAL;
        }
        if (n->nr_fwd == CONFIG_MAX_HOSTFWD) {
            log_err("--net '%s': at most %d hostfwd= rules", arg, CONFIG_MAX_HOSTFWD);
            return -EINVAL;
        }
        if (parse_hostfwd(o + 8, &n->fwd[n->nr_fwd])) {
            log_err("--net '%s': '%s' is not tcp:HOSTADDR:HOSTPORT-:GUESTPORT", arg, o + 8);
            return -EINVAL;
        }
        n->nr_fwd++;
        return 0;
    }
    if (strncmp(o, "host-loopback=", 14) == 0) {
        if (n->backend != NET_USER) {
            log_err("--net '%s': host-loopback= works only with --net user", arg);
            return -EINVAL;
        }
        if (strcmp(o + 14, "on") != 0 && strcmp(o + 14, "off") != 0) {
            log_err("--net '%s': host-loopback= takes on or off", arg);
            return -EINVAL;
        }
        n->host_loopback = strcmp(o + 14, "on") == 0;
        return 0;
    }
    log_err("--net '%s': unknown option '%s'; expected mac=, hostfwd= or host-loopback=", arg, o);
    return -EINVAL;
}

int parse_net(const char *arg, struct net_config *n)
{
    char *copy = strdup(arg), *rest = copy, *o;
    long fd;
    char *end;
    int err = 0;

    if (!copy)
        return -ENOMEM;
    memset(n, 0, sizeof(*n));
    n->tap_fd = -1;
    o = next_opt(&rest);
    if (o && strcmp(o, "user") == 0) {
        n->backend = NET_USER;
    } else if (o && strncmp(o, "tap=", 4) == 0 && o[4] && strlen(o + 4) < sizeof(n->tap_name)) {
        n->backend = NET_TAP;
        snprintf(n->tap_name, sizeof(n->tap_name), "%s", o + 4);
    } else if (o && strncmp(o, "tap-fd=", 7) == 0) {
        errno = 0;
        fd = strtol(o + 7, &end, 10);
        if (errno || end == o + 7 || *end || fd < 0 || fd > 65535) {
            log_err("--net '%s': tap-fd= needs an open file descriptor number", arg);
            err = -EINVAL;
            goto out;
        }
        n->backend = NET_TAP_FD;
        n->tap_fd = (int)fd;
    } else {
        log_err("--net '%s': expected user, tap=NAME (up to 15 characters) or tap-fd=N", arg);
        err = -EINVAL;
        goto out;
    }
    while (!err && (o = next_opt(&rest)))
        err = parse_net_option(arg, o, n);
out:
    free(copy);
    return err;
}
