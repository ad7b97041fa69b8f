package privcmd

import (
	"runtime"
	"unsafe"

	"godm/hyp"
	"godm/hyp/kernel"
	"godm/hyp/xenabi"
)

// This file holds every conversion between Go memory and the user
// pointers inside ioctl structures. Memory handed to the kernel by address
// must not move during the call: each argument structure below is passed
// to an interface method, so it (and everything it references through Go
// pointers, such as the keep fields) lives on the heap, and Go's heap does
// not move.

// addrOf returns the user address of b's first byte, or 0 for an empty b.
func addrOf(b []byte) uint64 {
	if len(b) == 0 {
		return 0
	}
	return uint64(uintptr(unsafe.Pointer(&b[0])))
}

func ioctlHypercall(f kernel.File, hc *xenabi.PrivcmdHypercall) (uintptr, error) {
	return f.Ioctl(xenabi.IOCTL_PRIVCMD_HYPERCALL, unsafe.Pointer(hc))
}

func ioctlRestrict(f kernel.File, dom *uint16) (uintptr, error) {
	return f.Ioctl(xenabi.IOCTL_PRIVCMD_RESTRICT, unsafe.Pointer(dom))
}

// probeDMOp issues DM_OP with dom=DOMID_INVALID and no buffers, which a
// kernel that knows the request answers with 0.
func probeDMOp(f kernel.File) error {
	uop := &xenabi.PrivcmdDMOp{Dom: xenabi.DOMID_INVALID}
	_, err := f.Ioctl(xenabi.IOCTL_PRIVCMD_DM_OP, unsafe.Pointer(uop))
	return err
}

// dmOpArgs is a heap block holding the DM_OP structures of one call, with
// Go references to the buffers so that they stay on the heap and alive.
type dmOpArgs struct {
	uop   xenabi.PrivcmdDMOp
	ubufs []xenabi.PrivcmdDMOpBuf
	keep  [][]byte
}

func ioctlDMOp(f kernel.File, dom hyp.DomID, bufs [][]byte) (uintptr, error) {
	a := &dmOpArgs{ubufs: make([]xenabi.PrivcmdDMOpBuf, len(bufs)), keep: bufs}
	for i, b := range bufs {
		a.ubufs[i] = xenabi.PrivcmdDMOpBuf{Uptr: addrOf(b), Size: uint64(len(b))}
	}
	a.uop = xenabi.PrivcmdDMOp{
		Dom:   uint16(dom),
		Num:   uint16(len(bufs)),
		Ubufs: uint64(uintptr(unsafe.Pointer(&a.ubufs[0]))),
	}
	r, err := f.Ioctl(xenabi.IOCTL_PRIVCMD_DM_OP, unsafe.Pointer(&a.uop))
	runtime.KeepAlive(a)
	return r, err
}

// init points the block's ioctl structures at its own buffers. A DMCall
// lives on the heap (NewDMCall), so the addresses stay valid.
func (c *DMCall) init() {
	c.ubufs[0] = xenabi.PrivcmdDMOpBuf{
		Uptr: uint64(uintptr(unsafe.Pointer(&c.Op[0]))),
		Size: DMOpSize,
	}
	c.uop.Ubufs = uint64(uintptr(unsafe.Pointer(&c.ubufs[0])))
}

func ioctlDMCall(f kernel.File, dom hyp.DomID, c *DMCall) (uintptr, error) {
	c.uop.Dom = uint16(dom)
	c.uop.Num = 1
	c.ubufs[1] = xenabi.PrivcmdDMOpBuf{}
	if c.hasExtra {
		c.uop.Num = 2
		c.ubufs[1] = xenabi.PrivcmdDMOpBuf{Uptr: addrOf(c.extra), Size: uint64(len(c.extra))}
	}
	r, err := f.Ioctl(xenabi.IOCTL_PRIVCMD_DM_OP, unsafe.Pointer(&c.uop))
	runtime.KeepAlive(c)
	return r, err
}

type mmapBatchArgs struct {
	b      xenabi.PrivcmdMmapbatchV2
	region []byte
	gfns   []uint64
	errs   []int32
}

func ioctlMmapBatch(f kernel.File, dom hyp.DomID, region []byte, gfns []uint64, errs []int32) error {
	a := &mmapBatchArgs{region: region, gfns: gfns, errs: errs}
	a.b = xenabi.PrivcmdMmapbatchV2{
		Num:  uint32(len(gfns)),
		Dom:  uint16(dom),
		Addr: addrOf(region),
		Arr:  uint64(uintptr(unsafe.Pointer(&gfns[0]))),
		Err:  uint64(uintptr(unsafe.Pointer(&errs[0]))),
	}
	_, err := f.Ioctl(xenabi.IOCTL_PRIVCMD_MMAPBATCH_V2, unsafe.Pointer(&a.b))
	runtime.KeepAlive(a)
	return err
}

// ioctlMmapResource maps region (nil: the size query) and returns the
// kernel's num field afterwards (the resource's size for the query).
type mmapResourceArgs struct {
	r      xenabi.PrivcmdMmapResource
	region []byte
}

func ioctlMmapResource(f kernel.File, dom hyp.DomID, typ, id, idx uint32, region []byte) (uint64, error) {
	a := &mmapResourceArgs{region: region}
	a.r = xenabi.PrivcmdMmapResource{
		Dom:  uint16(dom),
		Type: typ,
		ID:   id,
		Idx:  idx,
		Num:  uint64(len(region) / PageSize),
		Addr: addrOf(region),
	}
	_, err := f.Ioctl(xenabi.IOCTL_PRIVCMD_MMAP_RESOURCE, unsafe.Pointer(&a.r))
	runtime.KeepAlive(a)
	return a.r.Num, err
}

type irqfdArgs struct {
	a    xenabi.PrivcmdIrqfd
	keep []byte
}

func ioctlIRQFD(f kernel.File, c IRQFD, deassign bool) error {
	a := &irqfdArgs{keep: c.DMOp}
	a.a = xenabi.PrivcmdIrqfd{
		DMOp: addrOf(c.DMOp),
		Size: uint32(len(c.DMOp)),
		Fd:   uint32(c.Fd),
		Dom:  uint16(c.Dom),
	}
	if deassign {
		a.a.Flags = xenabi.PRIVCMD_IRQFD_FLAG_DEASSIGN
	}
	_, err := f.Ioctl(xenabi.IOCTL_PRIVCMD_IRQFD, unsafe.Pointer(&a.a))
	runtime.KeepAlive(a)
	return err
}

type ioeventfdArgs struct {
	a     xenabi.PrivcmdIoeventfd
	ioreq []byte
	ports []uint32
}

func ioctlIOEventFD(f kernel.File, c IOEventFD, deassign bool) error {
	a := &ioeventfdArgs{ioreq: c.IOReqPage, ports: c.Ports}
	a.a = xenabi.PrivcmdIoeventfd{
		Ioreq:   addrOf(c.IOReqPage),
		Ports:   uint64(uintptr(unsafe.Pointer(&c.Ports[0]))),
		Addr:    c.Addr,
		AddrLen: c.AddrLen,
		EventFd: uint32(c.EventFd),
		VCPUs:   uint32(len(c.Ports)),
		VQ:      c.VQ,
		Dom:     uint16(c.Dom),
	}
	if deassign {
		a.a.Flags = xenabi.PRIVCMD_IOEVENTFD_FLAG_DEASSIGN
	}
	_, err := f.Ioctl(xenabi.IOCTL_PRIVCMD_IOEVENTFD, unsafe.Pointer(&a.a))
	runtime.KeepAlive(a)
	return err
}

// probeEventFD issues IOCTL_PRIVCMD_IRQFD (irqfd) or
// IOCTL_PRIVCMD_IOEVENTFD as a deassign of eventfd -1 for DOMID_INVALID:
// no kernel changes anything for it (see Handle.eventfdSupported for the
// answers).
func probeEventFD(f kernel.File, irqfd bool) error {
	if irqfd {
		a := &xenabi.PrivcmdIrqfd{Fd: ^uint32(0), Flags: xenabi.PRIVCMD_IRQFD_FLAG_DEASSIGN, Dom: xenabi.DOMID_INVALID}
		_, err := f.Ioctl(xenabi.IOCTL_PRIVCMD_IRQFD, unsafe.Pointer(a))
		return err
	}
	a := &xenabi.PrivcmdIoeventfd{EventFd: ^uint32(0), Flags: xenabi.PRIVCMD_IOEVENTFD_FLAG_DEASSIGN, Dom: xenabi.DOMID_INVALID}
	_, err := f.Ioctl(xenabi.IOCTL_PRIVCMD_IOEVENTFD, unsafe.Pointer(a))
	return err
}
