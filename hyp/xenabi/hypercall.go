package xenabi

// HYPERVISOR_multicall is the multicall hypercall number; xen.h.
const HYPERVISOR_multicall = 13

// MulticallEntry mirrors struct multicall_entry, xen/include/public/xen.h.
// libxenctrl issues memory_op through a one-entry multicall on Linux, so
// that results wider than 31 bits survive the ioctl's int return.
type MulticallEntry struct {
	Op     uint64
	Result uint64
	Args   [6]uint64
}
