package xenstored

import (
	"fmt"
	"sync"
	"unsafe"

	"godm/hyp"
	"godm/hyp/kernel"
	"golang.org/x/sys/unix"
)

// XenbusFile returns a kernel.File that behaves like /dev/xen/xenbus opened
// by a process in domain dom: writes carry requests to this Server and
// reads return its replies and watch events. It has a real fd (one end of
// a socketpair), so poll/epoll on Fd work. flags may contain
// unix.O_NONBLOCK. Its signature is a hyp/xensim Opener, so a simulated
// kernel serves this store as /dev/xen/xenbus with
//
//	sim.SetDevice(kernel.Xenbus, store.XenbusFile)
func (s *Server) XenbusFile(dom hyp.DomID, flags int) (kernel.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("xenstored: socketpair: %w", err)
	}
	srv, err := fdConn(fds[1])
	if err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	if flags&unix.O_NONBLOCK != 0 {
		if err := unix.SetNonblock(fds[0], true); err != nil {
			unix.Close(fds[0])
			srv.Close()
			return nil, fmt.Errorf("xenstored: xenbus nonblock: %w", err)
		}
	}
	if err := s.Attach(srv, dom); err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	return &xenbusFile{fd: fds[0]}, nil
}

// xenbusFile is the process side of a simulated xenbus device.
type xenbusFile struct {
	mu     sync.RWMutex // guards fd against Close during use
	fd     int
	closed bool
}

var _ kernel.File = (*xenbusFile)(nil)

// Ioctl implements kernel.File; the xenbus device has no ioctls godm
// uses.
func (f *xenbusFile) Ioctl(req uint, arg unsafe.Pointer) (uintptr, error) {
	return 0, unix.ENOTTY
}

// Mmap implements kernel.File; xenbus cannot be mapped.
func (f *xenbusFile) Mmap(offset int64, length int, prot int) ([]byte, error) {
	return nil, unix.ENODEV
}

// Munmap implements kernel.File.
func (f *xenbusFile) Munmap(b []byte) error { return unix.EINVAL }

// Read implements kernel.File.
func (f *xenbusFile) Read(p []byte) (int, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return 0, unix.EBADF
	}
	n, err := unix.Read(f.fd, p)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Write implements kernel.File.
func (f *xenbusFile) Write(p []byte) (int, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return 0, unix.EBADF
	}
	n, err := unix.Write(f.fd, p)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Fd implements kernel.File.
func (f *xenbusFile) Fd() int { return f.fd }

// Close implements kernel.File; it is idempotent.
func (f *xenbusFile) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	return unix.Close(f.fd)
}
