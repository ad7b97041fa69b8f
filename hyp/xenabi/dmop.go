package xenabi

// Ioreq server ids and DM-op numbers; xen/include/public/hvm/dm_op.h.
const (
	XEN_DMOP_create_ioreq_server              = 1
	XEN_DMOP_get_ioreq_server_info            = 2
	XEN_DMOP_map_io_range_to_ioreq_server     = 3
	XEN_DMOP_unmap_io_range_from_ioreq_server = 4
	XEN_DMOP_set_ioreq_server_state           = 5
	XEN_DMOP_destroy_ioreq_server             = 6
	XEN_DMOP_track_dirty_vram                 = 7
	XEN_DMOP_set_pci_intx_level               = 8
	XEN_DMOP_set_isa_irq_level                = 9
	XEN_DMOP_set_pci_link_route               = 10
	XEN_DMOP_modified_memory                  = 11
	XEN_DMOP_set_mem_type                     = 12
	XEN_DMOP_inject_event                     = 13
	XEN_DMOP_inject_msi                       = 14
	XEN_DMOP_map_mem_type_to_ioreq_server     = 15
	XEN_DMOP_remote_shutdown                  = 16
	XEN_DMOP_relocate_memory                  = 17
	XEN_DMOP_pin_memory_cacheattr             = 18
	XEN_DMOP_set_irq_level                    = 19
	XEN_DMOP_nr_vcpus                         = 20

	XEN_DMOP_no_gfns = 1 << 0

	XEN_DMOP_IO_RANGE_PORT   = 0
	XEN_DMOP_IO_RANGE_MEMORY = 1
	XEN_DMOP_IO_RANGE_PCI    = 2

	XEN_DMOP_EVENT_ext_int    = 0
	XEN_DMOP_EVENT_nmi        = 2
	XEN_DMOP_EVENT_hw_exc     = 3
	XEN_DMOP_EVENT_sw_int     = 4
	XEN_DMOP_EVENT_pri_sw_exc = 5
	XEN_DMOP_EVENT_sw_exc     = 6

	XEN_DMOP_IOREQ_MEM_ACCESS_READ  = 1 << 0
	XEN_DMOP_IOREQ_MEM_ACCESS_WRITE = 1 << 1

	XEN_DMOP_MEM_CACHEATTR_UC     = 0
	XEN_DMOP_MEM_CACHEATTR_WC     = 1
	XEN_DMOP_MEM_CACHEATTR_WT     = 4
	XEN_DMOP_MEM_CACHEATTR_WP     = 5
	XEN_DMOP_MEM_CACHEATTR_WB     = 6
	XEN_DMOP_MEM_CACHEATTR_UCM    = 7
	XEN_DMOP_DELETE_MEM_CACHEATTR = 0xffffffff
)

// XEN_DMOP_PCI_SBDF packs a PCI function for XEN_DMOP_IO_RANGE_PCI ranges.
func XEN_DMOP_PCI_SBDF(s, b, d, f uint64) uint64 {
	return (s&0xffff)<<16 | (b&0xff)<<8 | (d&0x1f)<<3 | f&0x7
}

// XenDMOp mirrors struct xen_dm_op: the op number and a 24-byte union
// holding one of the XenDMOp* argument structs below.
type XenDMOp struct {
	Op  uint32
	Pad uint32
	U   [24]byte
}

// XenDMOpBuf mirrors struct xen_dm_op_buf (guest handle + size), used by
// the HYPERVISOR_dm_op hypercall path.
type XenDMOpBuf struct {
	H    uint64
	Size uint64
}

// XenDMOpCreateIoreqServer mirrors struct xen_dm_op_create_ioreq_server.
type XenDMOpCreateIoreqServer struct {
	HandleBufioreq uint8
	Pad            [3]uint8
	ID             uint16 // OUT
}

// XenDMOpGetIoreqServerInfo mirrors struct xen_dm_op_get_ioreq_server_info.
type XenDMOpGetIoreqServerInfo struct {
	ID           uint16
	Flags        uint16
	BufioreqPort uint32 // OUT
	IoreqGFN     uint64 // OUT
	BufioreqGFN  uint64 // OUT
}

// XenDMOpIoreqServerRange mirrors struct xen_dm_op_ioreq_server_range.
type XenDMOpIoreqServerRange struct {
	ID    uint16
	Pad   uint16
	Type  uint32
	Start uint64 // inclusive
	End   uint64 // inclusive
}

// XenDMOpSetIoreqServerState mirrors struct xen_dm_op_set_ioreq_server_state.
type XenDMOpSetIoreqServerState struct {
	ID      uint16
	Enabled uint8
	Pad     uint8
}

// XenDMOpDestroyIoreqServer mirrors struct xen_dm_op_destroy_ioreq_server.
type XenDMOpDestroyIoreqServer struct {
	ID  uint16
	Pad uint16
}

// XenDMOpTrackDirtyVRAM mirrors struct xen_dm_op_track_dirty_vram. The
// dirty bitmap travels in a second DM-op buffer.
type XenDMOpTrackDirtyVRAM struct {
	Nr       uint32
	Pad      uint32
	FirstPFN uint64
}

// XenDMOpSetPCIIntxLevel mirrors struct xen_dm_op_set_pci_intx_level.
type XenDMOpSetPCIIntxLevel struct {
	Domain uint16
	Bus    uint8
	Device uint8
	Intx   uint8
	Level  uint8
}

// XenDMOpSetISAIRQLevel mirrors struct xen_dm_op_set_isa_irq_level.
type XenDMOpSetISAIRQLevel struct {
	ISAIRQ uint8
	Level  uint8
}

// XenDMOpSetPCILinkRoute mirrors struct xen_dm_op_set_pci_link_route.
type XenDMOpSetPCILinkRoute struct {
	Link   uint8
	ISAIRQ uint8
}

// XenDMOpModifiedMemory mirrors struct xen_dm_op_modified_memory; the
// extents travel in a second DM-op buffer.
type XenDMOpModifiedMemory struct {
	NrExtents uint32
	Opaque    uint32
}

// XenDMOpModifiedMemoryExtent mirrors struct xen_dm_op_modified_memory_extent.
type XenDMOpModifiedMemoryExtent struct {
	Nr       uint32
	Pad      uint32
	FirstPFN uint64
}

// XenDMOpSetMemType mirrors struct xen_dm_op_set_mem_type.
type XenDMOpSetMemType struct {
	Nr       uint32
	MemType  uint16
	Pad      uint16
	FirstPFN uint64
}

// XenDMOpInjectEvent mirrors struct xen_dm_op_inject_event.
type XenDMOpInjectEvent struct {
	VCPUID    uint32
	Vector    uint8
	Type      uint8
	InsnLen   uint8
	Pad0      uint8
	ErrorCode uint32
	Pad1      uint32
	CR2       uint64
}

// XenDMOpInjectMSI mirrors struct xen_dm_op_inject_msi.
type XenDMOpInjectMSI struct {
	Data uint32
	Pad  uint32
	Addr uint64
}

// XenDMOpMapMemTypeToIoreqServer mirrors struct xen_dm_op_map_mem_type_to_ioreq_server.
type XenDMOpMapMemTypeToIoreqServer struct {
	ID     uint16
	Type   uint16
	Flags  uint32
	Opaque uint64
}

// XenDMOpRemoteShutdown mirrors struct xen_dm_op_remote_shutdown.
type XenDMOpRemoteShutdown struct {
	Reason uint32
}

// XenDMOpRelocateMemory mirrors struct xen_dm_op_relocate_memory.
type XenDMOpRelocateMemory struct {
	Size   uint32
	Pad    uint32
	SrcGFN uint64
	DstGFN uint64
}

// XenDMOpPinMemoryCacheattr mirrors struct xen_dm_op_pin_memory_cacheattr.
type XenDMOpPinMemoryCacheattr struct {
	Start uint64
	End   uint64
	Type  uint32
	Pad   uint32
}

// XenDMOpSetIRQLevel mirrors struct xen_dm_op_set_irq_level (Arm).
type XenDMOpSetIRQLevel struct {
	IRQ   uint32
	Level uint8
	Pad   [3]uint8
}

// XenDMOpNrVCPUs mirrors struct xen_dm_op_nr_vcpus.
type XenDMOpNrVCPUs struct {
	VCPUs uint32 // OUT
}

// Shutdown reasons for XEN_DMOP_remote_shutdown; xen/include/public/sched.h.
const (
	SHUTDOWN_poweroff   = 0
	SHUTDOWN_reboot     = 1
	SHUTDOWN_suspend    = 2
	SHUTDOWN_crash      = 3
	SHUTDOWN_watchdog   = 4
	SHUTDOWN_soft_reset = 5
)

// HVM memory types for XEN_DMOP_set_mem_type; xen/include/public/hvm/hvm_op.h.
const (
	HVMMEM_ram_rw       = 0
	HVMMEM_ram_ro       = 1
	HVMMEM_mmio_dm      = 2
	HVMMEM_unused       = 3
	HVMMEM_ioreq_server = 4
)
