package chardev

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Stdio returns a backend on duplicates of the given files (typically
// os.Stdin and os.Stdout; either may be nil). The duplicates are switched to
// non-blocking mode so that Close can interrupt a pending read; note that
// O_NONBLOCK is shared with every other holder of the same open file
// description. The caller keeps ownership of in and out. Terminal settings
// are left alone.
func Stdio(in, out *os.File, opt Options) (*Stream, error) {
	var din, dout *os.File
	var err error
	if in != nil {
		if din, err = dupNonblock(in); err != nil {
			return nil, err
		}
	}
	if out != nil {
		if dout, err = dupNonblock(out); err != nil {
			if din != nil {
				din.Close()
			}
			return nil, err
		}
	}
	return NewStream(din, dout, opt), nil
}

func dupNonblock(f *os.File) (*os.File, error) {
	// SyscallConn rather than Fd: Fd would switch the caller's file to
	// blocking mode.
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("chardev: dup %s: %w", f.Name(), err)
	}
	fd := -1
	if cerr := rc.Control(func(raw uintptr) { fd, err = unix.FcntlInt(raw, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("chardev: dup %s: %w", f.Name(), err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("chardev: set non-blocking %s: %w", f.Name(), err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}
