package chardev

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Stdio returns a backend on the given files (typically os.Stdin and
// os.Stdout; either may be nil). The backend needs non-blocking files so
// that Close can interrupt a pending read, but O_NONBLOCK belongs to the
// open file description, which a plain dup shares with the caller (and
// with the shell that gave godm its terminal). So each file is reopened
// through /proc/self/fd, which gives a private description of the same
// terminal or pipe; a regular file is only dup'ed (O_NONBLOCK means
// nothing to it, and a reopen would lose O_APPEND and the offset). Where
// a reopen is impossible (a socket), the file is dup'ed, switched to
// non-blocking, and switched back when the backend closes. The caller
// keeps ownership of in and out. Terminal settings are left alone.
func Stdio(in, out *os.File, opt Options) (*Stream, error) {
	var din, dout *os.File
	var restore []func()
	var err error
	if in != nil {
		if din, restore, err = private(in, unix.O_RDONLY, restore); err != nil {
			return nil, err
		}
	}
	if out != nil {
		if dout, restore, err = private(out, unix.O_WRONLY, restore); err != nil {
			if din != nil {
				din.Close()
			}
			for _, r := range restore {
				r()
			}
			return nil, err
		}
	}
	s := NewStream(din, dout, opt)
	s.onClose = restore
	return s, nil
}

// private returns a non-blocking file for f that does not change f's own
// flags, and appends to restore what must be undone at close.
func private(f *os.File, mode int, restore []func()) (*os.File, []func(), error) {
	// SyscallConn rather than Fd: Fd would switch the caller's file to
	// blocking mode.
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, restore, fmt.Errorf("chardev: %s: %w", f.Name(), err)
	}
	fd, undo := -1, func() {}
	cerr := rc.Control(func(raw uintptr) { fd, undo, err = privateFD(int(raw), mode) })
	if cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, restore, fmt.Errorf("chardev: %s: %w", f.Name(), err)
	}
	return os.NewFile(uintptr(fd), f.Name()), append(restore, undo), nil
}

func privateFD(raw, mode int) (int, func(), error) {
	var st unix.Stat_t
	if err := unix.Fstat(raw, &st); err != nil {
		return -1, nil, fmt.Errorf("fstat: %w", err)
	}
	nop := func() {}
	if st.Mode&unix.S_IFMT == unix.S_IFREG {
		fd, err := unix.FcntlInt(uintptr(raw), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return -1, nil, fmt.Errorf("dup: %w", err)
		}
		return fd, nop, nil
	}
	// A terminal, a pipe or a character device: a description of our own
	// (proc(5): opening /proc/self/fd/N opens the file anew).
	fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", raw), mode|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err == nil {
		return fd, nop, nil
	}
	// A socket (ENXIO) or no /proc: share the description and put its flag
	// back afterwards.
	fd, err = unix.FcntlInt(uintptr(raw), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, nil, fmt.Errorf("dup: %w", err)
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("get flags: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("set non-blocking: %w", err)
	}
	if fl&unix.O_NONBLOCK != 0 {
		return fd, nop, nil
	}
	return fd, func() { unix.FcntlInt(uintptr(raw), unix.F_SETFL, fl) }, nil
}
