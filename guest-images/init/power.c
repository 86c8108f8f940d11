// ember guest init: the power button (ember's system_powerdown). A watcher process listens on
// the kernel's "acpi_event" generic-netlink group (x86_64: the ACPI button) or, on a kernel
// without ACPI events, for KEY_POWER on the input devices (aarch64: gpio-keys from the device
// tree), and sends init SIGPWR.
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/genetlink.h>
#include <linux/input.h>
#include <linux/netlink.h>
#include <poll.h>
#include <stdio.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "power.h"

#define NLA_OK_LEN(nla, len)                                                                       \
    ((len) >= (int)sizeof(*(nla)) && (nla)->nla_len >= sizeof(*(nla)) && (nla)->nla_len <= (len))
#define NLA_NEXT_LEN(nla, len)                                                                     \
    ((len) -= NLA_ALIGN((nla)->nla_len),                                                           \
     (struct nlattr *)((char *)(nla) + NLA_ALIGN((nla)->nla_len)))
#define NLA_PAYLOAD(nla) ((void *)((char *)(nla) + NLA_HDRLEN))

// The multicast group id of acpi_event/acpi_mc_group, or -1.
static int acpi_group(int fd)
{
    struct {
        struct nlmsghdr n;
        struct genlmsghdr g;
        char attrs[64];
    } req = {0};
    char buf[4096];
    const char *family = "acpi_event";
    struct nlattr *a = (struct nlattr *)req.attrs;
    struct nlmsghdr *n = (struct nlmsghdr *)buf;
    int len;

    a->nla_type = CTRL_ATTR_FAMILY_NAME;
    a->nla_len = (uint16_t)(NLA_HDRLEN + strlen(family) + 1);
    memcpy(NLA_PAYLOAD(a), family, strlen(family) + 1);
    req.n.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN) + NLA_ALIGN(a->nla_len);
    req.n.nlmsg_type = GENL_ID_CTRL;
    req.n.nlmsg_flags = NLM_F_REQUEST;
    req.n.nlmsg_seq = 1;
    req.g.cmd = CTRL_CMD_GETFAMILY;
    req.g.version = 1;
    if (send(fd, &req, req.n.nlmsg_len, 0) < 0)
        return -1;
    len = (int)recv(fd, buf, sizeof(buf), 0);
    if (len < (int)NLMSG_LENGTH(GENL_HDRLEN) || n->nlmsg_type == NLMSG_ERROR)
        return -1;
    len = (int)n->nlmsg_len - (int)NLMSG_LENGTH(GENL_HDRLEN);
    for (a = (struct nlattr *)((char *)NLMSG_DATA(n) + GENL_HDRLEN); NLA_OK_LEN(a, len);
         a = NLA_NEXT_LEN(a, len)) {
        struct nlattr *grp;
        int glen = a->nla_len - NLA_HDRLEN;

        if ((a->nla_type & NLA_TYPE_MASK) != CTRL_ATTR_MCAST_GROUPS)
            continue;
        for (grp = NLA_PAYLOAD(a); NLA_OK_LEN(grp, glen); grp = NLA_NEXT_LEN(grp, glen)) {
            struct nlattr *f;
            int flen = grp->nla_len - NLA_HDRLEN, id = -1, ours = 0;

            for (f = NLA_PAYLOAD(grp); NLA_OK_LEN(f, flen); f = NLA_NEXT_LEN(f, flen)) {
                if (f->nla_type == CTRL_ATTR_MCAST_GRP_ID && f->nla_len >= NLA_HDRLEN + 4)
                    memcpy(&id, NLA_PAYLOAD(f), 4);
                if (f->nla_type == CTRL_ATTR_MCAST_GRP_NAME)
                    ours = strncmp(NLA_PAYLOAD(f), "acpi_mc_group", 13) == 0;
            }
            if (ours)
                return id;
        }
    }
    return -1;
}

// The watcher listens: let init go on (the boot marker comes after this).
static void listening(int ready_fd)
{
    if (ready_fd >= 0) {
        (void)!write(ready_fd, "", 1);
        close(ready_fd);
    }
}

#define MAX_INPUTS 8

// KEY_POWER pressed on any input device (evdev); never returns.
static void watch_keys(int ready_fd)
{
    struct pollfd fds[MAX_INPUTS];
    int n = 0;

    for (int i = 0; i < MAX_INPUTS; i++) {
        char path[32];
        int fd;

        snprintf(path, sizeof(path), "/dev/input/event%d", i);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0)
            fds[n++] = (struct pollfd){.fd = fd, .events = POLLIN};
    }
    if (n == 0)
        _exit(1); // no input devices either: the button does nothing
    listening(ready_fd);
    for (;;) {
        if (poll(fds, (nfds_t)n, -1) <= 0)
            continue;
        for (int i = 0; i < n; i++) {
            struct input_event ev[16];
            ssize_t got;

            if (!(fds[i].revents & POLLIN))
                continue;
            got = read(fds[i].fd, ev, sizeof(ev));
            for (ssize_t k = 0; got > 0 && k < got / (ssize_t)sizeof(ev[0]); k++)
                if (ev[k].type == EV_KEY && ev[k].code == KEY_POWER && ev[k].value == 1)
                    kill(1, SIGPWR);
        }
    }
}

pid_t power_button_watch(void)
{
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    char buf[1024];
    int fd, group, ready[2] = {-1, -1};
    pid_t pid;

    if (pipe2(ready, O_CLOEXEC) < 0)
        ready[0] = ready[1] = -1;
    pid = fork();
    if (pid != 0) {
        char c;

        if (ready[1] >= 0)
            close(ready[1]);
        if (pid > 0 && ready[0] >= 0)
            (void)!read(ready[0], &c, 1); // a byte when it listens, end of file if it gave up
        if (ready[0] >= 0)
            close(ready[0]);
        return pid;
    }
    if (ready[0] >= 0)
        close(ready[0]);
    fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
    group = fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -1 : acpi_group(fd);
    if (group < 0 ||
        setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) < 0) {
        if (fd >= 0)
            close(fd);
        watch_keys(ready[1]); // no ACPI events in this kernel: a key, if there is one
    }
    listening(ready[1]);
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);

        if (n > 0 && memmem(buf, (size_t)n, "button/power", 12))
            kill(1, SIGPWR);
    }
}
