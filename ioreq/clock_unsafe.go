//go:build linux

package ioreq

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The stage stamps of sampled requests (Counters.Stages) read the
// runtime's monotonic clock directly: it is what time.Now's monotonic
// reading is made of (CLOCK_MONOTONIC through the vDSO), without the
// wall-clock read, and it may be called where the goroutine holds no P.
// The runtime exports nanotime, entersyscall and exitsyscall to linkname
// users (runtime/time_nofake.go, runtime/proc.go: "widely used packages
// access it using linkname"), which is how syscall.Syscall and
// x/sys/unix wrap their raw system calls.

//go:linkname nanotime runtime.nanotime
func nanotime() int64

//go:linkname entersyscall runtime.entersyscall
func entersyscall()

//go:linkname exitsyscall runtime.exitsyscall
func exitsyscall()

// epollWaitStamped is epoll_wait(2) with no timeout issued the way
// syscall.Syscall6 issues it (the scheduler is told the thread blocks, so
// sysmon may hand its P to another thread), with one addition when stamp
// is set: the clock is read right after the kernel returned and before
// the runtime's exitsyscall, which is where a worker whose P was taken
// waits for one. The caller reads the clock again once it runs: the
// difference is what the Go scheduler added to the wake-up.
//
//go:nosplit
//go:norace
func epollWaitStamped(epfd int, events []unix.EpollEvent, stamp *int64) (int, unix.Errno) {
	p := uintptr(unsafe.Pointer(&events[0]))
	n := uintptr(len(events))
	entersyscall()
	r, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), p, n, ^uintptr(0), 0, 0)
	if stamp != nil {
		*stamp = nanotime()
	}
	exitsyscall()
	return int(r), unix.Errno(e)
}
