// Package unixsock opens the listening Unix stream sockets godm serves on
// (QMP monitors, socket chardevs): by path, replacing a stale socket file a
// dead process left behind but never a live one, or from a descriptor the
// toolstack pre-opened (libxl's dm_restrict passes "fd=N").
package unixsock

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Listen listens on a Unix stream socket at path. If path already exists
// and is a socket nobody accepts on (connect answers ECONNREFUSED: its
// process is gone), it is removed and replaced; a socket a live process
// listens on, or a file that is not a socket, is an error. The socket file
// is removed when the listener is closed.
func Listen(path string) (*net.UnixListener, error) {
	addr := &net.UnixAddr{Name: path, Net: "unix"}
	ln, err := net.ListenUnix("unix", addr)
	if err == nil {
		return ln, nil
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	fi, serr := os.Lstat(path)
	if serr != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return nil, fmt.Errorf("listen on %s: the path exists and is not a socket", path)
	}
	c, derr := net.DialUnix("unix", nil, addr)
	if derr == nil {
		c.Close()
		return nil, fmt.Errorf("listen on %s: a running process is serving on this socket", path)
	}
	if !errors.Is(derr, syscall.ECONNREFUSED) {
		return nil, fmt.Errorf("listen on %s: the socket exists and probing it failed: %w", path, derr)
	}
	// Stale: its listener is gone. Another process may win the race to
	// re-create it; then this listen fails with EADDRINUSE again.
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("listen on %s: removing the stale socket: %w", path, err)
	}
	ln, err = net.ListenUnix("unix", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return ln, nil
}

// FromFD takes over fd, a Unix stream socket in the listening state that the
// parent process opened and passed down (libxl's pre-opened QMP socket). The
// descriptor is owned by the returned listener (closing it closes fd); the
// socket file, if any, is not removed on close, as godm did not create it.
func FromFD(fd int) (*net.UnixListener, error) {
	if fd < 0 {
		return nil, fmt.Errorf("fd %d: not a file descriptor", fd)
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return nil, fmt.Errorf("fd %d: not a socket: %w", fd, err)
	}
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return nil, fmt.Errorf("fd %d: %w", fd, err)
	}
	if typ != unix.SOCK_STREAM || dom != unix.AF_UNIX {
		return nil, fmt.Errorf("fd %d: not a Unix stream socket", fd)
	}
	acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return nil, fmt.Errorf("fd %d: %w", fd, err)
	}
	if acc == 0 {
		return nil, fmt.Errorf("fd %d: the socket is not listening", fd)
	}
	f := os.NewFile(uintptr(fd), fmt.Sprintf("fd%d", fd))
	l, err := net.FileListener(f)
	// FileListener dups the descriptor: the listener owns the copy.
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("fd %d: %w", fd, err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("fd %d: not a Unix stream socket", fd)
	}
	ul.SetUnlinkOnClose(false)
	return ul, nil
}
