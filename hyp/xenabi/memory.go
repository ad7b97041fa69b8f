package xenabi

// memory_op sub-ops and physmap spaces; xen/include/public/memory.h.
const (
	XENMEM_increase_reservation = 0
	XENMEM_decrease_reservation = 1
	XENMEM_populate_physmap     = 6
	XENMEM_add_to_physmap       = 7

	XENMAPSPACE_shared_info  = 0
	XENMAPSPACE_grant_table  = 1
	XENMAPSPACE_gmfn         = 2
	XENMAPSPACE_gmfn_range   = 3
	XENMAPSPACE_gmfn_foreign = 4
	XENMAPSPACE_dev_mmio     = 5
)

// XenMemoryReservation mirrors struct xen_memory_reservation. ExtentStart
// is a guest handle: the address of an array of NrExtents xen_pfn_t.
type XenMemoryReservation struct {
	ExtentStart uint64
	NrExtents   uint64
	ExtentOrder uint32
	MemFlags    uint32
	Domid       uint16
	_           [6]byte
}

// XenAddToPhysmap mirrors struct xen_add_to_physmap.
type XenAddToPhysmap struct {
	Domid uint16
	Size  uint16 // pages, for XENMAPSPACE_gmfn_range
	Space uint32
	Idx   uint64
	GPFN  uint64
}
