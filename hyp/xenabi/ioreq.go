package xenabi

// Ioreq direction, state and type values; xen/include/public/hvm/ioreq.h.
const (
	IOREQ_READ  = 1
	IOREQ_WRITE = 0

	STATE_IOREQ_NONE      = 0
	STATE_IOREQ_READY     = 1
	STATE_IOREQ_INPROCESS = 2
	STATE_IORESP_READY    = 3

	IOREQ_TYPE_PIO        = 0 // port I/O
	IOREQ_TYPE_COPY       = 1 // MMIO
	IOREQ_TYPE_PCI_CONFIG = 2
	IOREQ_TYPE_TIMEOFFSET = 7
	IOREQ_TYPE_INVALIDATE = 8 // map cache

	// IOREQ_BUFFER_SLOT_NUM is the number of 8-byte slots in the buffered ring.
	IOREQ_BUFFER_SLOT_NUM = 511
)

// Bit positions inside the flags byte of struct ioreq (offset 30), as GCC
// lays out the bitfields state:4, data_is_ptr:1, dir:1, df:1 on x86.
const (
	IoreqStateMask     = 0x0f
	IoreqDataIsPtrBit  = 1 << 4
	IoreqDirBit        = 1 << 5
	IoreqDFBit         = 1 << 6
	IoreqSize          = 32 // sizeof(struct ioreq)
	IoreqFlagsOffset   = 30
	IoreqStateWordOffs = 28 // aligned 32-bit word holding _pad0, flags and type
)

// Ioreq mirrors struct ioreq, xen/include/public/hvm/ioreq.h.
//
// The byte at offset 30 packs state:4, data_is_ptr:1, dir:1, df:1. Fields
// the other side writes concurrently must be accessed atomically through
// the 32-bit word at offset 28; see package ioreq.
type Ioreq struct {
	Addr    uint64 // physical address (PCI config: SBDF<<32 | register)
	Data    uint64 // data, or the guest physical address of the data
	Count   uint32 // repeat count for rep prefixes
	Size    uint32 // access size in bytes
	VPEport uint32 // vp_eport: the vCPU's event channel (Xen's end)
	Pad0    uint16
	Flags   uint8 // state:4 data_is_ptr:1 dir:1 df:1 _pad1:1
	Type    uint8
}

// BufIoreq mirrors struct buf_ioreq, xen/include/public/hvm/ioreq.h: one
// 8-byte slot of the buffered ring. Word0 packs type (bits 0-7), pad (bit
// 8), dir (bit 9), size (bits 10-11: 0=>1, 1=>2, 2=>4, 3=>8 bytes) and
// addr:20 (bits 12-31), as GCC lays out the bitfields.
type BufIoreq struct {
	Word0 uint32
	Data  uint32
}

// Bit layout of BufIoreq.Word0.
const (
	BufIoreqTypeMask  = 0xff
	BufIoreqDirShift  = 9
	BufIoreqSizeShift = 10
	BufIoreqSizeMask  = 0x3
	BufIoreqAddrShift = 12
	BufIoreqAddrMask  = 0xfffff
)

// BufferedIopage mirrors struct buffered_iopage, xen/include/public/hvm/ioreq.h.
// Xen (with HVM_IOREQSRV_BUFIOREQ_ATOMIC) updates the two pointers together
// with a 64-bit cmpxchg on the first 8 bytes.
type BufferedIopage struct {
	ReadPointer  uint32
	WritePointer uint32
	BufIoreq     [IOREQ_BUFFER_SLOT_NUM]BufIoreq
}

// Handle-bufioreq modes for XEN_DMOP_create_ioreq_server; hvm_op.h.
const (
	HVM_IOREQSRV_BUFIOREQ_OFF    = 0
	HVM_IOREQSRV_BUFIOREQ_LEGACY = 1
	HVM_IOREQSRV_BUFIOREQ_ATOMIC = 2
)

// Resource mapping of an ioreq server; xen/include/public/memory.h.
const (
	XENMEM_resource_ioreq_server = 0
	XENMEM_resource_grant_table  = 1

	XENMEM_resource_ioreq_server_frame_bufioreq = 0
	// frame_ioreq(n) = 1 + n
	XENMEM_resource_ioreq_server_frame_ioreq0 = 1

	XENMEM_resource_grant_table_id_shared = 0
	XENMEM_resource_grant_table_id_status = 1
)

// Fixed ACPI ports defined next to the ioreq ABI; hvm/ioreq.h.
const (
	ACPI_PM1A_EVT_BLK_ADDRESS_V1 = 0xb000
	ACPI_PM1A_CNT_BLK_ADDRESS_V1 = ACPI_PM1A_EVT_BLK_ADDRESS_V1 + 0x04
	ACPI_PM_TMR_BLK_ADDRESS_V1   = ACPI_PM1A_EVT_BLK_ADDRESS_V1 + 0x08
	ACPI_GPE0_BLK_ADDRESS_V1     = 0xafe0
	ACPI_GPE0_BLK_LEN_V1         = 0x04
)

// XEN_PAGE_SIZE is the size of a Xen page frame on x86.
const XEN_PAGE_SIZE = 4096
