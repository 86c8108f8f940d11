/* KVM's in-kernel GICv3 for the aarch64 guest: KVM_CREATE_DEVICE and its attributes. */
#include "boot/aarch64/gic.h"
#include "boot/aarch64/layout.h"
#include "log.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int set_attr(int gic_fd, uint32_t group, uint64_t attr, const void *value, const char *what)
{
    struct kvm_device_attr a = {.group = group, .attr = attr, .addr = (uint64_t)(uintptr_t)value};

    if (ioctl(gic_fd, KVM_SET_DEVICE_ATTR, &a) < 0) {
        int err = -errno;

        log_err("vGICv3: KVM_SET_DEVICE_ATTR %s: %s", what, strerror(-err));
        return err;
    }
    return 0;
}

int a64_gic_create(int vm_fd, int nr_cpus)
{
    struct kvm_create_device dev = {.type = KVM_DEV_TYPE_ARM_VGIC_V3};
    uint64_t dist = A64_GICD_BASE, redist = A64_GICR_BASE;
    int err;

    if (nr_cpus < 1 || nr_cpus > A64_GICR_MAX_CPUS) {
        log_err("vGICv3: %d vCPUs, ember's redistributor region holds %d", nr_cpus,
                A64_GICR_MAX_CPUS);
        return -EINVAL;
    }
    if (ioctl(vm_fd, KVM_CREATE_DEVICE, &dev) < 0) {
        err = -errno;
        if (err == -ENODEV)
            log_err("this host's KVM cannot emulate a GICv3 (KVM_CREATE_DEVICE "
                    "KVM_DEV_TYPE_ARM_VGIC_V3: %s); ember needs an arm64 host with a GICv3 "
                    "interrupt controller (GICv2-only hosts, such as the Raspberry Pi 4, are "
                    "not supported)",
                    strerror(-err));
        else
            log_err("KVM_CREATE_DEVICE KVM_DEV_TYPE_ARM_VGIC_V3: %s", strerror(-err));
        return err;
    }
    err = set_attr((int)dev.fd, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_DIST, &dist,
                   "distributor address");
    if (!err)
        err = set_attr((int)dev.fd, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_VGIC_V3_ADDR_TYPE_REDIST,
                       &redist, "redistributor address");
    if (err) {
        close((int)dev.fd);
        return err;
    }
    return (int)dev.fd;
}

int a64_gic_init(int gic_fd)
{
    uint32_t nr_irqs = A64_GIC_NR_IRQS;
    int err = set_attr(gic_fd, KVM_DEV_ARM_VGIC_GRP_NR_IRQS, 0, &nr_irqs, "number of interrupts");

    if (!err)
        err = set_attr(gic_fd, KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT, NULL,
                       "initialisation (KVM_DEV_ARM_VGIC_CTRL_INIT)");
    return err;
}
