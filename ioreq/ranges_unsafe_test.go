package ioreq_test

import (
	"encoding/binary"
	"sync"
	"unsafe"

	"godm/hyp/kernel"
	"godm/hyp/xenabi"
)

// rangeOp is one map_io_range / unmap_io_range DM op the hypervisor
// accepted.
type rangeOp struct {
	Map        bool
	Kind       uint32 // XEN_DMOP_IO_RANGE_*
	Start, End uint64 // inclusive
}

// rangeLog records, in the order the hypervisor completed them, the
// io-range DM ops that succeeded. xensim performs a DM op under its lock
// inside the ioctl, so the order of completions seen by one caller is the
// order of their effects.
type rangeLog struct {
	mu  sync.Mutex
	ops []rangeOp
}

func (l *rangeLog) snapshot() []rangeOp {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]rangeOp(nil), l.ops...)
}

// rangeKernel wraps a kernel, logging the io-range DM ops into log.
type rangeKernel struct {
	kernel.Kernel
	log *rangeLog
}

func (k rangeKernel) Open(d kernel.Device, flags int) (kernel.File, error) {
	f, err := k.Kernel.Open(d, flags)
	if err != nil || d != kernel.Privcmd {
		return f, err
	}
	return rangeFile{f, k.log}, nil
}

type rangeFile struct {
	kernel.File
	log *rangeLog
}

func (f rangeFile) Ioctl(req uint, arg unsafe.Pointer) (uintptr, error) {
	var op rangeOp
	isRange := false
	if req == xenabi.IOCTL_PRIVCMD_DM_OP {
		a := (*xenabi.PrivcmdDMOp)(arg)
		if a.Num > 0 && a.Ubufs != 0 {
			// The user pointers are addresses of live Go memory: read
			// them as pointers (see recFile.Ioctl).
			buf := (*xenabi.PrivcmdDMOpBuf)(*(*unsafe.Pointer)(unsafe.Pointer(&a.Ubufs)))
			if buf.Size >= 32 {
				b := unsafe.Slice((*byte)(*(*unsafe.Pointer)(unsafe.Pointer(&buf.Uptr))), 32)
				// struct xen_dm_op: op, pad, then
				// xen_dm_op_ioreq_server_range {id, pad, type, start, end}
				// (xen/include/public/hvm/dm_op.h).
				switch binary.LittleEndian.Uint32(b) {
				case xenabi.XEN_DMOP_map_io_range_to_ioreq_server:
					isRange, op.Map = true, true
				case xenabi.XEN_DMOP_unmap_io_range_from_ioreq_server:
					isRange = true
				}
				op.Kind = binary.LittleEndian.Uint32(b[12:])
				op.Start = binary.LittleEndian.Uint64(b[16:])
				op.End = binary.LittleEndian.Uint64(b[24:])
			}
		}
	}
	r, err := f.File.Ioctl(req, arg)
	if isRange && err == nil {
		f.log.mu.Lock()
		f.log.ops = append(f.log.ops, op)
		f.log.mu.Unlock()
	}
	return r, err
}
