//go:build linux

package ioreq

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// epollWaitHeld is epoll_wait(2) issued as a raw system call: the Go
// scheduler is not told the thread blocks, so the calling goroutine keeps
// its P (sysmon cannot hand it to another thread, and the return needs no
// P to be found again). A signal (the runtime's preemption request, for a
// garbage collection's stop or a stack scan) ends it with EINTR, and the
// caller's next function call is the preemption point. epoll_pwait with no
// signal mask is epoll_wait, and exists on every Linux architecture.
func epollWaitHeld(epfd int, events []unix.EpollEvent, msec int) (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), uintptr(msec), 0, 0)
	return int(r), e
}
