package sandbox

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// installFilter sets no_new_privs on this thread and installs the
// allow-list on every thread (SECCOMP_FILTER_FLAG_TSYNC, which also gives
// the others no_new_privs: kernel/seccomp.c seccomp_sync_threads).
func installFilter(logOnly bool) error {
	if allowed == nil {
		return ErrUnsupported
	}
	deny := uint32(unix.SECCOMP_RET_KILL_PROCESS)
	if logOnly {
		deny = unix.SECCOMP_RET_LOG
	}
	prog := Program(auditArch, allowed, errnoCalls, cloneNr, deny)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl PR_SET_NO_NEW_PRIVS: %w", err)
	}
	fp := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fp)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return fmt.Errorf("seccomp: %w", errno)
	}
	if r != 0 {
		// TSYNC: the id of a thread that could not be synchronised.
		return fmt.Errorf("seccomp: thread %d cannot take the filter", r)
	}
	return nil
}
