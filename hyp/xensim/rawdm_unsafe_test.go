package xensim

import (
	"encoding/binary"
	"runtime"
	"unsafe"

	"godm/hyp/kernel"
	"godm/hyp/xenabi"
)

// Raw ioctl helpers: the tests drive the simulator exactly as a device
// model would, through kernel.File and the hyp/xenabi structures.

func addr(b []byte) uint64 {
	if len(b) == 0 {
		return 0
	}
	return uint64(uintptr(unsafe.Pointer(&b[0])))
}

// rawDMOp issues IOCTL_PRIVCMD_DM_OP with bufs[0] = struct xen_dm_op.
func rawDMOp(f kernel.File, dom uint16, bufs ...[]byte) error {
	ub := make([]xenabi.PrivcmdDMOpBuf, len(bufs)+1)
	for i, b := range bufs {
		ub[i] = xenabi.PrivcmdDMOpBuf{Uptr: addr(b), Size: uint64(len(b))}
	}
	op := &xenabi.PrivcmdDMOp{Dom: dom, Num: uint16(len(bufs)), Ubufs: uint64(uintptr(unsafe.Pointer(&ub[0])))}
	_, err := f.Ioctl(xenabi.IOCTL_PRIVCMD_DM_OP, unsafe.Pointer(op))
	runtime.KeepAlive(ub)
	runtime.KeepAlive(bufs)
	return err
}

// dmop builds a struct xen_dm_op for op with union u and issues it; it
// returns the union as Xen left it.
func dmop(f kernel.File, dom uint16, op uint32, u []byte, extra ...[]byte) ([]byte, error) {
	b := make([]byte, 32)
	binary.LittleEndian.PutUint32(b, op)
	copy(b[8:], u)
	err := rawDMOp(f, dom, append([][]byte{b}, extra...)...)
	return b[8:], err
}

func rawHypercall(f kernel.File, op uint64, args ...uint64) (uintptr, error) {
	hc := &xenabi.PrivcmdHypercall{Op: op}
	copy(hc.Arg[:], args)
	return f.Ioctl(xenabi.IOCTL_PRIVCMD_HYPERCALL, unsafe.Pointer(hc))
}

func rawMmapBatch(f kernel.File, dom uint16, region []byte, gfns []uint64) ([]int32, error) {
	errs := make([]int32, len(gfns))
	var garr, earr uint64
	if len(gfns) > 0 {
		garr = uint64(uintptr(unsafe.Pointer(&gfns[0])))
		earr = uint64(uintptr(unsafe.Pointer(&errs[0])))
	}
	m := &xenabi.PrivcmdMmapbatchV2{Num: uint32(len(gfns)), Dom: dom, Addr: addr(region), Arr: garr, Err: earr}
	_, err := f.Ioctl(xenabi.IOCTL_PRIVCMD_MMAPBATCH_V2, unsafe.Pointer(m))
	runtime.KeepAlive(gfns)
	return errs, err
}

func rawMmapResource(f kernel.File, dom uint16, typ, id, idx uint32, num uint64, region []byte) (uint64, error) {
	m := &xenabi.PrivcmdMmapResource{Dom: dom, Type: typ, ID: id, Idx: idx, Num: num, Addr: addr(region)}
	_, err := f.Ioctl(xenabi.IOCTL_PRIVCMD_MMAP_RESOURCE, unsafe.Pointer(m))
	return m.Num, err
}

func rawRestrict(f kernel.File, dom uint16) error {
	d := new(uint16)
	*d = dom
	_, err := f.Ioctl(xenabi.IOCTL_PRIVCMD_RESTRICT, unsafe.Pointer(d))
	return err
}

func evBindInterdomain(f kernel.File, dom, port uint32) (uint32, error) {
	a := &xenabi.IoctlEvtchnBindInterdomain{RemoteDomain: dom, RemotePort: port}
	r, err := f.Ioctl(xenabi.IOCTL_EVTCHN_BIND_INTERDOMAIN, unsafe.Pointer(a))
	return uint32(r), err
}

func evBindUnbound(f kernel.File, dom uint32) (uint32, error) {
	a := &xenabi.IoctlEvtchnBindUnboundPort{RemoteDomain: dom}
	r, err := f.Ioctl(xenabi.IOCTL_EVTCHN_BIND_UNBOUND_PORT, unsafe.Pointer(a))
	return uint32(r), err
}

func evNotify(f kernel.File, a *xenabi.IoctlEvtchnNotify) error {
	_, err := f.Ioctl(xenabi.IOCTL_EVTCHN_NOTIFY, unsafe.Pointer(a))
	return err
}

func evUnbind(f kernel.File, port uint32) error {
	a := &xenabi.IoctlEvtchnUnbind{Port: port}
	_, err := f.Ioctl(xenabi.IOCTL_EVTCHN_UNBIND, unsafe.Pointer(a))
	return err
}

func evRestrict(f kernel.File, dom uint16) error {
	a := &xenabi.IoctlEvtchnRestrictDomid{Domid: dom}
	_, err := f.Ioctl(xenabi.IOCTL_EVTCHN_RESTRICT_DOMID, unsafe.Pointer(a))
	return err
}

func evReset(f kernel.File) error {
	_, err := f.Ioctl(xenabi.IOCTL_EVTCHN_RESET, nil)
	return err
}

func bytesOf(ub []xenabi.PrivcmdDMOpBuf) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&ub[0])), len(ub)*int(unsafe.Sizeof(ub[0])))
}

func ioctlDMOpRaw(f kernel.File, op *xenabi.PrivcmdDMOp) error {
	_, err := f.Ioctl(xenabi.IOCTL_PRIVCMD_DM_OP, unsafe.Pointer(op))
	return err
}

func irqfdIoctl(f kernel.File, dom uint16, fd int, op []byte, deassign bool) error {
	a := &xenabi.PrivcmdIrqfd{DMOp: addr(op), Size: uint32(len(op)), Fd: uint32(fd), Dom: dom}
	if deassign {
		a.Flags = xenabi.PRIVCMD_IRQFD_FLAG_DEASSIGN
	}
	_, err := f.Ioctl(xenabi.IOCTL_PRIVCMD_IRQFD, unsafe.Pointer(a))
	return err
}

func ioeventfdIoctl(f kernel.File, a *xenabi.PrivcmdIoeventfd) error {
	_, err := f.Ioctl(xenabi.IOCTL_PRIVCMD_IOEVENTFD, unsafe.Pointer(a))
	return err
}

func addr32(p []uint32) uint64 { return uint64(uintptr(unsafe.Pointer(&p[0]))) }

func rawIoctl(f kernel.File, req uint, arg []byte) error {
	_, err := f.Ioctl(req, unsafe.Pointer(&arg[0]))
	return err
}

func rawIoctl2(f kernel.File, req uint, arg []byte) (uintptr, error) {
	return f.Ioctl(req, unsafe.Pointer(&arg[0]))
}
