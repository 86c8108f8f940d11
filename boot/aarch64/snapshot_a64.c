/* Snapshots on aarch64: not there yet. Every entry point of snapshot_arch.h refuses with one
 * line, so snapshot-save, --restore and `ember exec`'s snapshot cache fail cleanly. */
#include "snapshot_arch.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>

#define NOT_YET "snapshots of aarch64 VMs are not implemented yet"

uint32_t snap_arch_host(void)
{
    return SNAP_ARCH_AARCH64;
}

int snap_arch_supported(void)
{
    return 0;
}

int snap_arch_save_vcpu(struct vcpu *v, struct snap_buf *b)
{
    (void)v;
    (void)b;
    log_err(NOT_YET);
    return -ENOTSUP;
}

int snap_arch_save_vm(struct vm *vm, struct snap_buf *b)
{
    (void)vm;
    (void)b;
    log_err(NOT_YET);
    return -ENOTSUP;
}

static int refuse(char *err, size_t errlen)
{
    snprintf(err, errlen, NOT_YET);
    return -EINVAL;
}

int snap_arch_decode_vcpu(const struct snap_section *s, struct snap_vcpu_arch **out, char *err,
                          size_t errlen)
{
    (void)s;
    *out = NULL;
    return refuse(err, errlen);
}

int snap_arch_decode_vm(const struct snap_section *s, struct snap_vm_arch **out, char *err,
                        size_t errlen)
{
    (void)s;
    *out = NULL;
    return refuse(err, errlen);
}

void snap_arch_free_vcpu(struct snap_vcpu_arch *a)
{
    (void)a;
}

void snap_arch_free_vm(struct snap_vm_arch *a)
{
    (void)a;
}

int snap_arch_restore_vcpu(struct vcpu *v, const struct snap_vcpu_arch *a, char *err, size_t errlen)
{
    (void)v;
    (void)a;
    return refuse(err, errlen);
}

int snap_arch_restore_vm(struct vm *vm, const struct snap_vm_arch *a, char *err, size_t errlen)
{
    (void)vm;
    (void)a;
    return refuse(err, errlen);
}
