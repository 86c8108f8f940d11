/* The architecture's share of a snapshot: each vCPU's state and the VM's (irqchips, timers,
 * clock), saved through KVM, checked, and put back. vmm/snapshot_x86.c implements it for
 * x86_64; another architecture provides the same functions in a file of its own. */
#ifndef EMBER_SNAPSHOT_ARCH_H
#define EMBER_SNAPSHOT_ARCH_H

#include <stddef.h>
#include <stdint.h>

#include "snapshot_format.h"

struct vm;
struct vcpu;
struct snap_vcpu_arch; /* a decoded, checked vCPU section */
struct snap_vm_arch;   /* a decoded, checked VM section */

/* The architecture this ember saves and restores (enum snap_arch). */
uint32_t snap_arch_host(void);
#define SNAP_VCPU_VERSION 1
#define SNAP_VM_VERSION   1

/* Save: the vCPU is parked (its thread out of KVM_RUN), or every vCPU is. Append the section
 * payload to b. 0 or -errno after one error line naming the ioctl. */
int snap_arch_save_vcpu(struct vcpu *v, struct snap_buf *b);
int snap_arch_save_vm(struct vm *vm, struct snap_buf *b);

/* Decode one section and check every field that can be checked without KVM. 0, or -EINVAL
 * with err saying what is wrong (the caller adds the section's name). */
int snap_arch_decode_vcpu(const struct snap_section *s, struct snap_vcpu_arch **out, char *err,
                          size_t errlen);
int snap_arch_decode_vm(const struct snap_section *s, struct snap_vm_arch **out, char *err,
                        size_t errlen);
void snap_arch_free_vcpu(struct snap_vcpu_arch *a);
void snap_arch_free_vm(struct snap_vm_arch *a);

/* Restore onto a new vCPU (created, not yet run) or VM: 0, or -errno with err naming the
 * ioctl or value KVM refused. */
int snap_arch_restore_vcpu(struct vcpu *v, const struct snap_vcpu_arch *a, char *err,
                           size_t errlen);
int snap_arch_restore_vm(struct vm *vm, const struct snap_vm_arch *a, char *err, size_t errlen);

#endif
