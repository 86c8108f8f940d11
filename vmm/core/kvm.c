/* /dev/kvm: open it, check the API version and every capability ember relies on. */
#include "vm.h"
#include "arch.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static const struct kvm_cap_need required_caps[] = {
        /* Every architecture's; arch_kvm_check checks the architecture's own. */
        {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
        {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
        {KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING"},
        {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
        {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
        {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
        {KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE"},
};

int kvm_check_caps(int kvm_fd, const struct kvm_cap_need *caps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0) {
            log_err("/dev/kvm: missing capability %s; this host kernel's KVM is too old or "
                    "restricted",
                    caps[i].name);
            return -ENOTSUP;
        }
    }
    return 0;
}

int kvm_open(void)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    int version, err;

    if (fd < 0) {
        err = -errno;
        log_err("cannot open /dev/kvm: %s; %s", strerror(-err), arch_kvm_hint());
        return err;
    }
    version = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION) {
        log_err("/dev/kvm: KVM_GET_API_VERSION returned %d, ember needs %d", version,
                KVM_API_VERSION);
        close(fd);
        return -ENOTSUP;
    }
    err = kvm_check_caps(fd, required_caps, sizeof(required_caps) / sizeof(required_caps[0]));
    if (!err)
        err = arch_kvm_check(fd);
    if (err) {
        close(fd);
        return err;
    }
    return fd;
}
