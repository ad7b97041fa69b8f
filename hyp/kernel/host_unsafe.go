//go:build linux

package kernel

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

func (f *hostFile) Ioctl(req uint, arg unsafe.Pointer) (uintptr, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return 0, unix.EBADF
	}
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(f.fd), uintptr(req), uintptr(arg))
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}
