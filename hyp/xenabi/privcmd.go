package xenabi

// Linux _IOC encoding (include/uapi/asm-generic/ioctl.h) for x86.
const (
	_IOC_NONE  = 0
	_IOC_WRITE = 1
	_IOC_READ  = 2
)

// IOC builds an ioctl request number like the kernel's _IOC macro.
func IOC(dir, typ, nr, size uint) uint {
	return dir<<30 | size<<16 | typ<<8 | nr
}

// Domain ids; xen/include/public/xen.h.
const (
	DOMID_FIRST_RESERVED = 0x7ff0
	DOMID_SELF           = 0x7ff0
	DOMID_IO             = 0x7ff1
	DOMID_XEN            = 0x7ff2
	DOMID_INVALID        = 0x7ff4
)

// Hypercall numbers; xen/include/public/xen.h.
const (
	__HYPERVISOR_memory_op        = 12
	__HYPERVISOR_xen_version      = 17
	__HYPERVISOR_grant_table_op   = 20
	__HYPERVISOR_sched_op         = 29
	__HYPERVISOR_event_channel_op = 32
	__HYPERVISOR_physdev_op       = 33
	__HYPERVISOR_hvm_op           = 34
	__HYPERVISOR_sysctl           = 35
	__HYPERVISOR_domctl           = 36
	__HYPERVISOR_dm_op            = 41
)

// Exported aliases of the hypercall numbers (Go forbids exporting names
// that start with an underscore).
const (
	HYPERVISOR_memory_op        = __HYPERVISOR_memory_op
	HYPERVISOR_xen_version      = __HYPERVISOR_xen_version
	HYPERVISOR_grant_table_op   = __HYPERVISOR_grant_table_op
	HYPERVISOR_sched_op         = __HYPERVISOR_sched_op
	HYPERVISOR_event_channel_op = __HYPERVISOR_event_channel_op
	HYPERVISOR_physdev_op       = __HYPERVISOR_physdev_op
	HYPERVISOR_hvm_op           = __HYPERVISOR_hvm_op
	HYPERVISOR_sysctl           = __HYPERVISOR_sysctl
	HYPERVISOR_domctl           = __HYPERVISOR_domctl
	HYPERVISOR_dm_op            = __HYPERVISOR_dm_op
)

// PrivcmdHypercall mirrors struct privcmd_hypercall, include/uapi/xen/privcmd.h.
type PrivcmdHypercall struct {
	Op  uint64
	Arg [5]uint64
}

// PrivcmdMmapbatchV2 mirrors struct privcmd_mmapbatch_v2.
type PrivcmdMmapbatchV2 struct {
	Num  uint32
	Dom  uint16
	_    [2]byte
	Addr uint64
	Arr  uint64 // const xen_pfn_t * (user pointer)
	Err  uint64 // int * (user pointer)
}

// PrivcmdDMOpBuf mirrors struct privcmd_dm_op_buf.
type PrivcmdDMOpBuf struct {
	Uptr uint64 // void * (user pointer)
	Size uint64
}

// PrivcmdDMOp mirrors struct privcmd_dm_op.
type PrivcmdDMOp struct {
	Dom   uint16
	Num   uint16
	_     [4]byte
	Ubufs uint64 // const struct privcmd_dm_op_buf * (user pointer)
}

// PrivcmdMmapResource mirrors struct privcmd_mmap_resource.
type PrivcmdMmapResource struct {
	Dom  uint16
	_    [2]byte
	Type uint32
	ID   uint32
	Idx  uint32
	Num  uint64
	Addr uint64
}

// Per-frame error markers of the legacy MMAPBATCH (v1) interface.
const (
	PRIVCMD_MMAPBATCH_MFN_ERROR   = 0xf0000000
	PRIVCMD_MMAPBATCH_PAGED_ERROR = 0x80000000
)

// privcmd ioctl request numbers; include/uapi/xen/privcmd.h.
const (
	IOCTL_PRIVCMD_HYPERCALL     = _IOC_NONE<<30 | 48<<16 | 'P'<<8 | 0
	IOCTL_PRIVCMD_MMAPBATCH_V2  = _IOC_NONE<<30 | 32<<16 | 'P'<<8 | 4
	IOCTL_PRIVCMD_DM_OP         = _IOC_NONE<<30 | 16<<16 | 'P'<<8 | 5
	IOCTL_PRIVCMD_RESTRICT      = _IOC_NONE<<30 | 2<<16 | 'P'<<8 | 6
	IOCTL_PRIVCMD_MMAP_RESOURCE = _IOC_NONE<<30 | 32<<16 | 'P'<<8 | 7
)
