/* `ember run`: assemble the microVM (vCPUs, devices, kernel, the machine's description), run
 * the event loop until the guest stops, and turn the reason into ember's exit code. */
#include "run.h"
#include "arch.h"
#include "clock.h"
#include "cmdline.h"
#include "control.h"
#include "devices.h"
#include "eventloop.h"
#include "exec.h"
#include "exec_io.h"
#include "exitcode.h"
#include "ged.h"
#include "pl061.h"
#include "jail.h"
#include "log.h"
#include "sandbox.h"
#include "snapshot.h"
#include "snapshot_mem.h"
#include "snapshot_run.h"
#include "virtio_devices.h"
#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_VIRTIO ARCH_MAX_VIRTIO
/* What is still queued for slow readers when the VM stops gets this long, all of it together. */
#define EXIT_FLUSH_MS 5000
_Static_assert(MAX_VIRTIO <= SNAP_MAX_VIRTIO, "every device in a snapshot");

struct machine {
    const struct vm_config *cfg;
    struct virtio_dev virtio[MAX_VIRTIO];
    int nr_virtio;
    char virtio_params[MAX_VIRTIO * 40]; /* virtio_mmio.device=... (--virtio-cmdline) */
    struct console con_off;              /* the UART's console when hvc0 is the console */
    struct timespec start_wall;
    int kvm_fd;
    struct vm vm;
    struct console con;
    struct out_stream stdout_stream; /* opened before the jail, taken by con */
    int64_t flush_deadline;          /* clock_ms() by which exit's output must be out, or 0 */
    struct serial serial;
    struct ctrl_page ctrl;
    struct loop loop;
    int dev_wake_fd; /* console output queued, or the UART drained its input */
    int signal_fd;
    struct loop_handler h_vm_wake, h_dev_wake, h_signal, h_stdin, h_stdout;
    int stdin_watched, stdin_is_file, stdout_watched;
    struct ged ged;             /* ACPI power button (system_powerdown, x86_64) */
    struct pl061 gpio;          /* GPIO power button (system_powerdown, aarch64) */
    struct control *ctl;        /* --api-sock: the control socket, or NULL */
    int prelaunch_signal;       /* a stop signal that came before the VM was built */
    int sandboxed;              /* privileges dropped and the loop's seccomp filter in (once) */
    struct loop_handler h_jail; /* signals relayed by the jail's supervisor */
    struct snap_runner snap;    /* a snapshot being saved (snapshot-save, exec's ready state) */
    int snap_restored;          /* the snapshot in cfg->snap was used: later builds boot */
    enum { EXEC_SNAP_NONE, EXEC_SNAP_WANTED, EXEC_SNAP_PAUSING, EXEC_SNAP_SAVING } exec_snap;
};

static struct snap_parts parts(struct machine *m);

/* ---- event loop handlers ---- */

static void drain_eventfd(int fd)
{
    uint64_t v;

    (void)!read(fd, &v, sizeof(v));
}

static void pump_output(struct machine *m)
{
    size_t left = console_drain(&m->con);
    int want = left > 0 && m->con.out.fd >= 0;

    if (want != m->stdout_watched) {
        if (want && loop_add(&m->loop, &m->h_stdout, EPOLLOUT) == 0)
            m->stdout_watched = 1;
        else if (!want) {
            loop_del(&m->loop, &m->h_stdout);
            m->stdout_watched = 0;
        }
    }
}

static void stop_stdin(struct machine *m)
{
    if (m->stdin_watched)
        loop_del(&m->loop, &m->h_stdin);
    m->stdin_watched = 0;
    m->con.in_fd = -1;
}

/* Watch stdin only while the guest has room for input. Paused, it leaves epoll altogether:
 * epoll reports a hang-up (a pipe at EOF) even with no events asked for. */
static void watch_stdin(struct machine *m, int on)
{
    if (m->stdin_is_file || on == m->stdin_watched)
        return;
    if (!on) {
        loop_del(&m->loop, &m->h_stdin);
        m->stdin_watched = 0;
    } else if (loop_add(&m->loop, &m->h_stdin, EPOLLIN) == 0) {
        m->stdin_watched = 1;
    }
}

/* Read console input while the guest has room for it (UART FIFO, hvc0 receive buffers); pause
 * stdin when it has none. */
static void pump_input(struct machine *m)
{
    for (;;) {
        size_t room;

        if (m->con.in_fd < 0)
            return;
        room = console_input_room(&m->con);
        watch_stdin(m, room > 0);
        if (room == 0)
            return;
        if (console_read_input(&m->con, room) < 0) {
            stop_stdin(m); /* EOF: the guest just gets no more input */
            return;
        }
        if (m->con.quit) {
            m->vm.stop_signal = SIGINT;
            vm_request_stop(&m->vm, STOP_SIGNAL);
            return;
        }
        if (!m->stdin_is_file)
            return; /* epoll tells us when there is more */
    }
}

/* ---- `ember exec`'s ready snapshot: the guest waits for its command; save it once ---- */

static void exec_saved(void *opaque, int err, const char *why)
{
    struct machine *m = opaque;

    if (!err)
        m->cfg->snap_out->saved = 1;
    else if (err != -ECANCELED)
        log_warn("exec: the ready snapshot was not saved (%s); the next exec boots afresh",
                 why[0] ? why : strerror(-err));
    m->exec_snap = EXEC_SNAP_NONE;
    vm_resume(&m->vm);
    exec_io_release(m->cfg->exec); /* now the command goes to the guest */
}

static void exec_save(struct machine *m)
{
    struct snap_parts p = parts(m);
    int err;

    m->exec_snap = EXEC_SNAP_SAVING;
    err = snap_runner_start(&m->snap, &p, m->cfg->snap_out->state_fd, m->cfg->snap_out->mem_fd,
                            exec_saved, m);
    if (err)
        exec_saved(m, err, "");
}

/* The exec ports saw the guest open its stdin (a device callback: no device work here). */
static void on_exec_ready(void *opaque)
{
    struct machine *m = opaque;
    uint64_t one = 1;

    if (m->exec_snap != EXEC_SNAP_WANTED)
        return;
    m->exec_snap = EXEC_SNAP_PAUSING;
    vm_pause(&m->vm);
    (void)!write(m->vm.wake_fd, &one, sizeof(one)); /* on_vm_wake checks the pause */
}

static void on_vm_wake(struct loop_handler *h, uint32_t events)
{
    struct machine *m = container_of(h, struct machine, h_vm_wake);

    (void)events;
    drain_eventfd(h->fd);
    if (m->exec_snap == EXEC_SNAP_PAUSING && vm_all_paused(&m->vm))
        exec_save(m);
    control_wake(m->ctl);
}

static void on_dev_wake(struct loop_handler *h, uint32_t events)
{
    struct machine *m = container_of(h, struct machine, h_dev_wake);

    (void)events;
    drain_eventfd(h->fd);
    pump_output(m);
    pump_input(m);
}

static void on_stdout(struct loop_handler *h, uint32_t events)
{
    (void)events;
    pump_output(container_of(h, struct machine, h_stdout));
}

static void on_stdin(struct loop_handler *h, uint32_t events)
{
    (void)events;
    pump_input(container_of(h, struct machine, h_stdin));
}

static void on_signal(struct loop_handler *h, uint32_t events)
{
    struct machine *m = container_of(h, struct machine, h_signal);
    struct signalfd_siginfo si;

    (void)events;
    if (read(h->fd, &si, sizeof(si)) != sizeof(si))
        return;
    if (control_prelaunch(m->ctl)) { /* no VM yet: ember_run ends the wait */
        m->prelaunch_signal = (int)si.ssi_signo;
        return;
    }
    if (exec_agent_host_signal(m->cfg->exec, (int)si.ssi_signo))
        return; /* ember-oci: the workload's signal, or the terminal's new size */
    log_info("stopping the VM on signal %d (%s)", (int)si.ssi_signo, strsignal((int)si.ssi_signo));
    m->vm.stop_signal = (int)si.ssi_signo;
    vm_request_stop(&m->vm, STOP_SIGNAL);
}

/* The jail's supervisor relays SIGINT/SIGTERM/SIGHUP through a pipe (it runs as another
 * user and may not signal us); its end of file means it is gone: stop as on SIGHUP. Sent to
 * ourselves, the signal takes the usual signalfd path. */
static void on_jail_signal(struct loop_handler *h, uint32_t events)
{
    struct machine *m = container_of(h, struct machine, h_jail);
    uint8_t sig;

    (void)events;
    if (read(h->fd, &sig, 1) != 1) {
        sig = SIGHUP;
        loop_del(&m->loop, h);
    }
    tgkill(getpid(), gettid(), sig);
}

/* ---- building the machine ---- */

static struct snap_parts parts(struct machine *m)
{
    return (struct snap_parts){&m->vm,    &m->serial,   &m->ctrl, &m->ged,
                               m->virtio, m->nr_virtio, m->cfg};
}

/* The bus a platform device of the map sits on. */
static struct bus *bus_of(struct vm *vm, const struct arch_dev *d)
{
    return d->bus == ARCH_BUS_PIO ? &vm->pio : &vm->mmio;
}

static int setup_devices(struct machine *m)
{
    struct vm *vm = &m->vm;
    const struct arch_map *a = &arch_map;
    int err;

    /* With hvc0 as the console the UART stays (early boot messages, probing) but is mute. */
    err = serial_init(&m->serial, vm,
                      m->cfg->console == CONSOLE_KIND_SERIAL ? &m->con : &m->con_off,
                      bus_of(vm, &a->uart), a->uart.addr, a->uart.irq, m->dev_wake_fd);
    if (!err)
        err = pvpanic_init(vm, bus_of(vm, &a->pvpanic), a->pvpanic.addr);
    if (!err)
        err = ctrl_page_init(&m->ctrl, vm, a->ctrl_page, m->cfg->boot_timer, &m->start_wall);
    if (!err) /* exec's output still queued in the guest is written out after the stop */
        m->ctrl.stop_on_status = m->cfg->exec != NULL;
    if (!err && a->ged.bus != ARCH_BUS_NONE)
        err = ged_init(&m->ged, vm, a->ged.addr, a->ged.irq);
    if (!err && a->gpio_keys.bus != ARCH_BUS_NONE)
        err = pl061_init(&m->gpio, vm, &m->loop, a->gpio_keys.addr, a->gpio_keys.irq);
    if (!err)
        err = arch_add_devices(vm);
    if (err)
        log_err("cannot register the platform devices: %s", strerror(-err));
    return err;
}

/* Exit code for a -errno from building the machine (a device, the kernel): the host ran out
 * of something (memory, descriptors, I/O) is ember failing, 125; anything else is input the
 * host cannot honour (a missing disk, a busy TAP, a taken port, a bad kernel), 126. */
static int build_failure_code(int err)
{
    switch (-err) {
    case ENOMEM:
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case EAGAIN:
    case ENOSPC:
    case EIO:
        return EXIT_VMM_ERROR;
    default:
        return EXIT_USAGE;
    }
}

/* One virtio-mmio slot and GSI per device, in the order the guest will number them. err is
 * what the device's constructor returned; returns 0 or an exit code. */
static int add_virtio(struct machine *m, int err)
{
    struct virtio_dev *d;
    uint64_t base = arch_map.virtio_base + (uint64_t)m->nr_virtio * VIRTIO_MMIO_SIZE;
    uint32_t irq = arch_map.virtio_irq_first + (uint32_t)m->nr_virtio;
    size_t used = strlen(m->virtio_params);

    if (err)
        return build_failure_code(err); /* the constructor failed and said why */
    if (m->nr_virtio < 0 || m->nr_virtio >= MAX_VIRTIO)
        return EXIT_VMM_ERROR; /* cannot happen: the config limits add up to MAX_VIRTIO */
    d = &m->virtio[m->nr_virtio];
    d->slot = (unsigned)m->nr_virtio;
    /* Eventfds, KVM_IOEVENTFD, KVM_IRQFD, the loop: only the host can fail here. */
    err = virtio_mmio_init(d, &m->vm, &m->loop, base, irq);
    if (err) {
        if (d->ops->destroy)
            d->ops->destroy(d);
        return EXIT_VMM_ERROR;
    }
    /* The DSDT describes every device; a kernel that also finds it on its command line
     * registers it twice, and the second probe fails with an error line on the console.
     * Architectures described by a device tree never announce them there. */
    if (m->cfg->virtio_cmdline && arch_map.virtio_cmdline)
        snprintf(m->virtio_params + used, sizeof(m->virtio_params) - used,
                 "%svirtio_mmio.device=4K@0x%llx:%u", used ? " " : "", (unsigned long long)base,
                 irq);
    m->nr_virtio++;
    return 0;
}

/* 0, or the exit code of the first device that could not be set up. */
static int setup_virtio(struct machine *m)
{
    const struct vm_config *cfg = m->cfg;
    int code = 0;

    m->nr_virtio = 0;
    m->virtio_params[0] = '\0';
    for (int i = 0; !code && i < cfg->nr_disks; i++)
        code = add_virtio(m, virtio_blk_create(&m->virtio[m->nr_virtio], &cfg->disk[i], &m->loop));
    for (int i = 0; !code && i < cfg->nr_nets; i++)
        code = add_virtio(m, virtio_net_create(&m->virtio[m->nr_virtio], &cfg->net[i], &m->loop));
    if (!code && cfg->console == CONSOLE_KIND_VIRTIO)
        code = add_virtio(m, virtio_console_create(&m->virtio[m->nr_virtio], &m->con, &m->loop));
    if (!code && cfg->exec)
        code = add_virtio(m,
                          virtio_exec_ports_create(&m->virtio[m->nr_virtio], cfg->exec, &m->loop));
    if (!code && !cfg->no_rng)
        code = add_virtio(m, virtio_rng_create(&m->virtio[m->nr_virtio], &m->loop));
    return code;
}

/* The devices that hold host resources, then the VM. */
static void destroy_vm(struct machine *m)
{
    for (int i = 0; i < m->nr_virtio; i++)
        virtio_mmio_destroy(&m->virtio[i]);
    m->nr_virtio = 0;
    pl061_destroy(&m->gpio);
    vm_destroy(&m->vm);
}

/* system_powerdown: the machine's power button, whichever it has (-ENODEV: none). */
static int press_power_button(void *opaque)
{
    struct machine *m = opaque;

    return m->ged.vm ? ged_power_button(&m->ged) : pl061_power_button(&m->gpio);
}

static int setup_kernel(struct machine *m)
{
    const struct vm_config *cfg = m->cfg;
    char cmdline[CMDLINE_MAX];
    const char *base = cfg->no_default_cmdline ? NULL : cmdline_default(cfg->console);
    struct arch_kernel k = {
            .kernel_path = cfg->kernel,
            .initrd_path = cfg->initrd,
            .cmdline = cmdline,
    };
    int bad_arg = -1;
    int n = cmdline_build(cmdline, sizeof(cmdline), base, cfg->cmdline, m->virtio_params,
                          cfg->init_args, cfg->nr_init_args, &bad_arg);

    if (n == -EINVAL) {
        log_err("guest argument %d ('%s') has a double quote or control character, which the "
                "kernel command line cannot carry",
                bad_arg + 1, cfg->init_args[bad_arg]);
        return -EINVAL;
    }
    if (n < 0) {
        log_err("the kernel command line is longer than %d bytes; shorten --cmdline or the "
                "guest command",
                CMDLINE_MAX - 1);
        return -E2BIG;
    }
    log_debug("kernel command line: %s", cmdline);
    return arch_load_kernel(&m->vm, &k);
}

/* Boot: the kernel, every vCPU's entry state, the machine's description (ACPI tables or
 * device tree). 0 or the exit code. */
static int boot_vm(struct machine *m)
{
    struct arch_machine am = {.nr_virtio = m->nr_virtio};
    int err;

    for (int i = 0; i < m->nr_virtio; i++)
        am.virtio[i] = (struct arch_virtio){m->virtio[i].mmio_base, m->virtio[i].irq};
    err = setup_kernel(m);
    if (err)
        return build_failure_code(err);
    if (arch_vcpus_boot(&m->vm) || arch_describe(&m->vm, &am))
        return EXIT_VMM_ERROR;
    return 0;
}

/* A snapshot's machine: the devices get its state, the vCPUs and VM theirs; no kernel, no
 * machine description (guest memory holds them). A snapshot that does not fit is the user's
 * input. */
static int restore_vm(struct machine *m, const struct snapshot *snap)
{
    struct snap_parts p = parts(m);

    if (snapshot_restore_devices(snap, &p))
        return EXIT_USAGE;
    if (snapshot_restore_cpus(snap, &m->vm))
        return EXIT_USAGE;
    return 0;
}

/* Returns 0, or the exit code: EXIT_USAGE when the user's input (kernel, initrd, command
 * line, a device option, a snapshot) is at fault, EXIT_VMM_ERROR when the host is. */
static int build_vm(struct machine *m)
{
    struct snapshot *snap = m->snap_restored ? NULL : m->cfg->snap;
    int code = EXIT_VMM_ERROR;

    if (vm_create(&m->vm, m->kvm_fd, m->cfg->memory, m->cfg->cpus, m->cfg->hugepages,
                  snap ? snapshot_memory_fd(snap) : -1))
        return code;
    m->vm.boot_timer = m->cfg->boot_timer;
    m->vm.start_wall = m->start_wall;
    /* The vCPUs first: an architecture may need them before any interrupt exists (aarch64's
     * vGIC is sized by them, and irqfds need the vGIC). */
    if (vm_open_vcpus(&m->vm) || setup_devices(m))
        goto fail;
    code = setup_virtio(m);
    if (code)
        goto fail;
    code = EXIT_VMM_ERROR;
    if (snap) {
        code = restore_vm(m, snap);
        if (code && m->cfg->exec) {
            snapshot_discard(snap); /* the cache's: the next exec makes a new one */
            log_err("exec: run the command again, or pass --no-snapshot");
        }
        if (code)
            goto fail;
        m->snap_restored = 1;
    } else {
        code = boot_vm(m);
        if (code)
            goto fail;
    }
    control_vm_built(m->ctl, &(struct machine_view){.vm = &m->vm,
                                                    .virtio = m->virtio,
                                                    .nr_virtio = m->nr_virtio,
                                                    .power_button = press_power_button,
                                                    .power_opaque = m,
                                                    .ctrl = &m->ctrl,
                                                    .snap = &m->snap,
                                                    .parts = parts(m)});
    return 0;
fail:
    destroy_vm(m);
    return code;
}

/* Name a missing or unreadable file before anything else, so the error is about it. */
static int check_file(const char *flag, const char *path)
{
    const char *why;
    int err = config_check_file(path, &why);

    if (err)
        log_err("%s %s: %s", flag, path, why);
    return err;
}

/* ---- running ---- */

void run_host_signals(const struct vm_config *cfg, sigset_t *mask)
{
    static const int forwarded[] = {SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};

    sigemptyset(mask);
    sigaddset(mask, SIGINT);
    sigaddset(mask, SIGTERM);
    sigaddset(mask, SIGHUP);
    if (cfg->exec && cfg->exec->ctl) /* ember-oci passes these on to the workload */
        for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
            sigaddset(mask, forwarded[i]);
}

static int setup_host(struct machine *m)
{
    sigset_t mask;
    int err;

    run_host_signals(m->cfg, &mask);
    if (pthread_sigmask(SIG_BLOCK, &mask, NULL))
        return -EINVAL;
    m->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (m->signal_fd < 0)
        return log_errno("signalfd");
    m->dev_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (m->dev_wake_fd < 0)
        return log_errno("eventfd");
    err = loop_init(&m->loop);
    if (!err)
        err = snap_runner_init(&m->snap, &m->loop);
    if (err)
        return err;
    err = console_init(&m->con_off, CONSOLE_OFF, m->dev_wake_fd, NULL);
    if (!err)
        err = console_init(&m->con,
                           m->cfg->console == CONSOLE_KIND_NONE ? CONSOLE_OFF : CONSOLE_STDIO,
                           m->dev_wake_fd, &m->stdout_stream);
    if (err)
        return err;
    m->h_signal = (struct loop_handler){.fd = m->signal_fd, .fn = on_signal};
    m->h_dev_wake = (struct loop_handler){.fd = m->dev_wake_fd, .fn = on_dev_wake};
    m->h_stdout = (struct loop_handler){.fd = m->con.out.fd, .fn = on_stdout};
    m->h_stdin = (struct loop_handler){.fd = STDIN_FILENO, .fn = on_stdin};
    err = loop_add(&m->loop, &m->h_signal, EPOLLIN);
    if (!err)
        err = loop_add(&m->loop, &m->h_dev_wake, EPOLLIN);
    if (err)
        return log_errno("epoll_ctl");
    if (m->con.in_fd >= 0) {
        if (loop_add(&m->loop, &m->h_stdin, EPOLLIN) == 0)
            m->stdin_watched = 1;
        else if (errno == EPERM)
            m->stdin_is_file = 1; /* regular file or /dev/null: always readable */
        else
            m->con.in_fd = -1;
    }
    if (jail_signal_fd() >= 0) {
        m->h_jail = (struct loop_handler){.fd = jail_signal_fd(), .fn = on_jail_signal};
        if (loop_add(&m->loop, &m->h_jail, EPOLLIN))
            return log_errno("epoll_ctl");
    }
    return 0;
}

static void teardown_host(struct machine *m)
{
    snap_runner_close(&m->snap);
    console_close(&m->con);
    out_stream_close(&m->stdout_stream); /* not taken: the console never came up */
    loop_close(&m->loop);
    if (m->signal_fd >= 0)
        close(m->signal_fd);
    if (m->dev_wake_fd >= 0)
        close(m->dev_wake_fd);
}

/* The VM is built, no guest instruction has run: drop privileges (vCPU threads inherit it). */
static int sandbox_before_start(struct machine *m)
{
    /* In a jail: become its user first (files and /dev/kvm were opened as root, in the jail). */
    if (m->sandboxed)
        return 0;
    return jail_drop_ids(m->cfg) ? -EPERM : sandbox_drop_privileges();
}

/* The vCPU threads installed their own filters before KVM_RUN; now the event loop's. */
static int sandbox_after_start(struct machine *m)
{
    if (m->sandboxed)
        return 0;
    m->sandboxed = 1;
    return sandbox_enter_thread(SANDBOX_THREAD_LOOP, -1);
}

#ifdef EMBER_SANDBOX_SELFTEST
/* Test builds only (meson -Dsandbox_selftest=true): EMBER_SELFTEST_KVM_RUN=efault takes guest
 * RAM away from KVM (PROT_NONE) before the first instruction, so KVM_RUN fails as it does on
 * backing memory KVM cannot use. */
static void selftest_kvm_run(struct vm *vm)
{
    const char *want = getenv("EMBER_SELFTEST_KVM_RUN");

    if (!want || strcmp(want, "efault") != 0)
        return;
    log_info("selftest: guest RAM made inaccessible to KVM");
    for (int i = 0; i < vm->mem.nr_regions; i++)
        mprotect(vm->mem.region[i].host, vm->mem.region[i].size, PROT_NONE);
}
#endif

/* Run the built VM until it stops; returns the stop reason. */
static enum vm_stop_reason run_vm(struct machine *m)
{
    int err;

#ifdef EMBER_SANDBOX_SELFTEST
    selftest_kvm_run(&m->vm);
#endif
    m->h_vm_wake = (struct loop_handler){.fd = m->vm.wake_fd, .fn = on_vm_wake};
    err = loop_add(&m->loop, &m->h_vm_wake, EPOLLIN);
    if (m->cfg->exec && m->cfg->snap_out && !m->cfg->snap) {
        m->exec_snap = EXEC_SNAP_WANTED; /* the first boot of these images: save it ready */
        m->cfg->exec->hold = 1;
        m->cfg->exec->on_ready = on_exec_ready;
        m->cfg->exec->ready_opaque = m;
    }
    if (err || sandbox_before_start(m) || vm_start(&m->vm) || sandbox_after_start(m)) {
        vm_request_stop(&m->vm, STOP_ERROR);
    } else {
        control_vm_started(m->ctl);
        if (m->stdin_is_file)
            pump_input(m);
        while (!atomic_load(&m->vm.stopping))
            if (loop_run_once(&m->loop, -1) < 0)
                vm_request_stop(&m->vm, STOP_ERROR);
    }
    snap_runner_cancel(&m->snap); /* a save in progress cannot finish without the VM */
    /* Let blocked console writers finish, then stop for good and collect the threads. What is
     * still queued for slow readers (console, the command's streams, the control socket's
     * clients) gets one deadline in all. */
    m->flush_deadline = clock_ms() + EXIT_FLUSH_MS;
    console_flush(&m->con, m->flush_deadline);
    console_shutdown(&m->con);
    vm_join(&m->vm);
    if (m->cfg->exec)
        exec_io_flush(m->cfg->exec, m->flush_deadline); /* what the command wrote */
    console_resume(&m->con);
    console_flush(&m->con, m->flush_deadline);
    control_vm_gone(m->ctl);
    loop_del(&m->loop, &m->h_vm_wake);
    log_debug("console: %llu bytes queued, %llu dropped", (unsigned long long)m->con.head,
              (unsigned long long)m->con.dropped);
    return (enum vm_stop_reason)atomic_load(&m->vm.stop_reason);
}

static int exit_code(const struct machine *m, enum vm_stop_reason r)
{
    switch (r) {
    case STOP_POWEROFF:
        return m->vm.exit_status >= 0 ? m->vm.exit_status : EXIT_GUEST_POWEROFF;
    case STOP_RESET:
        return EXIT_GUEST_RESET;
    case STOP_PANIC:
        return EXIT_GUEST_PANIC;
    case STOP_CRASH:
        return EXIT_GUEST_CRASH;
    case STOP_SIGNAL:
        return EXIT_SIGNAL_BASE + m->vm.stop_signal;
    case STOP_TIMEOUT:
        return EXIT_TIMEOUT;
    case STOP_QUIT:
        return 0;
    default:
        return EXIT_VMM_ERROR;
    }
}

/* A snapshot is to be restored by the next build (only the first: a reset boots afresh). */
static int restore_pending(const struct machine *m)
{
    return m->cfg->snap && !m->snap_restored;
}

/* --api-sock without --kernel: serve the control socket until `cont` (returns -1: build the
 * VM), `quit` (0) or a stop signal (128+n). */
static int wait_for_start(struct machine *m, enum vm_stop_reason *reason)
{
    while (!control_start_requested(m->ctl)) {
        if (control_quit_requested(m->ctl)) {
            *reason = STOP_QUIT;
            return 0;
        }
        if (m->prelaunch_signal) {
            log_info("stopping on signal %d (%s) before the VM was started", m->prelaunch_signal,
                     strsignal(m->prelaunch_signal));
            *reason = STOP_SIGNAL;
            return EXIT_SIGNAL_BASE + m->prelaunch_signal;
        }
        if (loop_run_once(&m->loop, -1) < 0) {
            *reason = STOP_ERROR;
            return EXIT_VMM_ERROR;
        }
    }
    return -1;
}

int ember_run(struct vm_config *cfg, const struct timespec *start_wall)
{
    struct machine *m = calloc(1, sizeof(*m));
    enum vm_stop_reason reason = STOP_ERROR;
    int code = EXIT_VMM_ERROR, host_reset;

    if (!m) {
        log_err("out of memory");
        return EXIT_VMM_ERROR;
    }
    m->cfg = cfg;
    m->start_wall = *start_wall;
    m->signal_fd = m->dev_wake_fd = m->kvm_fd = -1;
    m->loop.epfd = -1;
    m->snap.efd = -1;
    m->con.out.fd = m->con.in_fd = -1;
    m->con_off.out.fd = m->con_off.in_fd = -1;
    m->stdout_stream.fd = -1;
    console_terminal_foreground(); /* before the jail hides process groups */
    if (sandbox_prepare(cfg))
        goto out;
    if (cfg->restore && !cfg->snap &&
        (snapshot_open(&cfg->snap, cfg->restore) || snapshot_merge_config(cfg->snap, cfg))) {
        code = EXIT_USAGE;
        goto out;
    }
    if (!cfg->snap &&
        (check_file("--kernel", cfg->kernel) || check_file("--initrd", cfg->initrd))) {
        code = EXIT_USAGE;
        goto out;
    }
    /* Before the jail's pivot_root: a non-blocking stdout of our own needs /proc. */
    if (cfg->console != CONSOLE_KIND_NONE && out_stream_open(&m->stdout_stream, STDOUT_FILENO)) {
        log_errno("console: cannot open stdout");
        goto out;
    }
    /* The supervisor (1) returns the jailed child's code; the child (0) goes on, in the jail. */
    if (jail_enter((struct vm_config *)cfg, &code))
        goto out;
    if (!cfg->jail.dir && (cfg->api_sock || cfg->snap_out))
        snap_mem_prepare(); /* a jailed ember did this before /proc went away */
    if (setup_host(m))
        goto out;
    if (control_open(&m->ctl, cfg, &m->loop, start_wall)) {
        code = EXIT_USAGE;
        goto out;
    }
    /* system_reset builds the VM again; blockdev-change-medium opens files (not for ember-oci,
     * whose socket offers neither) */
    if (m->ctl && !control_serves_container(m->ctl))
        sandbox_allow_rebuild(1);
    if (m->ctl || cfg->snap_out) /* snapshot-save, exec's ready snapshot */
        sandbox_allow_snapshot(1);
    for (;;) {
        if (control_prelaunch(m->ctl)) {
            code = wait_for_start(m, &reason);
            if (code >= 0)
                break;
        }
        control_build_begin(m->ctl);
        if (m->kvm_fd < 0)
            m->kvm_fd = kvm_open();
        code = m->kvm_fd < 0 ? EXIT_VMM_ERROR : EXIT_USAGE;
        if (m->kvm_fd >= 0 && (!restore_pending(m) || snapshot_merge_config(cfg->snap, cfg) == 0))
            code = build_vm(m);
        if (code && control_build_failed(m->ctl))
            continue; /* `cont` got the error; wait for configuration again */
        if (code)
            goto out;
        reason = run_vm(m);
        code = exit_code(m, reason);
        if (cfg->exec) {
            cfg->exec->stop_reason = (int)reason;
            cfg->exec->guest_status = m->vm.exit_status;
        }
        destroy_vm(m);
        host_reset = control_take_host_reset(m->ctl);
        if (!host_reset && (reason != STOP_RESET || cfg->on_reboot != ON_REBOOT_RESTART))
            break;
        control_reset(m->ctl, !host_reset);
        if (host_reset)
            log_info("system_reset on the control socket; booting the VM again");
        else
            log_info("the guest rebooted; booting it again (--on-reboot restart)");
    }
    if (cfg->exec)
        code = exec_exit_code(cfg->exec, code);
    else if (reason == STOP_RESET)
        log_info("the guest rebooted; exiting with code %d (--on-reboot exit)", code);
out:
    control_shutdown(m->ctl, reason, code); /* SHUTDOWN reaches clients before we exit */
    control_close(m->ctl, m->flush_deadline ? clock_ms_left(m->flush_deadline) : 2000);
    if (m->kvm_fd >= 0)
        close(m->kvm_fd);
    teardown_host(m);
    free(m);
    snapshot_free(cfg->snap);
    cfg->snap = NULL;
    return code;
}
