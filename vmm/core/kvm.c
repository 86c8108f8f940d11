/* /dev/kvm: open it, check the API version and every capability ember relies on. */
#include "vm.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static const struct {
    int cap;
    const char *name;
} required_caps[] = {
        {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
        {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
        {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
        {KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR"},
        {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
        {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
        {KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING"},
        {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
        {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
        {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
        {KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE"},
};

static int module_loaded(const char *name)
{
    char path[64];

    snprintf(path, sizeof(path), "/sys/module/%s", name);
    return access(path, F_OK) == 0;
}

/* PVM runs guests without VT-x/AMD-V; standard kernels cannot boot there. */
static int host_is_pvm(void)
{
    return module_loaded("kvm_pvm") && !module_loaded("kvm_intel") && !module_loaded("kvm_amd");
}

int kvm_open(void)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    int version, err;

    if (fd < 0) {
        err = -errno;
        if (host_is_pvm())
            log_err("cannot open /dev/kvm: %s; this host's KVM is PVM (module kvm_pvm) and is not "
                    "usable here; run ember inside tests/kvmhost/run",
                    strerror(-err));
        else
            log_err("cannot open /dev/kvm: %s; load kvm_intel or kvm_amd (needs VT-x/AMD-V), or "
                    "run ember inside tests/kvmhost/run",
                    strerror(-err));
        return err;
    }
    version = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION) {
        log_err("/dev/kvm: KVM_GET_API_VERSION returned %d, ember needs %d", version,
                KVM_API_VERSION);
        close(fd);
        return -ENOTSUP;
    }
    for (size_t i = 0; i < sizeof(required_caps) / sizeof(required_caps[0]); i++) {
        if (ioctl(fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0) {
            log_err("/dev/kvm: missing capability %s; this host kernel's KVM is too old or "
                    "restricted",
                    required_caps[i].name);
            close(fd);
            return -ENOTSUP;
        }
    }
    if (host_is_pvm())
        log_warn("this host's KVM is PVM (module kvm_pvm): standard guest kernels cannot run "
                 "here, only PVM guest kernels and tiny guests; use tests/kvmhost/run");
    return fd;
}
