package xenabi

// Flags of privcmd_irqfd and privcmd_ioeventfd; include/uapi/xen/privcmd.h
// (Linux >= 6.7).
const (
	PRIVCMD_IRQFD_FLAG_DEASSIGN     = 1 << 0
	PRIVCMD_IOEVENTFD_FLAG_DEASSIGN = 1 << 0
)

// PrivcmdIrqfd mirrors struct privcmd_irqfd, include/uapi/xen/privcmd.h
// (Linux >= 6.7). DMOp points to a struct xen_dm_op of Size bytes that the
// kernel issues as a DM op whenever the eventfd Fd is signalled.
type PrivcmdIrqfd struct {
	DMOp  uint64 // user pointer to struct xen_dm_op
	Size  uint32
	Fd    uint32
	Flags uint32
	Dom   uint16
	Pad   [2]uint8
}

// PrivcmdIoeventfd mirrors struct privcmd_ioeventfd,
// include/uapi/xen/privcmd.h (Linux >= 6.7). Ioreq points to the mapped
// ioreq page and Ports to an array of VCPUs uint32 event-channel ports (the
// local ports bound to each vCPU's ioreq channel).
type PrivcmdIoeventfd struct {
	Ioreq   uint64 // user pointer to the shared ioreq page
	Ports   uint64 // user pointer to uint32[VCPUs]
	Addr    uint64 // base of a virtio-mmio device; the kernel matches writes to its QueueNotify register
	AddrLen uint32 // access size: 1, 2, 4 or 8
	EventFd uint32
	VCPUs   uint32
	VQ      uint32 // virtqueue index: the value written to QueueNotify that signals EventFd
	Flags   uint32
	Dom     uint16
	Pad     [2]uint8
}

// IRQFD and IOEVENTFD request numbers; include/uapi/xen/privcmd.h defines
// them with _IOW (unlike the older privcmd requests, which use _IOC_NONE).
const (
	IOCTL_PRIVCMD_IRQFD     = _IOC_WRITE<<30 | 24<<16 | 'P'<<8 | 8
	IOCTL_PRIVCMD_IOEVENTFD = _IOC_WRITE<<30 | 48<<16 | 'P'<<8 | 9
)
