package xensim

import (
	"unsafe"

	"godm/hyp"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// ioctlArg views the argument struct of an ioctl whose request number
// encodes its size (_IOC_SIZE), as the kernel's copy_from_user would
// read it.
func ioctlArg(req uint, arg unsafe.Pointer) []byte {
	n := (req >> 16) & 0x3fff
	if arg == nil || n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(arg), n)
}

// Ioctl implements kernel.File for /dev/xen/evtchn.
func (f *evtchnFile) Ioctl(req uint, arg unsafe.Pointer) (uintptr, error) {
	f.mu.Lock()
	closed := f.closed
	f.mu.Unlock()
	if closed {
		return 0, unix.EBADF
	}
	if arg == nil && req != xenabi.IOCTL_EVTCHN_RESET {
		return 0, unix.EFAULT
	}
	return f.ioctl(req, ioctlArg(req, arg))
}

// Ioctl implements kernel.File for /dev/xen/hypercall.
func (h *hcallFile) Ioctl(uint, unsafe.Pointer) (uintptr, error) { return 0, unix.ENOTTY }

// maxDMOpNum and maxDMOpBufSize are privcmd's dm_op_max_nr_bufs and
// dm_op_buf_max_size module parameters (defaults).
const (
	maxDMOpNum     = 16
	maxDMOpBufSize = 4096
)

// Ioctl implements kernel.File for /dev/xen/privcmd.
func (f *privcmdFile) Ioctl(req uint, arg unsafe.Pointer) (uintptr, error) {
	if arg == nil {
		return 0, unix.EFAULT
	}
	switch req {
	case xenabi.IOCTL_PRIVCMD_DM_OP:
		a := (*xenabi.PrivcmdDMOp)(arg)
		r, closed := f.restricted()
		if closed {
			return 0, unix.EBADF
		}
		if r >= 0 && uint16(r) != a.Dom {
			return 0, unix.EPERM
		}
		if a.Num == 0 {
			return 0, nil
		}
		if a.Num > maxDMOpNum {
			return 0, unix.E2BIG
		}
		if a.Ubufs == 0 {
			return 0, unix.EFAULT
		}
		ub := unsafe.Slice((*xenabi.PrivcmdDMOpBuf)(uptr(uintptr(a.Ubufs))), a.Num)
		var bufs [maxDMOpNum][]byte
		for i := range ub {
			if ub[i].Size > maxDMOpBufSize {
				return 0, unix.E2BIG
			}
			if ub[i].Uptr == 0 && ub[i].Size != 0 {
				return 0, unix.EFAULT
			}
			bufs[i] = userBytes(ub[i].Uptr, ub[i].Size)
		}
		if e := f.s.dmOp(f.caller, a.Dom, bufs[:a.Num]); e != 0 {
			return 0, e
		}
		return 0, nil

	case xenabi.IOCTL_PRIVCMD_HYPERCALL:
		a := (*xenabi.PrivcmdHypercall)(arg)
		r, closed := f.restricted()
		if closed {
			return 0, unix.EBADF
		}
		if r >= 0 {
			return 0, unix.EPERM
		}
		return f.s.hypercall(f.caller, a.Op, a.Arg)

	case xenabi.IOCTL_PRIVCMD_MMAPBATCH_V2:
		a := (*xenabi.PrivcmdMmapbatchV2)(arg)
		if a.Num == 0 {
			return 0, unix.EINVAL
		}
		if a.Arr == 0 || a.Err == 0 {
			return 0, unix.EFAULT
		}
		gfns := unsafe.Slice((*uint64)(uptr(uintptr(a.Arr))), a.Num)
		errs := unsafe.Slice((*int32)(uptr(uintptr(a.Err))), a.Num)
		return 0, f.mmapBatch(a.Dom, a.Addr, gfns, errs)

	case xenabi.IOCTL_PRIVCMD_MMAP_RESOURCE:
		a := (*xenabi.PrivcmdMmapResource)(arg)
		n, err := f.mmapResource(a.Dom, a.Type, a.ID, a.Idx, a.Num, a.Addr)
		if err != nil {
			return 0, err
		}
		if a.Num == 0 && a.Addr == 0 {
			a.Num = n
		}
		return 0, nil

	case xenabi.IOCTL_PRIVCMD_RESTRICT:
		return 0, f.restrictTo(*(*uint16)(arg))

	case xenabi.IOCTL_PRIVCMD_IRQFD:
		if !f.s.cfg.EventFDs {
			return 0, unix.ENOTTY // as Linux < 6.7
		}
		a := (*xenabi.PrivcmdIrqfd)(arg)
		return 0, f.irqfdIoctl(a.DMOp, a.Size, a.Fd, a.Flags, a.Dom)

	case xenabi.IOCTL_PRIVCMD_IOEVENTFD:
		if !f.s.cfg.EventFDs {
			return 0, unix.ENOTTY
		}
		return 0, f.ioeventfdIoctl((*xenabi.PrivcmdIoeventfd)(arg))
	}
	return 0, unix.ENOTTY
}

// hypercallBufs decodes the xen_dm_op_buf array of a HYPERVISOR_dm_op.
func hypercallDMOp(s *Sim, caller hyp.DomID, domid, nr, bufsPtr uint64) (uintptr, error) {
	if nr > maxDMOpBufs {
		return 0, unix.E2BIG
	}
	if nr > 0 && bufsPtr == 0 {
		return 0, unix.EFAULT
	}
	var bufs [maxDMOpBufs][]byte
	if nr > 0 {
		xb := unsafe.Slice((*xenabi.XenDMOpBuf)(uptr(uintptr(bufsPtr))), nr)
		for i := range xb {
			bufs[i] = userBytes(xb[i].H, xb[i].Size)
		}
	}
	if e := s.dmOp(caller, uint16(domid), bufs[:nr]); e != 0 {
		return 0, e
	}
	return 0, nil
}

// guestBytes views hypercall argument memory (a pointer argument).
func guestBytes(p uint64, n int) []byte { return userBytes(p, uint64(n)) }
