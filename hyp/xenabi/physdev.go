package xenabi

// physdev_op sub-ops and PIRQ mapping types; xen/include/public/physdev.h.
const (
	PHYSDEVOP_map_pirq   = 13
	PHYSDEVOP_unmap_pirq = 14

	MAP_PIRQ_TYPE_MSI       = 0x0
	MAP_PIRQ_TYPE_GSI       = 0x1
	MAP_PIRQ_TYPE_UNKNOWN   = 0x2
	MAP_PIRQ_TYPE_MSI_SEG   = 0x3
	MAP_PIRQ_TYPE_MULTI_MSI = 0x4
)

// PhysdevMapPIRQ mirrors struct physdev_map_pirq.
type PhysdevMapPIRQ struct {
	Domid     uint16
	_         [2]byte
	Type      int32
	Index     int32
	PIRQ      int32 // IN or OUT
	Bus       int32 // high 16 bits: segment, for MSI_SEG and MULTI_MSI
	Devfn     int32
	EntryNr   int32
	_         [4]byte
	TableBase uint64
}

// PhysdevUnmapPIRQ mirrors struct physdev_unmap_pirq.
type PhysdevUnmapPIRQ struct {
	Domid uint16
	_     [2]byte
	PIRQ  int32
}
