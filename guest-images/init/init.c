// ember guest init: mounts the basics, signals the VMM, runs the kernel-cmdline command (or a
// shell), powers off.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "power.h"

#include "exec.h"

// ember's marker page: boot marker at offset 0, exit-status byte at offset 8.
#define MARKER_PAGE_PHYS   0xC0000000UL
#define MARKER_BOOT_OFFSET 0
#define MARKER_EXIT_OFFSET 8
#define MARKER_BOOT_VALUE  123

static int is_pid1;
static volatile sig_atomic_t power_pressed, power_deadline;

// SIGPWR from the power button watcher; SIGALRM when the command had its time to exit.
static void on_power(int sig)
{
    if (sig == SIGPWR)
        power_pressed = 1;
    else
        power_deadline = 1;
}

static void say(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(buf))
        n = sizeof(buf) - 1;
    ssize_t off = 0;
    while (off < n) {
        ssize_t w = write(STDOUT_FILENO, buf + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += w;
    }
}

// Write one byte into ember's marker page through /dev/mem. Silent on failure:
// without ember (e.g. under QEMU) nothing is mapped there and the write is dropped.
static void poke_marker(size_t offset, uint8_t value)
{
    if (!is_pid1)
        return; // never poke physical memory when run as a test program on a host
    int fd = open("/dev/mem", O_RDWR | O_SYNC | O_CLOEXEC);
    if (fd < 0)
        return;
    long page = sysconf(_SC_PAGESIZE);
    void *p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, MARKER_PAGE_PHYS);
    close(fd);
    if (p == MAP_FAILED)
        return;
    ((volatile uint8_t *)p)[offset] = value;
    munmap(p, page);
}

// True if path is already a mount point (different device than its parent).
static int is_mounted(const char *path)
{
    char parent[256];
    struct stat a, b;
    snprintf(parent, sizeof(parent), "%s/..", path);
    return stat(path, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev;
}

static void mount_fs(const char *type, const char *target, unsigned long flags, const char *opts)
{
    mkdir(target, 0755); // fails harmlessly if it exists or the root is read-only
    if (is_mounted(target))
        return;
    if (mount(type, target, type, flags, opts) != 0 && errno != EBUSY)
        say("ember-init: mount %s on %s: %s\n", type, target, strerror(errno));
}

// Point fds 0-2 at /dev/console (the kernel may have opened it already; this makes sure).
static void use_console(void)
{
    int fd = open("/dev/console", O_RDWR | O_NOCTTY);
    if (fd < 0)
        return;
    for (int i = 0; i < 3; i++)
        if (fd != i)
            dup2(fd, i);
    if (fd > 2)
        close(fd);
}

// The command runs in its own process group, in the foreground of the console, so Ctrl-C
// reaches it. Init stays the session leader: a child's exit must not hang the console up,
// which would throw away output the UART has not sent yet.
static pid_t spawn(char *const argv[])
{
    pid_t pid = fork();
    if (pid != 0) {
        if (pid > 0)
            setpgid(pid, pid);
        return pid;
    }
    setpgid(0, 0);
    tcsetpgrp(STDIN_FILENO, getpid()); // SIGTTOU is ignored (inherited from init)
    signal(SIGTTOU, SIG_DFL);
    execvp(argv[0], argv);
    int err = errno;
    say("ember-init: cannot run '%s': %s\n", argv[0], strerror(err));
    _exit(err == ENOENT ? 127 : 126); // as shells do: not found, or found but not runnable
}

// Reap children (orphans included) until `child` exits; return its shell-style status.
// On the power button the command's process group gets SIGTERM, and SIGKILL 5 s later.
static int wait_for(pid_t child)
{
    int termed = 0, killed = 0;
    for (;;) {
        int st;
        pid_t pid;
        // A press before the first wait (the button works from the boot marker on) counts too.
        if (power_pressed && !termed) {
            termed = 1;
            kill(-child, SIGTERM);
            alarm(5);
        }
        if (power_deadline && !killed) {
            killed = 1;
            kill(-child, SIGKILL);
        }
        pid = wait(&st);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid < 0)
            return 127;
        if (pid != child)
            continue;
        if (WIFEXITED(st))
            return WEXITSTATUS(st);
        if (WIFSIGNALED(st))
            return 128 + WTERMSIG(st);
    }
}

static void finish(int status)
{
    tcsetpgrp(STDIN_FILENO, getpgrp()); // the console is ours again
    tcdrain(STDOUT_FILENO);             // the command's output leaves first
    if (power_pressed)
        say("EMBER-POWERDOWN\n"); // no exit status: the VMM reports a plain power-off
    else
        say("EMBER-EXIT=%d\n", status);
    tcdrain(STDOUT_FILENO); // make sure the line left the UART before the VMM may stop us
    sync();
    if (!power_pressed)
        poke_marker(MARKER_EXIT_OFFSET, (uint8_t)status);
    if (!is_pid1)
        exit(status);
    reboot(RB_POWER_OFF);
    for (;;) // PID 1 must never exit: that would panic the kernel
        pause();
}

int main(int argc, char *argv[])
{
    is_pid1 = getpid() == 1;
    signal(SIGTTOU, SIG_IGN); // init may set the console's foreground group from any group
    if (is_pid1) {
        struct sigaction sa = {.sa_handler = on_power}; // no SA_RESTART: wait() returns EINTR

        mount_fs("devtmpfs", "/dev", MS_NOSUID, "mode=0755");
        use_console();
        setsid();                          // init leads the console's session...
        ioctl(STDIN_FILENO, TIOCSCTTY, 1); // ...and holds it as controlling terminal
        // The power button works once the VMM hears of the boot: listen before the marker.
        sigaction(SIGPWR, &sa, NULL);
        sigaction(SIGALRM, &sa, NULL);
        power_button_watch();
    }
    poke_marker(MARKER_BOOT_OFFSET, MARKER_BOOT_VALUE);
    say("EMBER-INIT-READY\n");
    if (is_pid1) {
        mount_fs("proc", "/proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        mount_fs("sysfs", "/sys", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        mount_fs("devpts", "/dev/pts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666");
        mount_fs("tmpfs", "/tmp", MS_NOSUID | MS_NODEV, "mode=1777");
        mount_fs("tmpfs", "/run", MS_NOSUID | MS_NODEV, "mode=0755");
    }
    setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1);
    setenv("HOME", "/root", 1);
    setenv("TERM", "linux", 1);

    if (is_pid1 && exec_requested()) {
        finish(exec_main()); // `ember exec`: command and streams over virtio-console ports
    } else if (argc > 1) {
        finish(wait_for(spawn(argv + 1)));
    } else {
        char *shell[] = {"/bin/sh", NULL};
        finish(wait_for(spawn(shell)));
    }
    return 0;
}
