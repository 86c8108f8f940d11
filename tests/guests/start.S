/* Tiny-guest entry: ember enters here in 64-bit mode with the low 4 GiB identity-mapped. */
    .section .text.start, "ax"
    .code64
    .global _start
_start:
    lea stack_top(%rip), %rsp
    call guest_main
    mov %eax, %edi
    call guest_exit
1:  hlt
    jmp 1b

    .section .bss
    .balign 16
stack:
    .space 16384
stack_top:
    .section .note.GNU-stack, "", @progbits
