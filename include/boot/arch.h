/* The architecture interface: everything the generic VMM (vmm/, devices/) asks of the guest's
 * architecture. boot/x86_64/ and boot/aarch64/ each implement all of it; a build links one. */
#ifndef EMBER_ARCH_H
#define EMBER_ARCH_H

#include <stdint.h>

#include "config.h"
#include "guest_mem.h"

struct vm;
struct vcpu;

/* Every virtio-mmio device a configuration can ask for (disks, NICs, hvc0, exec's ports,
 * entropy): each architecture's map has a slot and an interrupt for all of them. */
#define ARCH_MAX_VIRTIO (CONFIG_MAX_DISKS + CONFIG_MAX_NETS + 2)

/* ---- memory map ---- */

/* Where a platform device's registers are: on which bus, at which port or guest-physical
 * address, and its interrupt (the number KVM_IRQ_LINE and KVM_IRQFD take through
 * arch_irq_line: a GSI on x86_64, an SPI on aarch64). */
enum arch_bus { ARCH_BUS_NONE, ARCH_BUS_PIO, ARCH_BUS_MMIO };
struct arch_dev {
    enum arch_bus bus;
    uint64_t addr;
    uint32_t irq;
};

struct arch_map {
    const char *name;            /* "x86_64", "aarch64" */
    const char *kernel_image;    /* the kernel's file name in a guest-images directory */
    const char *kernel_formats;  /* what --kernel takes, for --help */
    const char *cmdline_default; /* kernel options for a fast boot on this machine */
    struct guest_ram_layout ram; /* where guest RAM goes */
    uint64_t ctrl_page;          /* boot marker (+0) and exit status (+8), MMIO */
    struct arch_dev uart;        /* 16550A: 8 byte-wide registers */
    struct arch_dev pvpanic;     /* one byte register */
    /* The power button (`system_powerdown`): an ACPI GED event register (x86_64), or a PL061
     * GPIO controller whose line PL061_POWER_LINE is a gpio-keys KEY_POWER (aarch64); each
     * ARCH_BUS_NONE where the machine has none. */
    struct arch_dev ged;
    struct arch_dev gpio_keys;
    uint64_t virtio_base;      /* virtio-mmio slot n at virtio_base + n * VIRTIO_MMIO_SIZE */
    uint32_t virtio_irq_first; /* slot n's interrupt: virtio_irq_first + n */
    int virtio_cmdline;        /* --virtio-cmdline may announce devices in virtio_mmio.device= */
};
extern const struct arch_map arch_map;

/* ---- KVM and the VM ---- */

/* /dev/kvm is open: check what this architecture needs of it (capabilities, host quirks).
 * 0, or -ENOTSUP after one error line naming what is missing. */
int arch_kvm_check(int kvm_fd);
/* /dev/kvm could not be opened: what the user can do about it (a sentence fragment). */
const char *arch_kvm_hint(void);
/* KVM_CREATE_VM's machine type for guest RAM ending at ram_end (aarch64: the IPA size). */
int arch_vm_type(int kvm_fd, uint64_t ram_end, unsigned long *type);
/* After KVM_CREATE_VM, before guest memory: the VM-wide set-up (x86_64: TSS, identity map,
 * in-kernel irqchip and PIT). 0 or -errno after one error line. */
int arch_vm_init(struct vm *vm);
/* Free what arch_vm_init and the later steps kept (vm->arch); safe on a VM they never saw. */
void arch_vm_destroy(struct vm *vm);
/* Every vCPU exists (booting or restoring): what they and the VM need before anything else
 * (aarch64: KVM_ARM_VCPU_INIT with PSCI, the in-kernel GICv3). Devices and their interrupts
 * come after it. 0 or -errno after one error line. */
int arch_vcpus_init(struct vm *vm);
/* Platform devices only this architecture has (x86_64: i8042, ACPI sleep registers). */
int arch_add_devices(struct vm *vm);
/* Raise (1) or lower (0) a platform device's interrupt line. 0 or -errno. */
int arch_irq_line(struct vm *vm, uint32_t irq, int level);
/* An exit generic code does not handle (x86_64: port I/O, triple fault, HLT): 1 to keep
 * running, 0 when the vCPU must stop (it asked the VM to), -ENOSYS when it is not one of the
 * architecture's either. */
int arch_vcpu_exit(struct vcpu *v);

/* ---- booting a kernel ---- */

struct arch_kernel {
    const char *kernel_path;
    const char *initrd_path; /* NULL: none */
    const char *cmdline;     /* the assembled kernel command line */
};
/* Load the kernel, initrd and command line into guest memory by the architecture's boot
 * protocol. One error line naming the file on failure; -errno. */
int arch_load_kernel(struct vm *vm, const struct arch_kernel *k);
/* Every vCPU's registers for entering the loaded kernel. 0 or -errno after one error line. */
int arch_vcpus_boot(struct vm *vm);

/* What the machine has, for the guest's description of it (ACPI tables on x86_64, the device
 * tree on aarch64); the platform devices are the map's. */
struct arch_machine {
    int nr_virtio;
    struct arch_virtio {
        uint64_t base;
        uint32_t irq;
    } virtio[ARCH_MAX_VIRTIO];
};
/* After arch_load_kernel and arch_vcpus_boot: write the description into guest memory. 0 or
 * -errno after one error line. */
int arch_describe(struct vm *vm, const struct arch_machine *m);

#endif
