package ioreq

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// waiter blocks a worker's thread in epoll on its event-channel fd and a
// private eventfd used to stop it.
type waiter struct {
	epfd   int
	stopFd int
	events [2]unix.EpollEvent

	mu     sync.Mutex
	closed bool
	woken  bool
}

func newWaiter(evFd int) (*waiter, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	stopFd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	w := &waiter{epfd: epfd, stopFd: stopFd}
	for _, fd := range []int{evFd, stopFd} {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			w.close()
			return nil, fmt.Errorf("epoll_ctl add fd %d: %w", fd, err)
		}
	}
	return w, nil
}

// wait blocks until the event fd is readable (nil) or wake was called
// (errStopped).
func (w *waiter) wait() error {
	for {
		n, err := unix.EpollWait(w.epfd, w.events[:], -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range w.events[:n] {
			if int(e.Fd) == w.stopFd {
				return errStopped
			}
		}
		return nil
	}
}

// wake makes wait return errStopped, now and on every later call.
func (w *waiter) wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.woken {
		return
	}
	w.woken = true
	one := [8]byte{1}
	unix.Write(w.stopFd, one[:])
}

func (w *waiter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	unix.Close(w.epfd)
	unix.Close(w.stopFd)
}
