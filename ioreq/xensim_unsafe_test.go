package ioreq_test

import (
	"strconv"
	"sync"
	"unsafe"

	"godm/hyp/kernel"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// noResourceFile fails IOCTL_PRIVCMD_MMAP_RESOURCE with EOPNOTSUPP.
type noResourceFile struct{ kernel.File }

func (f noResourceFile) Ioctl(req uint, arg unsafe.Pointer) (uintptr, error) {
	if req == xenabi.IOCTL_PRIVCMD_MMAP_RESOURCE {
		return 0, unix.EOPNOTSUPP
	}
	return f.File.Ioctl(req, arg)
}

// recKernel records the control operations godm hands the kernel, in order.
type recKernel struct {
	kernel.Kernel
	mu  *sync.Mutex
	ops *[]string
}

func (k recKernel) Open(d kernel.Device, flags int) (kernel.File, error) {
	f, err := k.Kernel.Open(d, flags)
	if err != nil {
		return f, err
	}
	return recFile{f, k}, nil
}

type recFile struct {
	kernel.File
	k recKernel
}

func (f recFile) rec(op string) {
	f.k.mu.Lock()
	defer f.k.mu.Unlock()
	*f.k.ops = append(*f.k.ops, op)
}

func (f recFile) Ioctl(req uint, arg unsafe.Pointer) (uintptr, error) {
	switch req {
	case xenabi.IOCTL_PRIVCMD_DM_OP:
		a := (*xenabi.PrivcmdDMOp)(arg)
		if a.Num == 0 || a.Ubufs == 0 {
			break // privcmd.Open's feature probe
		}
		// The user pointers are real addresses of live Go memory; read
		// them as pointers, not through uintptr arithmetic.
		buf := (*xenabi.PrivcmdDMOpBuf)(*(*unsafe.Pointer)(unsafe.Pointer(&a.Ubufs)))
		op := *(*uint32)(*(*unsafe.Pointer)(unsafe.Pointer(&buf.Uptr)))
		f.rec("dm:" + strconv.Itoa(int(op)))
	case xenabi.IOCTL_PRIVCMD_MMAP_RESOURCE:
		f.rec("map-resource")
	case xenabi.IOCTL_PRIVCMD_MMAPBATCH_V2:
		f.rec("map-gfns")
	case xenabi.IOCTL_EVTCHN_BIND_INTERDOMAIN:
		f.rec("bind")
	case xenabi.IOCTL_EVTCHN_UNBIND:
		f.rec("unbind")
	}
	return f.File.Ioctl(req, arg)
}

func (f recFile) Munmap(b []byte) error {
	f.rec("munmap")
	return f.File.Munmap(b)
}
