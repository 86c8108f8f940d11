/* virtio-mmio registers, status bits and ring flags as a driver sees them: for the fake VM of
 * the unit tests and fuzzers and for the hostile tiny guests (plain defines, freestanding). */
#ifndef EMBER_TEST_VIRTIO_REGS_H
#define EMBER_TEST_VIRTIO_REGS_H

/* virtio-mmio registers as the guest driver sees them ("Virtio Over MMIO", version 2). */
#define R_MAGIC        0x000
#define R_VERSION      0x004
#define R_DEVICE_ID    0x008
#define R_VENDOR_ID    0x00c
#define R_DEV_FEAT     0x010
#define R_DEV_FEAT_SEL 0x014
#define R_DRV_FEAT     0x020
#define R_DRV_FEAT_SEL 0x024
#define R_QUEUE_SEL    0x030
#define R_QUEUE_MAX    0x034
#define R_QUEUE_NUM    0x038
#define R_QUEUE_READY  0x044
#define R_NOTIFY       0x050
#define R_ISR          0x060
#define R_ISR_ACK      0x064
#define R_STATUS       0x070
#define R_DESC_LO      0x080
#define R_DESC_HI      0x084
#define R_DRIVER_LO    0x090
#define R_DRIVER_HI    0x094
#define R_DEVICE_LO    0x0a0
#define R_DEVICE_HI    0x0a4
#define R_SHM_LEN_LO   0x0b0
#define R_CONFIG_GEN   0x0fc
#define R_CONFIG       0x100

/* Device status bits. */
#define S_ACK       1
#define S_DRV       2
#define S_DOK       4
#define S_FOK       8
#define S_NR        64
#define S_FAIL      128
#define S_DRIVER_UP (S_ACK | S_DRV | S_FOK | S_DOK)

/* Descriptor flags. */
#define F_NEXT     1
#define F_WRITE    2
#define F_INDIRECT 4

/* Transport feature bits. */
#define FEAT_INDIRECT  (1ULL << 28)
#define FEAT_EVENT_IDX (1ULL << 29)
#define FEAT_V1        (1ULL << 32)

#endif
