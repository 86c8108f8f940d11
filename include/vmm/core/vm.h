/* The virtual machine: KVM handles, guest memory, buses, vCPU threads and why it stopped. */
#ifndef EMBER_VM_H
#define EMBER_VM_H

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "bus.h"
#include "guest_mem.h"

#define VM_MAX_CPUS 64
/* Kicks a vCPU thread out of KVM_RUN. Not SIGUSR1/SIGUSR2: ember-oci forwards those to the
 * container's workload, so they must reach the event loop's signalfd. */
#define VCPU_KICK_SIGNAL (SIGRTMIN)

/* Why the VM stopped; mapped to ember's exit code by the caller. */
enum vm_stop_reason {
    STOP_NONE = 0,
    STOP_POWEROFF, /* guest powered off (ACPI sleep state 5) */
    STOP_RESET,    /* guest asked for a reset (i8042, triple fault) */
    STOP_PANIC,    /* pvpanic: guest kernel panicked */
    STOP_CRASH,    /* KVM could not go on running the guest (internal error, bad entry) */
    STOP_SIGNAL,   /* host signal (SIGINT, SIGTERM, SIGHUP) */
    STOP_ERROR,    /* ember itself failed while running */
    STOP_TIMEOUT,  /* `ember exec --timeout` expired */
    STOP_QUIT,     /* `quit` on the control socket */
};

struct vm;
struct arch_vm; /* the architecture's own state (boot/<arch>/): boot protocol, irqchip */

struct vcpu {
    struct vm *vm;
    int index;
    int fd;
    struct kvm_run *run;
    size_t run_size;
    pthread_t thread;
    int thread_started;
    int tid;                /* the thread's Linux TID (query-cpus-fast) */
    atomic_ulong exits[32]; /* per KVM exit reason, for metrics */
};

struct vm {
    int kvm_fd;
    int vm_fd;
    int ncpus;
    struct guest_mem mem;
    int mem_fd;     /* the snapshot memory file RAM is mapped from, or -1 (not owned) */
    struct bus pio; /* port I/O (x86_64 only: no other architecture has ports) */
    struct bus mmio;
    struct vcpu vcpu[VM_MAX_CPUS];
    struct arch_vm *arch; /* the architecture's (arch.h), NULL until arch_vm_init */

    atomic_int stopping;        /* set once: every vCPU leaves KVM_RUN and its thread ends */
    atomic_int stop_reason;     /* enum vm_stop_reason of the first stop request */
    int wake_fd;                /* eventfd the main loop waits on for stop requests */
    int exit_status;            /* value written to the exit-status device, or -1 */
    int stop_signal;            /* signal number for STOP_SIGNAL */
    int boot_timer;             /* --boot-timer: report the first KVM_RUN too */
    struct timespec start_wall; /* ember's start (CLOCK_MONOTONIC), for the boot timer */

    /* Pausing (vcpu_pause.c): `stop` and `cont` on the control socket. */
    pthread_mutex_t pause_lock;
    pthread_cond_t pause_cond;
    atomic_int pause_req;
    int nr_paused;             /* vCPU threads waiting in vcpu_pause_point */
    struct timespec resume_at; /* the last vm_resume */
    int64_t resume_ns;         /* from it to the last vCPU leaving its pause */
};

/* /dev/kvm: open, check the API version and every capability ember needs. -errno. */
int kvm_open(void);
struct kvm_cap_need {
    int cap; /* KVM_CAP_* */
    const char *name;
};
/* 0, or -ENOTSUP after one error line naming the first capability /dev/kvm lacks. */
int kvm_check_caps(int kvm_fd, const struct kvm_cap_need *caps, size_t n);

/* Create the VM: KVM VM with the architecture's set-up (arch_vm_init), guest RAM of ram_size
 * bytes where the architecture's map puts it (anonymous, or with mem_fd >= 0 a snapshot's
 * memory file mapped copy-on-write). */
int vm_create(struct vm *vm, int kvm_fd, uint64_t ram_size, int ncpus, int hugepages, int mem_fd);
void vm_destroy(struct vm *vm);

/* Create the vCPUs and what the architecture needs once they exist (arch_vcpus_init): before
 * the devices. Their boot state comes later (arch_vcpus_boot), or a snapshot's restore sets
 * all of it. */
int vm_open_vcpus(struct vm *vm);
/* Start one thread per vCPU. */
int vm_start(struct vm *vm);
/* Ask every vCPU to stop (any thread, async-signal-unsafe: not from signal handlers).
 * The first reason wins. */
void vm_request_stop(struct vm *vm, enum vm_stop_reason reason);
/* Wait for every vCPU thread to end. */
void vm_join(struct vm *vm);

/* Pause every vCPU out of KVM_RUN (event loop). Returns 1 when all are paused already;
 * otherwise the last one to pause writes wake_fd and vm_all_paused() turns true. */
int vm_pause(struct vm *vm);
int vm_all_paused(struct vm *vm);
/* Let paused vCPUs run again. */
void vm_resume(struct vm *vm);
/* vCPU thread, before KVM_RUN when pause_req is set and after every EINTR from it: wait
 * while paused; when no pause is wanted, clear immediate_exit (unless the VM is stopping). */
void vcpu_pause_point(struct vcpu *v);
void vm_pause_init(struct vm *vm);
void vm_pause_destroy(struct vm *vm);

/* Raise (1) or lower (0) a platform device's interrupt line (arch_irq_line's numbers). */
int vm_irq_line(struct vm *vm, uint32_t irq, int level);

#endif
