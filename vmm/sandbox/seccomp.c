/* seccomp allowlists, one per thread kind, built with libseccomp; each allowed call says why. */
#include "sandbox.h"
#include "seccomp_rules.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <sys/prctl.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>

void seccomp_rule(struct seccomp_builder *b, int nr, unsigned n, const struct scmp_arg_cmp *args)
{
    int r;

    if (b->err)
        return;
    if (n == 0 && nr >= 0 && nr < SECCOMP_MAX_NR) {
        if (b->any_args[nr / 8] & (1u << (nr % 8)))
            return;
        b->any_args[nr / 8] |= (uint8_t)(1u << (nr % 8));
    }
    r = seccomp_rule_add_array(b->ctx, SCMP_ACT_ALLOW, nr, n, args);
    if (r < 0)
        b->err = r;
}

void seccomp_allow_ioctls(struct seccomp_builder *b, const unsigned long *req, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ALLOW_IOCTL(b, req[i]);
}

/* Memory management for malloc, thread stacks and io_uring rings, never executable. */
static void memory(struct seccomp_builder *b)
{
    struct scmp_arg_cmp noexec = SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0);

    seccomp_rule(b, SCMP_SYS(mmap), 1, &noexec);     /* malloc arenas, large allocations */
    seccomp_rule(b, SCMP_SYS(mprotect), 1, &noexec); /* malloc grows thread arenas in place */
    ALLOW(b, munmap);                                /* free, teardown of guest memory and rings */
    ALLOW(b, madvise); /* free trims, thread exit releases its stack */
    ALLOW(b, brk);     /* malloc's main heap */
    ALLOW(b, mremap);  /* realloc of large blocks (glib in libslirp) */
}

/* What every ember thread does. */
static void common(struct seccomp_builder *b, pid_t pid)
{
    memory(b);
    ALLOW(b, futex);         /* mutexes, condition variables, pthread_join */
    ALLOW(b, write);         /* log lines on stderr, eventfd wake-ups, console output */
    ALLOW(b, clock_gettime); /* timestamps (vDSO falls back to the call on some clocks) */
    ALLOW(b, gettimeofday);  /* the same through glib */
    ALLOW(b, getpid);        /* pthread_kill's tgkill */
    ALLOW(b, gettid);        /* pthread_kill */
    /* VCPU_KICK_SIGNAL kicks a vCPU out of KVM_RUN: to ember's own threads only. */
    seccomp_rule(b, SCMP_SYS(tgkill), 1,
                 (struct scmp_arg_cmp[]){SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)pid)});
    ALLOW(b, rt_sigprocmask);  /* pthread_kill blocks signals around the kick */
    ALLOW(b, rt_sigreturn);    /* return from the vCPU kick handler */
    ALLOW(b, restart_syscall); /* a call interrupted by a signal resumes */
    ALLOW(b, sched_yield);     /* spin-then-yield in glibc locks */
    ALLOW(b, exit);            /* a thread ends */
    ALLOW(b, exit_group);      /* ember ends (and the SIGSYS report's _exit) */
    ALLOW_IOCTL(b, TCGETS);    /* isatty() before every log line */
    /* The SIGSYS report and the console at exit put the terminal back, on stdin only. */
    seccomp_rule(b, SCMP_SYS(ioctl), 2,
                 (struct scmp_arg_cmp[]){SCMP_A0(SCMP_CMP_EQ, 0),
                                         SCMP_A1(SCMP_CMP_MASKED_EQ, SECCOMP_LOW32, TCSETS)});
}

/* virtio-blk's backing files (--disk). */
static void disk_io(struct seccomp_builder *b)
{
    ALLOW(b, io_uring_enter);   /* submits and reaps; a reset drains (its rings take only
                                   the opcodes virtio-blk uses: IORING_REGISTER_RESTRICTIONS) */
    ALLOW(b, preadv);           /* without io_uring */
    ALLOW(b, pwritev);          /* without io_uring */
    ALLOW(b, pwritev2);         /* write-through (RWF_DSYNC) without io_uring */
    ALLOW(b, pwrite64);         /* write-zeroes where the file system cannot */
    ALLOW(b, fdatasync);        /* flush without io_uring */
    ALLOW(b, fallocate);        /* discard and write-zeroes */
    ALLOW_IOCTL(b, BLKDISCARD); /* discard on a block device */
}

/* A TAP device's frames (--net tap=, tap-fd=). */
static void tap_io(struct seccomp_builder *b)
{
    ALLOW(b, readv);               /* frames in */
    ALLOW(b, writev);              /* frames out */
    ALLOW_IOCTL(b, TUNSETOFFLOAD); /* the guest's offloads, at activation and reset */
}

/* Device work, on the event loop: only for the devices the VM has. */
static void device_work(struct seccomp_builder *b, unsigned needs)
{
    ALLOW(b, read);      /* eventfds, signalfd, stdin */
    ALLOW(b, epoll_ctl); /* devices watch and unwatch queues and backends */
    if (needs & SANDBOX_NEEDS_DISK)
        disk_io(b);
    if (needs & SANDBOX_NEEDS_TAP)
        tap_io(b);
}

static void vcpu(struct seccomp_builder *b, const struct sandbox_filter_opts *o)
{
    common(b, o->pid);
    ALLOW_IOCTL(b, KVM_RUN);      /* run the guest */
    ALLOW_IOCTL(b, KVM_IRQ_LINE); /* the UART raises its interrupt line */
    seccomp_arch_vcpu(b);
    /* No device work: an MMIO write only changes device state in memory and wakes the event
     * loop (an eventfd write), which does the rest (activation, reset, I/O). */
    (void)o->needs;
}

/* fcntl only to read and set a descriptor's flags (O_NONBLOCK, FD_CLOEXEC): no duplicating,
 * locking, leases, owners or signals. */
static void fcntl_flags(struct seccomp_builder *b)
{
    static const int cmds[] = {F_GETFL, F_SETFL, F_GETFD, F_SETFD};

    for (unsigned i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        seccomp_rule(b, SCMP_SYS(fcntl), 1,
                     (struct scmp_arg_cmp[]){
                             SCMP_A1(SCMP_CMP_MASKED_EQ, SECCOMP_LOW32, (scmp_datum_t)cmds[i])});
}

/* The control socket (--api-sock). */
static void control_socket(struct seccomp_builder *b)
{
    ALLOW(b, accept4); /* clients (a control socket may rebuild: see rebuild() too) */
}

/* libslirp's host sockets (--net user): the only thread kind that may make Internet sockets. */
static void inet_sockets(struct seccomp_builder *b)
{
    static const int families[] = {AF_INET, AF_INET6};

    for (unsigned i = 0; i < sizeof(families) / sizeof(families[0]); i++)
        seccomp_rule(b, SCMP_SYS(socket), 1,
                     (struct scmp_arg_cmp[]){SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)families[i])});
    ALLOW(b, connect);        /* the guest's outgoing TCP/UDP connections */
    ALLOW(b, bind);           /* host forwards, UDP sockets */
    ALLOW(b, listen);         /* host forwards */
    ALLOW(b, accept);         /* connections to host forwards */
    ALLOW(b, shutdown);       /* the guest closed half a connection */
    ALLOW(b, sendmsg);        /* UDP and ICMP */
    ALLOW(b, recvmsg);        /* ICMP errors */
    ALLOW(b, getsockopt);     /* SO_ERROR of a connecting socket */
    ALLOW(b, setsockopt);     /* options of new connections */
    ALLOW(b, getsockname);    /* local address of a connection */
    ALLOW(b, getpeername);    /* peer of a connection */
    ALLOW_IOCTL(b, FIONBIO);  /* the same, through ioctl */
    ALLOW_IOCTL(b, FIONREAD); /* bytes waiting on a socket */
}

/* Building a VM again after a guest reboot (--on-reboot restart only). */
static void rebuild(struct seccomp_builder *b)
{
    static const unsigned long kvm[] = {
            KVM_CREATE_VM,       KVM_SET_USER_MEMORY_REGION,
            KVM_CREATE_VCPU,     KVM_GET_VCPU_MMAP_SIZE,
            KVM_CHECK_EXTENSION, TUNSETIFF,
            TUNSETVNETHDRSZ,     TUNGETIFF,
            BLKGETSIZE64,
    };

    /* New vCPU threads start under this filter too. The loop allows the rest of what they do
     * already; a rule added twice leaks memory in libseccomp 2.5. */
    ALLOW_IOCTL(b, KVM_RUN);
    seccomp_arch_vcpu(b);
    /* ...and load their own on top: libseccomp sets no-new-privs, then the filter. */
    seccomp_rule(b, SCMP_SYS(prctl), 1,
                 (struct scmp_arg_cmp[]){SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)PR_SET_NO_NEW_PRIVS)});
    ALLOW(b, seccomp);
    /* KVM VM, vCPU and device set-up (the architecture's too); TAP and disk sizing */
    seccomp_allow_ioctls(b, kvm, sizeof(kvm) / sizeof(kvm[0]));
    seccomp_arch_build(b);
    ALLOW(b, openat);            /* kernel, initrd, disks, /dev/net/tun */
    ALLOW(b, newfstatat);        /* file sizes and types */
    ALLOW(b, fstat);             /* file sizes and types */
    ALLOW(b, lseek);             /* the loaders */
    ALLOW(b, pread64);           /* the loaders read kernel and initrd; query-metrics reads statm */
    ALLOW(b, eventfd2);          /* ioeventfds, irqfds, wake-ups */
    ALLOW(b, timerfd_create);    /* slirp's timer */
    ALLOW(b, epoll_create1);     /* slirp's socket set */
    ALLOW(b, io_uring_setup);    /* virtio-blk */
    ALLOW(b, io_uring_register); /* virtio-blk probes the ring */
    ALLOW(b, clone3);            /* vCPU threads */
    ALLOW(b, clone);             /* vCPU threads (older glibc) */
    ALLOW(b, set_robust_list);   /* a new thread starts */
    ALLOW(b, rseq);              /* a new thread starts */
    ALLOW(b, rt_sigaction);      /* the vCPU kick handler */
    ALLOW(b, sysinfo);           /* glib */
}

/* Saving a snapshot (snapshot-save, `ember exec`'s ready snapshot): reading every vCPU's and
 * the VM's state, writing the files. What this configuration's other rules allow already is
 * left out (a rule added twice leaks memory in libseccomp 2.5). */
static void snapshot(struct seccomp_builder *b, const struct sandbox_filter_opts *o)
{
    seccomp_arch_snapshot(b, o->rebuild); /* every vCPU's and the VM's state */
    ALLOW(b, ftruncate);                  /* the memory file: its size, all holes */
    ALLOW_OR(b, mkdir, mkdirat);          /* snapshot-save creates its directory */
    ALLOW(b, mkdirat);                    /* the same through newer glibc */
    ALLOW_OR(b, rmdir, unlinkat);         /* ...and removes it when the save fails */
    ALLOW_OR(b, rename, renameat);        /* ember exec (unjailed) publishes its ready snapshot */
    if (!(o->needs & SANDBOX_NEEDS_DISK)) {
        ALLOW(b, pwrite64);  /* the memory and state files */
        ALLOW(b, fdatasync); /* ...made durable */
    }
    if (o->rebuild)
        return;
    ALLOW(b, pread64);    /* which pages the guest touched (/proc/self/pagemap) */
    ALLOW(b, lseek);      /* where the memory file of a restored VM holds data */
    ALLOW(b, newfstatat); /* ember exec (unjailed): the size of its ready snapshot */
    ALLOW(b, fstat);      /* the same through older glibc */
}

static void loop(struct seccomp_builder *b, const struct sandbox_filter_opts *o)
{
    common(b, o->pid);
    device_work(b, o->needs);
    ALLOW_OR(b, epoll_wait, epoll_pwait); /* the event loop */
    ALLOW(b, epoll_pwait);                /* the event loop (newer glibc) */
    ALLOW_OR(b, poll, ppoll);             /* console flush and input; slirp */
    ALLOW(b, ppoll);                      /* the same through newer glibc */
    ALLOW(b, close);                      /* slirp connections end; teardown */
    ALLOW_OR(b, unlink, unlinkat);        /* at exit: the control socket, exec's --copy-in image */
    ALLOW(b, sendto);                     /* console output to a socket; control socket; slirp */
    ALLOW(b, recvfrom);                   /* control socket requests; slirp */
    ALLOW(b, timerfd_settime);            /* slirp's timers, exec's time limit */
    ALLOW(b, timerfd_gettime);            /* slirp's timers */
    ALLOW(b, getrandom);                  /* slirp: TCP initial sequence numbers, glib */
    fcntl_flags(b);                /* slirp's sockets, files opened at run time: O_NONBLOCK */
    ALLOW_IOCTL(b, KVM_IRQ_LINE);  /* the UART's interrupt line, on console input */
    ALLOW_IOCTL(b, KVM_IOEVENTFD); /* InterruptACK into KVM (and out at a reset); teardown */
    ALLOW_IOCTL(b, KVM_IRQFD);     /* teardown: devices unregister their interrupts */
    ALLOW_IOCTL(b, TCSETSW);       /* the terminal back through tcsetattr(TCSADRAIN) */
    if (o->needs & SANDBOX_NEEDS_API)
        control_socket(b);
    if (o->needs & SANDBOX_NEEDS_INET)
        inet_sockets(b);
    if (o->needs & SANDBOX_NEEDS_TTY)
        ALLOW_IOCTL(b, TIOCGWINSZ); /* ember-oci: the terminal's size, for the guest's pty */
    if (o->rebuild)
        rebuild(b);
    if (o->snapshot)
        snapshot(b, o);
}

static void supervisor(struct seccomp_builder *b, pid_t pid)
{
    common(b, pid);
    ALLOW_OR(b, getpgrp, getpgid); /* in the foreground? before it puts the terminal back */
    seccomp_rule(b, SCMP_SYS(ioctl), 2,
                 (struct scmp_arg_cmp[]){SCMP_A0(SCMP_CMP_EQ, 0),
                                         SCMP_A1(SCMP_CMP_MASKED_EQ, SECCOMP_LOW32, TIOCGPGRP)});
    ALLOW(b, read);           /* its signalfd */
    ALLOW(b, wait4);          /* the jailed ember's status */
    ALLOW(b, waitid);         /* the same */
    ALLOW_OR(b, poll, ppoll); /* waits for signals and the child */
    ALLOW(b, ppoll);          /* the same */
    ALLOW(b, close);          /* its descriptors */
    ALLOW(b, unlinkat);       /* the jail's files and directories, beneath its descriptor of DIR */
    ALLOW_OR(b, unlink, unlinkat); /* ember exec's --copy-in image */
    ALLOW_OR(b, rmdir, unlinkat);  /* the cgroup, ember exec's jail directory */
    ALLOW(b, newfstatat);          /* ember exec: is the ready snapshot the VM saved complete? */
    ALLOW(b, fstat);               /* the same through older glibc */
    ALLOW(b, pread64);             /* ...its state file read back */
    ALLOW_OR(b, rename, renameat); /* ...then it goes into the cache */
}

void *seccomp_build_filter(const struct sandbox_filter_opts *o)
{
    struct seccomp_builder b = {.ctx = seccomp_init(o->default_action)};

    if (!b.ctx)
        return NULL;
    /* Calls of another architecture (x32, i386) get the same action as forbidden ones. */
    b.err = seccomp_attr_set(b.ctx, SCMP_FLTATR_ACT_BADARCH, o->default_action);
    switch (o->kind) {
    case SANDBOX_THREAD_VCPU:
        vcpu(&b, o);
        break;
    case SANDBOX_THREAD_LOOP:
        loop(&b, o);
        break;
    default:
        supervisor(&b, o->pid);
        break;
    }
    if (b.err) {
        seccomp_release(b.ctx);
        return NULL;
    }
    return b.ctx;
}
