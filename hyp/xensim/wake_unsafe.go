package xensim

import (
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Futex operations (include/uapi/linux/futex.h): FUTEX_WAIT and FUTEX_WAKE
// with FUTEX_PRIVATE_FLAG, on a word only this process uses.
const (
	futexWaitPrivate = 0 | 128
	futexWakePrivate = 1 | 128
)

// futexWait blocks the calling OS thread while *w == old, for at most d
// (the kernel compares and sleeps atomically, so a change made before the
// call returns at once). It returns on a wake, a change, a signal or the
// timeout; the caller re-checks what it waits for. The word lives in a
// heap object, which Go's collector does not move.
func futexWait(w *atomic.Uint32, old uint32, d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWaitPrivate, uintptr(old),
		uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// futexWaitHeld is futexWait as a raw system call: the Go scheduler is not
// told the thread sleeps, so its goroutine keeps its P (VCPU.SetHoldP). A
// signal — the runtime's preemption request — ends it early.
func futexWaitHeld(w *atomic.Uint32, old uint32, d time.Duration) {
	ts := unix.NsecToTimespec(int64(d))
	unix.RawSyscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWaitPrivate, uintptr(old),
		uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// futexWake wakes the thread blocked in futexWait on w, if any.
func futexWake(w *atomic.Uint32) {
	unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(w)), futexWakePrivate, 1, 0, 0, 0)
}
