package xenstored

import (
	"fmt"

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
	// The process side is a plain socket: the xenbus device has no ioctls
	// or mappings godm uses, and a socket answers them with ENOTTY/ENODEV.
	return kernel.NewFile(fds[0]), nil
}
