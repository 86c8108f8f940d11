/* The x86_64 machine's state behind arch.h (vm->arch), shared by boot/x86_64's arch files. */
#ifndef EMBER_X86_64_MACHINE_H
#define EMBER_X86_64_MACHINE_H

#include "loader.h"

struct arch_vm {
    struct boot_setup boot; /* what load_kernel placed: the vCPUs' entry state */
};

#endif
