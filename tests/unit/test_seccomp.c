/* Unit tests for the seccomp allowlists: each filter loaded in a child (forbidden calls fail
 * with EPERM here instead of stopping ember), then a call tried: per configuration, per thread
 * kind, tgkill to other processes, ioctls ember does not use. */
#include "check.h"
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/kvm.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

enum probe {
    P_SOCKET_INET,
    P_SOCKET_UNIX,
    P_CONNECT,
    P_ACCEPT4,
    P_TGKILL_SELF,
    P_TGKILL_PARENT,
    P_PREADV,
    P_IO_URING_ENTER,
    P_WRITEV,
    P_BLKDISCARD,
    P_BLKZEROOUT,
    P_GSI_ROUTING,
    P_KVM_RUN,
    P_FCNTL_SETFL,
    P_FCNTL_DUPFD,
    P_PREAD,
    P_GET_MSRS,
    P_FTRUNCATE,
};

/* Raw system calls: sanitizer runtimes wrap the libc functions with calls of their own. */
static long try(enum probe p)
{
    char buf[8];
    struct iovec iov = {buf, sizeof(buf)};

    switch (p) {
    case P_SOCKET_INET:
        return syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
    case P_SOCKET_UNIX:
        return syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
    case P_CONNECT:
        return syscall(SYS_connect, -1, NULL, 0);
    case P_ACCEPT4:
        return syscall(SYS_accept4, -1, NULL, NULL, 0);
    case P_TGKILL_SELF:
        return syscall(SYS_tgkill, getpid(), gettid(), 0);
    case P_TGKILL_PARENT:
        return syscall(SYS_tgkill, getppid(), getppid(), 0);
    case P_PREADV:
        return syscall(SYS_preadv, -1, &iov, 1, 0, 0);
    case P_IO_URING_ENTER:
        return syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0);
    case P_WRITEV:
        return syscall(SYS_writev, -1, &iov, 1);
    case P_BLKDISCARD:
        return syscall(SYS_ioctl, -1, BLKDISCARD, NULL);
    case P_BLKZEROOUT:
        return syscall(SYS_ioctl, -1, BLKZEROOUT, NULL);
    case P_GSI_ROUTING:
        return syscall(SYS_ioctl, -1, KVM_SET_GSI_ROUTING, NULL);
    case P_KVM_RUN:
        return syscall(SYS_ioctl, -1, KVM_RUN, 0);
    case P_FCNTL_SETFL:
        return syscall(SYS_fcntl, 0, F_SETFL, O_NONBLOCK);
    case P_PREAD:
        return syscall(SYS_pread64, -1, NULL, 0, 0);
    case P_FCNTL_DUPFD:
        return syscall(SYS_fcntl, 0, F_DUPFD_CLOEXEC, 3);
    case P_GET_MSRS:
        return syscall(SYS_ioctl, -1, KVM_GET_MSRS, NULL);
    case P_FTRUNCATE:
        return syscall(SYS_ftruncate, -1, 0);
    }
    return -1;
}

/* Does the filter of kind (for a VM that needs `needs`) let the probe's call through? A child
 * loads it (with EPERM for what it forbids) and tries. */
static int allowed_snap(enum sandbox_thread kind, unsigned needs, int rebuild, int snapshot,
                        enum probe p)
{
    pid_t pid = fork();
    int st;

    if (pid == 0) {
        struct sandbox_filter_opts o = {.kind = kind,
                                        .default_action = SCMP_ACT_ERRNO(EPERM),
                                        .rebuild = rebuild,
                                        .snapshot = snapshot,
                                        .needs = needs,
                                        .pid = getpid()};
        void *ctx = seccomp_build_filter(&o);

        int code = 2;

        if (ctx && seccomp_load(ctx) == 0)
            code = try(p) < 0 && errno == EPERM ? 1 : 0;
        /* Not _exit: sanitizers make calls of their own before a noreturn function. */
        syscall(SYS_exit_group, code);
    }
    CHECK(pid > 0);
    CHECK_EQ(waitpid(pid, &st, 0), pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) < 2);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static int allowed(enum sandbox_thread kind, unsigned needs, int rebuild, enum probe p)
{
    return allowed_snap(kind, needs, rebuild, 0, p);
}

#define LOOP SANDBOX_THREAD_LOOP
#define VCPU SANDBOX_THREAD_VCPU
#define ALL  (SANDBOX_NEEDS_DISK | SANDBOX_NEEDS_TAP | SANDBOX_NEEDS_INET | SANDBOX_NEEDS_API)

/* Internet sockets only for --net user; the control socket's calls only with --api-sock. */
static void test_sockets_per_configuration(void)
{
    CHECK(!allowed(LOOP, 0, 0, P_SOCKET_INET));
    CHECK(!allowed(LOOP, SANDBOX_NEEDS_TAP | SANDBOX_NEEDS_API, 1, P_SOCKET_INET));
    CHECK(!allowed(LOOP, 0, 0, P_CONNECT));
    CHECK(allowed(LOOP, SANDBOX_NEEDS_INET, 0, P_SOCKET_INET));
    CHECK(allowed(LOOP, SANDBOX_NEEDS_INET, 0, P_CONNECT));
    CHECK(!allowed(LOOP, ALL, 1, P_SOCKET_UNIX)); /* the control socket listens before */
    CHECK(!allowed(LOOP, 0, 0, P_ACCEPT4));
    CHECK(allowed(LOOP, SANDBOX_NEEDS_API, 0, P_ACCEPT4));
    CHECK(!allowed(VCPU, ALL, 0, P_SOCKET_INET));
}

/* tgkill reaches ember's own threads, nothing else. */
static void test_tgkill_own_pid_only(void)
{
    for (int kind = LOOP; kind <= SANDBOX_THREAD_SUPERVISOR; kind++) {
        CHECK(allowed(kind, ALL, 0, P_TGKILL_SELF));
        CHECK(!allowed(kind, ALL, 0, P_TGKILL_PARENT));
    }
}

/* Rebuilding the VM (--on-reboot restart, a control socket) reads the kernel again. */
static void test_rebuild(void)
{
    CHECK(!allowed(LOOP, ALL, 0, P_PREAD));
    CHECK(allowed(LOOP, 0, 1, P_PREAD));
}

/* Block and TAP I/O only on the event loop, and only when the VM has a disk or a TAP. */
static void test_device_io_per_configuration(void)
{
    CHECK(!allowed(LOOP, SANDBOX_NEEDS_TAP, 0, P_PREADV));
    CHECK(!allowed(LOOP, SANDBOX_NEEDS_TAP, 0, P_IO_URING_ENTER));
    CHECK(!allowed(LOOP, SANDBOX_NEEDS_TAP, 0, P_BLKDISCARD));
    CHECK(allowed(LOOP, SANDBOX_NEEDS_DISK, 0, P_PREADV));
    CHECK(allowed(LOOP, SANDBOX_NEEDS_DISK, 0, P_IO_URING_ENTER));
    CHECK(allowed(LOOP, SANDBOX_NEEDS_DISK, 0, P_BLKDISCARD));
    CHECK(!allowed(LOOP, SANDBOX_NEEDS_DISK, 0, P_WRITEV));
    CHECK(allowed(LOOP, SANDBOX_NEEDS_TAP, 0, P_WRITEV));
    CHECK(allowed(VCPU, 0, 0, P_KVM_RUN));
    CHECK(!allowed(LOOP, 0, 0, P_KVM_RUN));
}

/* A vCPU's MMIO write only changes device state and wakes the loop: no device I/O on a vCPU
 * thread in any configuration. */
static void test_vcpu_does_no_device_work(void)
{
    CHECK(!allowed(VCPU, ALL, 0, P_PREADV));
    CHECK(!allowed(VCPU, ALL, 0, P_IO_URING_ENTER));
    CHECK(!allowed(VCPU, ALL, 0, P_BLKDISCARD));
    CHECK(!allowed(VCPU, ALL, 0, P_WRITEV));
}

/* Requests ember never makes are gone, even with everything configured. */
static void test_unused_ioctls(void)
{
    CHECK(allowed(LOOP, 0, 0, P_FCNTL_SETFL));
    CHECK(!allowed(LOOP, ALL, 1, P_FCNTL_DUPFD));
    for (int kind = LOOP; kind <= VCPU; kind++) {
        CHECK(!allowed(kind, ALL, 1, P_BLKZEROOUT));
        CHECK(!allowed(kind, ALL, 1, P_GSI_ROUTING));
    }
}

/* A snapshot's state reads and file calls only where one may be saved; with every other rule
 * on too, the filter still builds (no rule added twice). */
static void test_snapshot(void)
{
    CHECK(!allowed(LOOP, ALL, 1, P_GET_MSRS));
    CHECK(!allowed(LOOP, ALL, 1, P_FTRUNCATE));
    CHECK(allowed_snap(LOOP, 0, 0, 1, P_GET_MSRS));
    CHECK(allowed_snap(LOOP, 0, 0, 1, P_FTRUNCATE));
    CHECK(allowed_snap(LOOP, 0, 0, 1, P_PREAD)); /* pagemap */
    CHECK(allowed_snap(LOOP, ALL, 1, 1, P_GET_MSRS));
    CHECK(allowed_snap(LOOP, ALL, 1, 1, P_FTRUNCATE));
    CHECK(!allowed_snap(VCPU, ALL, 1, 1, P_GET_MSRS));
}

int main(void)
{
    test_sockets_per_configuration();
    test_tgkill_own_pid_only();
    test_device_io_per_configuration();
    test_vcpu_does_no_device_work();
    test_unused_ioctls();
    test_rebuild();
    test_snapshot();
    return check_done("seccomp");
}
