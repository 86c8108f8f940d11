/* seccomp allowlists, one per thread kind, built with libseccomp; each allowed call says why. */
#include "sandbox.h"

#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>

#define LOW32 0xffffffffULL

struct builder {
    scmp_filter_ctx ctx;
    int err;
};

static void rule(struct builder *b, int nr, unsigned n, const struct scmp_arg_cmp *args)
{
    int r;

    if (b->err)
        return;
    r = seccomp_rule_add_array(b->ctx, SCMP_ACT_ALLOW, nr, n, args);
    if (r < 0)
        b->err = r;
}

/* Any arguments. */
#define ALLOW(b, name) rule(b, SCMP_SYS(name), 0, NULL)
/* One ioctl request number (the low 32 bits: glibc passes an int). */
#define ALLOW_IOCTL(b, req)                                                                        \
    rule(b, SCMP_SYS(ioctl), 1, (struct scmp_arg_cmp[]){SCMP_A1(SCMP_CMP_MASKED_EQ, LOW32, req)})

/* Memory management for malloc, thread stacks and io_uring rings, never executable. */
static void memory(struct builder *b)
{
    struct scmp_arg_cmp noexec = SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0);

    rule(b, SCMP_SYS(mmap), 1, &noexec);     /* malloc arenas, large allocations */
    rule(b, SCMP_SYS(mprotect), 1, &noexec); /* malloc grows thread arenas in place */
    ALLOW(b, munmap);                        /* free, teardown of guest memory and rings */
    ALLOW(b, madvise);                       /* free trims, thread exit releases its stack */
    ALLOW(b, brk);                           /* malloc's main heap */
    ALLOW(b, mremap);                        /* realloc of large blocks (glib in libslirp) */
}

/* What every ember thread does. */
static void common(struct builder *b)
{
    memory(b);
    ALLOW(b, futex);           /* mutexes, condition variables, pthread_join */
    ALLOW(b, write);           /* log lines on stderr, eventfd wake-ups, console output */
    ALLOW(b, clock_gettime);   /* timestamps (vDSO falls back to the call on some clocks) */
    ALLOW(b, gettimeofday);    /* the same through glib */
    ALLOW(b, getpid);          /* pthread_kill's tgkill */
    ALLOW(b, gettid);          /* pthread_kill */
    ALLOW(b, tgkill);          /* VCPU_KICK_SIGNAL kicks a vCPU out of KVM_RUN */
    ALLOW(b, rt_sigprocmask);  /* pthread_kill blocks signals around the kick */
    ALLOW(b, rt_sigreturn);    /* return from the vCPU kick handler */
    ALLOW(b, restart_syscall); /* a call interrupted by a signal resumes */
    ALLOW(b, sched_yield);     /* spin-then-yield in glibc locks */
    ALLOW(b, exit);            /* a thread ends */
    ALLOW(b, exit_group);      /* ember ends (and the SIGSYS report's _exit) */
    ALLOW_IOCTL(b, TCGETS);    /* isatty() before every log line */
    /* The SIGSYS report and the console at exit put the terminal back, on stdin only. */
    rule(b, SCMP_SYS(ioctl), 2,
         (struct scmp_arg_cmp[]){SCMP_A0(SCMP_CMP_EQ, 0),
                                 SCMP_A1(SCMP_CMP_MASKED_EQ, LOW32, TCSETS)});
}

/* Device work that a vCPU's MMIO write can start and the event loop does all the time. */
static void device_work(struct builder *b)
{
    ALLOW(b, read);                /* eventfds, signalfd, stdin, TAP frames */
    ALLOW(b, epoll_ctl);           /* devices watch and unwatch backends (virtio-net reset) */
    ALLOW(b, io_uring_enter);      /* virtio-blk submits and, on reset, drains its requests */
    ALLOW(b, preadv);              /* virtio-blk without io_uring */
    ALLOW(b, pwritev);             /* virtio-blk without io_uring */
    ALLOW(b, pwritev2);            /* virtio-blk write-through (RWF_DSYNC) without io_uring */
    ALLOW(b, fdatasync);           /* virtio-blk flush without io_uring */
    ALLOW(b, fallocate);           /* virtio-blk discard and write-zeroes */
    ALLOW(b, readv);               /* TAP frames */
    ALLOW(b, writev);              /* TAP frames */
    ALLOW_IOCTL(b, KVM_IRQ_LINE);  /* the UART raises its interrupt line */
    ALLOW_IOCTL(b, TUNSETOFFLOAD); /* virtio-net passes the guest's offloads to the TAP */
    ALLOW_IOCTL(b, BLKDISCARD);    /* virtio-blk discard on a block device */
    ALLOW_IOCTL(b, BLKZEROOUT);    /* virtio-blk write-zeroes on a block device */
}

static void vcpu(struct builder *b)
{
    common(b);
    device_work(b);
    ALLOW_IOCTL(b, KVM_RUN);      /* run the guest */
    ALLOW_IOCTL(b, KVM_GET_REGS); /* name the instruction of a triple fault */
}

/* libslirp's host sockets (--net user) and the control socket (QMP). */
static void sockets(struct builder *b)
{
    static const int families[] = {AF_UNIX, AF_INET, AF_INET6};

    for (unsigned i = 0; i < sizeof(families) / sizeof(families[0]); i++)
        rule(b, SCMP_SYS(socket), 1,
             (struct scmp_arg_cmp[]){SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)families[i])});
    ALLOW(b, connect);     /* slirp: the guest's outgoing TCP/UDP connections */
    ALLOW(b, bind);        /* slirp: host forwards, UDP sockets */
    ALLOW(b, listen);      /* slirp: host forwards */
    ALLOW(b, accept);      /* slirp: connections to host forwards */
    ALLOW(b, accept4);     /* QMP clients */
    ALLOW(b, shutdown);    /* slirp: the guest closed half a connection */
    ALLOW(b, sendto);      /* slirp UDP/ICMP, console output to a socket */
    ALLOW(b, recvfrom);    /* slirp UDP/ICMP */
    ALLOW(b, sendmsg);     /* QMP replies (and passed descriptors) */
    ALLOW(b, recvmsg);     /* QMP requests, slirp ICMP errors */
    ALLOW(b, getsockopt);  /* slirp: SO_ERROR of a connecting socket */
    ALLOW(b, setsockopt);  /* slirp: socket options of new connections */
    ALLOW(b, getsockname); /* slirp: local address of a connection */
    ALLOW(b, getpeername); /* slirp */
    ALLOW(b, fcntl);       /* slirp and QMP make sockets non-blocking */
}

/* Building a VM again after a guest reboot (--on-reboot restart only). */
static void rebuild(struct builder *b)
{
    static const unsigned long kvm[] = {
            KVM_CREATE_VM,
            KVM_SET_TSS_ADDR,
            KVM_SET_IDENTITY_MAP_ADDR,
            KVM_CREATE_IRQCHIP,
            KVM_CREATE_PIT2,
            KVM_GET_IRQCHIP,
            KVM_SET_IRQCHIP,
            KVM_SET_USER_MEMORY_REGION,
            KVM_CREATE_VCPU,
            KVM_GET_VCPU_MMAP_SIZE,
            KVM_GET_SUPPORTED_CPUID,
            KVM_SET_CPUID2,
            KVM_GET_MSR_INDEX_LIST,
            KVM_SET_MSRS,
            KVM_GET_LAPIC,
            KVM_SET_LAPIC,
            KVM_GET_SREGS,
            KVM_SET_SREGS,
            KVM_SET_REGS,
            KVM_SET_FPU,
            KVM_CHECK_EXTENSION,
            KVM_SET_GSI_ROUTING,
            TUNSETIFF,
            TUNSETVNETHDRSZ,
            TUNGETIFF,
            BLKGETSIZE64,
    };

    /* New vCPU threads start under this filter too. The loop allows the rest of what they do
     * already; a rule added twice leaks memory in libseccomp 2.5. */
    ALLOW_IOCTL(b, KVM_RUN);
    ALLOW_IOCTL(b, KVM_GET_REGS);
    /* ...and load their own on top: libseccomp sets no-new-privs, then the filter. */
    rule(b, SCMP_SYS(prctl), 1,
         (struct scmp_arg_cmp[]){SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)PR_SET_NO_NEW_PRIVS)});
    ALLOW(b, seccomp);
    for (unsigned i = 0; i < sizeof(kvm) / sizeof(kvm[0]); i++)
        ALLOW_IOCTL(b, kvm[i]);         /* KVM VM, vCPU and device set-up; TAP and disk sizing */
    rule(b, SCMP_SYS(openat), 0, NULL); /* kernel, initrd, disks, /dev/net/tun */
    ALLOW(b, newfstatat);               /* file sizes and types */
    ALLOW(b, fstat);                    /* file sizes and types */
    ALLOW(b, lseek);                    /* the loaders */
    ALLOW(b, eventfd2);                 /* ioeventfds, irqfds, wake-ups */
    ALLOW(b, timerfd_create);           /* slirp's timer */
    ALLOW(b, epoll_create1);            /* slirp's socket set */
    ALLOW(b, io_uring_setup);           /* virtio-blk */
    ALLOW(b, io_uring_register);        /* virtio-blk probes the ring */
    ALLOW(b, clone3);                   /* vCPU threads */
    ALLOW(b, clone);                    /* vCPU threads (older glibc) */
    ALLOW(b, set_robust_list);          /* a new thread starts */
    ALLOW(b, rseq);                     /* a new thread starts */
    ALLOW(b, rt_sigaction);             /* the vCPU kick handler */
    ALLOW(b, sysinfo);                  /* glib */
}

static void loop(struct builder *b, int can_rebuild)
{
    common(b);
    device_work(b);
    sockets(b);
    ALLOW(b, epoll_wait);          /* the event loop */
    ALLOW(b, epoll_pwait);         /* the event loop (newer glibc) */
    ALLOW(b, poll);                /* console flush and input; slirp */
    ALLOW(b, ppoll);               /* the same through newer glibc */
    ALLOW(b, close);               /* slirp connections end; teardown */
    ALLOW(b, unlink);              /* the control socket's path, at exit */
    ALLOW(b, timerfd_settime);     /* slirp's timers, exec's time limit */
    ALLOW(b, timerfd_gettime);     /* slirp's timers */
    ALLOW(b, getrandom);           /* slirp: TCP initial sequence numbers, glib */
    ALLOW(b, pread64);             /* virtio-blk without io_uring */
    ALLOW(b, pwrite64);            /* virtio-blk without io_uring */
    ALLOW_IOCTL(b, KVM_IOEVENTFD); /* teardown: devices unregister their notifications */
    ALLOW_IOCTL(b, KVM_IRQFD);     /* teardown: devices unregister their interrupts */
    ALLOW_IOCTL(b, TCSETSW);       /* the same through tcsetattr(TCSADRAIN) */
    ALLOW_IOCTL(b, FIONBIO);       /* slirp makes sockets non-blocking */
    ALLOW_IOCTL(b, FIONREAD);      /* slirp: bytes waiting on a socket */
    ALLOW_IOCTL(b, TIOCGWINSZ);    /* ember-oci: the terminal's size for the guest's pty */
    if (can_rebuild)
        rebuild(b);
}

static void supervisor(struct builder *b)
{
    common(b);
    ALLOW(b, read);       /* its signalfd */
    ALLOW(b, wait4);      /* the jailed ember's status */
    ALLOW(b, waitid);     /* the same */
    ALLOW(b, poll);       /* waits for signals and the child */
    ALLOW(b, ppoll);      /* the same */
    ALLOW(b, close);      /* its descriptors */
    ALLOW(b, unlinkat);   /* removes the jail's mount points */
    ALLOW(b, unlink);     /* the same */
    ALLOW(b, rmdir);      /* the jail's directories, the cgroup */
    ALLOW(b, newfstatat); /* before removing a jail entry */
}

void *seccomp_build_filter(const struct sandbox_filter_opts *o)
{
    struct builder b = {.ctx = seccomp_init(o->default_action)};

    if (!b.ctx)
        return NULL;
    /* Calls of another architecture (x32, i386) get the same action as forbidden ones. */
    b.err = seccomp_attr_set(b.ctx, SCMP_FLTATR_ACT_BADARCH, o->default_action);
    switch (o->kind) {
    case SANDBOX_THREAD_VCPU:
        vcpu(&b);
        break;
    case SANDBOX_THREAD_LOOP:
        loop(&b, o->rebuild);
        break;
    default:
        supervisor(&b);
        break;
    }
    if (b.err) {
        seccomp_release(b.ctx);
        return NULL;
    }
    return b.ctx;
}
