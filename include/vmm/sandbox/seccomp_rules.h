/* Building seccomp allowlists with libseccomp: what vmm/sandbox/seccomp.c (every architecture's
 * lists) and seccomp_<arch>.c (each architecture's KVM ioctls) share. */
#ifndef EMBER_SECCOMP_RULES_H
#define EMBER_SECCOMP_RULES_H

#include <seccomp.h>
#include <stddef.h>
#include <stdint.h>

#define SECCOMP_MAX_NR 1024 /* above every syscall number of x86_64 and arm64 */

struct seccomp_builder {
    scmp_filter_ctx ctx;
    int err;
    /* Calls allowed with any arguments already: libseccomp 2.5 leaks memory for a rule added
     * twice, and two names may be one call here (rmdir and unlink are unlinkat on arm64). */
    uint8_t any_args[SECCOMP_MAX_NR / 8];
};

/* Allow call nr when args match (n of them; 0: any arguments). The first failure sticks in
 * b->err. */
void seccomp_rule(struct seccomp_builder *b, int nr, unsigned n, const struct scmp_arg_cmp *args);
/* Allow ioctl with each of these requests. */
void seccomp_allow_ioctls(struct seccomp_builder *b, const unsigned long *req, size_t n);

#define SECCOMP_LOW32 0xffffffffULL

/* Any arguments. */
#define ALLOW(b, name) seccomp_rule(b, SCMP_SYS(name), 0, NULL)
/* A call this architecture has, or else the one glibc makes in its place: arm64 has only the
 * newer forms (epoll_pwait, ppoll, unlinkat, renameat, mkdirat), which stand in for x86_64's
 * epoll_wait, poll, unlink and rmdir, rename and mkdir. */
#define ALLOW_OR(b, name, instead)                                                                 \
    seccomp_rule(b, SCMP_SYS(name) >= 0 ? SCMP_SYS(name) : SCMP_SYS(instead), 0, NULL)
/* One ioctl request number (the low 32 bits: glibc passes an int). */
#define ALLOW_IOCTL(b, req)                                                                        \
    seccomp_rule(b, SCMP_SYS(ioctl), 1,                                                            \
                 (struct scmp_arg_cmp[]){SCMP_A1(SCMP_CMP_MASKED_EQ, SECCOMP_LOW32, req)})

/* The architecture's share (vmm/sandbox/seccomp_<arch>.c). */
/* ioctls a vCPU thread makes besides KVM_RUN and KVM_IRQ_LINE (x86_64: KVM_GET_REGS, naming a
 * triple fault's instruction). */
void seccomp_arch_vcpu(struct seccomp_builder *b);
/* The KVM ioctls of building a VM and its vCPUs for a boot (arch.h's set-up). */
void seccomp_arch_build(struct seccomp_builder *b);
/* The KVM ioctls of saving a snapshot; with rebuild, what building allows already is left
 * out. */
void seccomp_arch_snapshot(struct seccomp_builder *b, int rebuild);

/* For the SIGSYS report: the AUDIT_ARCH_* of this architecture's own calls, and an ioctl's
 * request number from the signal's context. Async-signal-safe. */
extern const uint32_t seccomp_audit_arch;
unsigned long seccomp_ioctl_request(const void *ucontext);

#endif
