/* a64boot: boots an arm64 Linux Image under KVM with ember's aarch64 machine code (Image loader,
 * device tree, vCPU init with PSCI, in-kernel GICv3) and only a transmit-only 16550 and the
 * control page as devices: the proof, before ember's architecture split, that this code boots
 * Linux to its init. Not ember: no virtio, no sandbox, no control socket.
 *
 *   a64boot [-c CPUS] [-m MiB] KERNEL INITRD CMDLINE
 *
 * The guest's serial output goes to stdout. Exit status: the guest's exit-status byte if it
 * wrote one, else 0 after PSCI SYSTEM_OFF; 3 on SYSTEM_RESET, 2 on a guest panic, 1 when a64boot
 * or KVM failed. */
#include "boot/aarch64/fdt.h"
#include "boot/aarch64/gic.h"
#include "boot/aarch64/image.h"
#include "boot/aarch64/layout.h"
#include "boot/aarch64/vcpu.h"
#include "bus.h"
#include "guest_mem.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_CPUS 8

/* 16550 registers and bits this UART uses. */
#define UART_THR     0
#define UART_IER     1
#define UART_IIR     2
#define UART_LCR     3
#define UART_LSR     5
#define UART_MSR     6
#define UART_SCR     7
#define IER_THRI     0x02
#define IIR_NO_INT   0x01
#define IIR_THRI     0x02
#define LCR_DLAB     0x80
#define LSR_TX_EMPTY 0x60 /* THRE | TEMT: the transmitter is always idle */

struct machine {
    int kvm_fd, vm_fd, gic_fd, ncpus;
    int vcpu_fd[MAX_CPUS];
    struct kvm_run *run[MAX_CPUS];
    size_t run_size;
    pthread_t thread[MAX_CPUS];
    struct guest_mem mem;
    struct bus mmio;
    uint8_t ier, lcr, scr, irq_level;
    atomic_int stopping;
    int exit_status; /* -1: none written */
    int result;
    struct timespec start;
};

static struct machine vm = {.exit_status = -1};

static double ms_since_start(void)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - vm.start.tv_sec) * 1e3 +
           (double)(now.tv_nsec - vm.start.tv_nsec) / 1e6;
}

static void stop(int result)
{
    if (atomic_exchange(&vm.stopping, 1))
        return;
    vm.result = result;
    for (int i = 0; i < vm.ncpus; i++) {
        __atomic_store_n(&vm.run[i]->immediate_exit, 1, __ATOMIC_SEQ_CST);
        if (!pthread_equal(vm.thread[i], pthread_self()))
            pthread_kill(vm.thread[i], SIGUSR1);
    }
}

/* The UART's interrupt: asserted while the guest wants transmit-empty interrupts. */
static void uart_update_irq(void)
{
    uint8_t level = (vm.ier & IER_THRI) ? 1 : 0;
    struct kvm_irq_level irq = {.irq = (KVM_ARM_IRQ_TYPE_SPI << KVM_ARM_IRQ_TYPE_SHIFT) |
                                       (32 + A64_SPI_UART),
                                .level = level};

    if (level == vm.irq_level)
        return;
    vm.irq_level = level;
    if (ioctl(vm.vm_fd, KVM_IRQ_LINE, &irq) < 0)
        log_errno("KVM_IRQ_LINE (UART)");
}

static void uart_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
    (void)opaque;
    memset(data, 0, len);
    switch (off) {
    case UART_IER:
        data[0] = (vm.lcr & LCR_DLAB) ? 0 : vm.ier;
        break;
    case UART_IIR:
        data[0] = (vm.ier & IER_THRI) ? IIR_THRI : IIR_NO_INT;
        break;
    case UART_LCR:
        data[0] = vm.lcr;
        break;
    case UART_LSR:
        data[0] = LSR_TX_EMPTY;
        break;
    case UART_MSR:
        data[0] = 0xb0; /* DCD, DSR, CTS */
        break;
    case UART_SCR:
        data[0] = vm.scr;
        break;
    }
}

static void uart_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
    (void)opaque;
    (void)len;
    switch (off) {
    case UART_THR:
        if (!(vm.lcr & LCR_DLAB))
            (void)!write(STDOUT_FILENO, data, 1);
        break;
    case UART_IER:
        if (!(vm.lcr & LCR_DLAB)) {
            vm.ier = data[0] & 0x0f;
            uart_update_irq();
        }
        break;
    case UART_LCR:
        vm.lcr = data[0];
        break;
    case UART_SCR:
        vm.scr = data[0];
        break;
    }
}

static void ctrl_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
    (void)opaque;
    (void)len;
    if (off == 0 && data[0] == 123)
        fprintf(stderr, "a64boot: boot marker (the guest's init runs) after %.0f ms\n",
                ms_since_start());
    else if (off == 8)
        vm.exit_status = data[0];
}

static void pvpanic_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
    (void)opaque;
    (void)off;
    (void)len;
    if (data[0] & 1) {
        fprintf(stderr, "a64boot: the guest kernel panicked (pvpanic)\n");
        stop(2);
    }
}

static const struct bus_ops uart_ops = {uart_read, uart_write};
static const struct bus_ops ctrl_ops = {NULL, ctrl_write};
static const struct bus_ops pvpanic_ops = {NULL, pvpanic_write};

static void *vcpu_thread(void *arg)
{
    int i = (int)(intptr_t)arg;
    struct kvm_run *run = vm.run[i];

    while (!atomic_load(&vm.stopping)) {
        if (ioctl(vm.vcpu_fd[i], KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            log_err("vCPU %d: KVM_RUN: %s", i, strerror(errno));
            stop(1);
            break;
        }
        switch (run->exit_reason) {
        case KVM_EXIT_MMIO:
            if (run->mmio.len > sizeof(run->mmio.data))
                break;
            if (run->mmio.is_write)
                bus_write(&vm.mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len);
            else
                bus_read(&vm.mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len);
            break;
        case KVM_EXIT_SYSTEM_EVENT:
            fprintf(stderr, "a64boot: vCPU %d: PSCI %s after %.0f ms\n", i,
                    run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN ? "SYSTEM_OFF"
                    : run->system_event.type == KVM_SYSTEM_EVENT_RESET  ? "SYSTEM_RESET"
                                                                        : "system event",
                    ms_since_start());
            stop(run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN ? 0 : 3);
            break;
        case KVM_EXIT_INTR:
            break;
        default:
            log_err("vCPU %d: unexpected KVM exit %u", i, run->exit_reason);
            stop(1);
            break;
        }
    }
    return NULL;
}

static int read_file(const char *path, uint8_t **data, uint64_t *size)
{
    struct stat st;
    uint64_t done = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        log_err("%s: cannot open a regular file: %s", path, strerror(errno));
        return -1;
    }
    *size = (uint64_t)st.st_size;
    *data = malloc(*size ? *size : 1);
    while (*data && done < *size) {
        ssize_t n = read(fd, *data + done, *size - done);

        if (n <= 0) {
            log_err("%s: read failed", path);
            close(fd);
            return -1;
        }
        done += (uint64_t)n;
    }
    close(fd);
    return *data ? 0 : -1;
}

static int setup(uint64_t ram_size, const char *kernel, const char *initrd, const char *cmdline)
{
    struct kvm_userspace_memory_region mr;
    struct kvm_vcpu_init preferred;
    struct fdt_machine m;
    struct arm64_boot boot;
    uint8_t *kdata, *idata;
    uint64_t ksize, isize;
    void *ram;
    int size;

    vm.kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm.kvm_fd < 0)
        return log_errno("/dev/kvm");
    vm.vm_fd = ioctl(vm.kvm_fd, KVM_CREATE_VM, 0);
    if (vm.vm_fd < 0)
        return log_errno("KVM_CREATE_VM");
    ram = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
               -1, 0);
    if (ram == MAP_FAILED)
        return log_errno("mmap guest RAM");
    vm.mem.region[0] = (struct guest_region){.gpa = A64_RAM_BASE, .size = ram_size, .host = ram};
    vm.mem.nr_regions = 1;
    vm.mem.ram_size = ram_size;
    mr = (struct kvm_userspace_memory_region){.slot = 0,
                                              .guest_phys_addr = A64_RAM_BASE,
                                              .memory_size = ram_size,
                                              .userspace_addr = (uint64_t)(uintptr_t)ram};
    if (ioctl(vm.vm_fd, KVM_SET_USER_MEMORY_REGION, &mr) < 0)
        return log_errno("KVM_SET_USER_MEMORY_REGION");

    if (read_file(kernel, &kdata, &ksize) || arm64_image_load(&vm.mem, kdata, ksize, kernel, &boot))
        return -1;
    if (read_file(initrd, &idata, &isize) ||
        arm64_initrd_load(&vm.mem, idata, isize, initrd, &boot))
        return -1;

    vm.run_size = (size_t)ioctl(vm.kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (a64_vcpu_preferred(vm.vm_fd, &preferred))
        return -1;
    for (int i = 0; i < vm.ncpus; i++) {
        vm.vcpu_fd[i] = ioctl(vm.vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
        if (vm.vcpu_fd[i] < 0)
            return log_errno("KVM_CREATE_VCPU");
        vm.run[i] = mmap(NULL, vm.run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vm.vcpu_fd[i], 0);
        if (vm.run[i] == MAP_FAILED)
            return log_errno("mmap kvm_run");
        if (a64_vcpu_init(vm.vcpu_fd[i], i, &preferred))
            return -1;
    }
    vm.gic_fd = a64_gic_create(vm.vm_fd, vm.ncpus);
    if (vm.gic_fd < 0 || a64_gic_init(vm.gic_fd))
        return -1;

    memset(&m, 0, sizeof(m));
    m.ram_base = A64_RAM_BASE;
    m.ram_size = ram_size;
    m.nr_cpus = vm.ncpus;
    for (int i = 0; i < vm.ncpus; i++)
        if (a64_vcpu_mpidr(vm.vcpu_fd[i], i, &m.mpidr[i]))
            return -1;
    m.gicd_base = A64_GICD_BASE;
    m.gicd_size = A64_GICD_SIZE;
    m.gicr_base = A64_GICR_BASE;
    m.gicr_size = (uint64_t)vm.ncpus * A64_GICR_STRIDE;
    m.uart = (struct fdt_mmio_dev){A64_UART_GPA, A64_UART_SIZE, A64_SPI_UART};
    m.pvpanic_base = A64_PVPANIC_GPA;
    m.bootargs = cmdline;
    m.initrd_start = boot.initrd_start;
    m.initrd_size = boot.initrd_size;
    if (getrandom(m.rng_seed, sizeof(m.rng_seed), 0) != (ssize_t)sizeof(m.rng_seed))
        return log_errno("getrandom");
    size = fdt_build(&m, guest_ptr(&vm.mem, boot.dtb, A64_DTB_MAX), A64_DTB_MAX);
    if (size < 0) {
        log_err("fdt_build: %s", strerror(-size));
        return -1;
    }
    fprintf(stderr,
            "a64boot: %d vCPUs, %llu MiB at 0x%llx; kernel at 0x%llx-0x%llx, initrd at 0x%llx "
            "(%llu bytes), device tree at 0x%llx (%d bytes)\n",
            vm.ncpus, (unsigned long long)(ram_size >> 20), (unsigned long long)A64_RAM_BASE,
            (unsigned long long)boot.entry, (unsigned long long)boot.kernel_end,
            (unsigned long long)boot.initrd_start, (unsigned long long)boot.initrd_size,
            (unsigned long long)boot.dtb, size);
    if (a64_vcpu_boot_regs(vm.vcpu_fd[0], 0, boot.entry, boot.dtb))
        return -1;

    bus_init(&vm.mmio);
    if (bus_register(&vm.mmio, A64_UART_GPA, A64_UART_SIZE, &uart_ops, NULL, "uart") ||
        bus_register(&vm.mmio, A64_CTRL_PAGE_GPA, A64_CTRL_PAGE_SIZE, &ctrl_ops, NULL, "ctrl") ||
        bus_register(&vm.mmio, A64_PVPANIC_GPA, A64_PVPANIC_SIZE, &pvpanic_ops, NULL, "pvpanic"))
        return -1;
    return 0;
}

static void kick(int sig)
{
    (void)sig;
}

int main(int argc, char **argv)
{
    struct sigaction sa = {.sa_handler = kick};
    uint64_t mib = 256;
    int opt;

    clock_gettime(CLOCK_MONOTONIC, &vm.start);
    vm.ncpus = 1;
    while ((opt = getopt(argc, argv, "c:m:")) != -1) {
        if (opt == 'c')
            vm.ncpus = atoi(optarg);
        else if (opt == 'm')
            mib = strtoull(optarg, NULL, 0);
        else
            return 1;
    }
    if (argc - optind != 3 || vm.ncpus < 1 || vm.ncpus > MAX_CPUS || mib < 16) {
        fprintf(stderr, "usage: a64boot [-c CPUS (1-%d)] [-m MiB] KERNEL INITRD CMDLINE\n",
                MAX_CPUS);
        return 1;
    }
    if (setup(mib << 20, argv[optind], argv[optind + 1], argv[optind + 2]))
        return 1;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    for (int i = 0; i < vm.ncpus; i++)
        if (pthread_create(&vm.thread[i], NULL, vcpu_thread, (void *)(intptr_t)i)) {
            log_err("pthread_create failed");
            return 1;
        }
    for (int i = 0; i < vm.ncpus; i++)
        pthread_join(vm.thread[i], NULL);
    if (vm.result == 0 && vm.exit_status >= 0)
        return vm.exit_status;
    return vm.result;
}
