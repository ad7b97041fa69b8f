package ioreq

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// waiter blocks a worker's thread in epoll on its event-channel fd and a
// private eventfd used to stop it.
type waiter struct {
	epfd    int
	stopFd  int
	nudgeFd int
	events  [3]unix.EpollEvent

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
	nudgeFd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		unix.Close(stopFd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	w := &waiter{epfd: epfd, stopFd: stopFd, nudgeFd: nudgeFd}
	for _, fd := range []int{evFd, stopFd, nudgeFd} {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			w.close()
			return nil, fmt.Errorf("epoll_ctl add fd %d: %w", fd, err)
		}
	}
	return w, nil
}

// wait blocks until the event fd is readable (nil), wake was called
// (errStopped) or nudge was (errNudged, once per nudge). If stamp is not
// nil it gets the clock reading (nanotime) taken as the kernel returned,
// before the goroutine had its P back (epollWaitStamped).
func (w *waiter) wait(stamp *int64) error {
	for {
		n, errno := epollWaitStamped(w.epfd, w.events[:], stamp)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		return w.result(n)
	}
}

// waitHeld is wait for at most msec milliseconds, without letting go of
// the goroutine's P (epollWaitHeld); errTimedOut if nothing happened. An
// interrupted wait (EINTR: the runtime asking the goroutine to stop)
// reports errTimedOut early, so that the caller reaches a preemption
// point.
func (w *waiter) waitHeld(msec int) error {
	n, errno := epollWaitHeld(w.epfd, w.events[:], msec)
	switch {
	case errno == unix.EINTR || (errno == 0 && n == 0):
		return errTimedOut
	case errno != 0:
		return errno
	}
	return w.result(n)
}

// result interprets n events returned by epoll.
func (w *waiter) result(n int) error {
	{
		nudged := false
		for _, e := range w.events[:n] {
			switch int(e.Fd) {
			case w.stopFd:
				return errStopped
			case w.nudgeFd:
				nudged = true
			}
		}
		if nudged {
			var b [8]byte
			unix.Read(w.nudgeFd, b[:])
			return errNudged
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

// nudge makes the current or next wait return errNudged (a worker's
// pause check).
func (w *waiter) nudge() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	one := [8]byte{1}
	unix.Write(w.nudgeFd, one[:])
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
	unix.Close(w.nudgeFd)
}
