package ioreq_test

import (
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
