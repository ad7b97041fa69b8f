package chardev

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// PTY is a backend on the master side of a new pseudo-terminal. The guest's
// serial line appears to host programs as the slave device at Path.
type PTY struct {
	*Stream
	path string
}

var _ Backend = (*PTY)(nil)

// OpenPTY opens the pseudo-terminal multiplexer at ptmx (on Linux
// "/dev/ptmx"; the caller supplies it), unlocks the new slave, puts it in
// raw mode and returns the backend. The slave path is derived from ptmx:
// <dir of ptmx>/pts/<n>. While no process holds the slave open, output
// accumulates in the terminal until it is full and is then dropped.
func OpenPTY(ptmx string, opt Options) (p *PTY, err error) {
	fd, err := unix.Open(ptmx, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("chardev: open %s: %w", ptmx, err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	// Unlock the slave (unlockpt(3)): TIOCSPTLCK with a zero int.
	if err = unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		return nil, fmt.Errorf("chardev: %s: TIOCSPTLCK: %w", ptmx, err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		return nil, fmt.Errorf("chardev: %s: TIOCGPTN: %w", ptmx, err)
	}
	path := filepath.Join(filepath.Dir(ptmx), "pts", strconv.FormatUint(uint64(n), 10))
	if err = makeRaw(path); err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), ptmx)
	// The same descriptor serves both directions; duplicate it so that the
	// Stream can own (and close) each side independently.
	wfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		f.Close()
		fd = -1
		return nil, fmt.Errorf("chardev: dup %s: %w", ptmx, err)
	}
	w := os.NewFile(uintptr(wfd), ptmx)
	s := &Stream{core: newCore(opt), in: f, out: w, opt: opt, eioRetry: true}
	s.start()
	return &PTY{Stream: s, path: path}, nil
}

// Path returns the slave device path, for example "/dev/pts/3".
func (p *PTY) Path() string { return p.path }

// makeRaw opens the slave once and applies cfmakeraw(3) settings so that
// bytes pass through unchanged (no echo, no line editing, no CR/LF
// translation), as QEMU's pty chardev does.
func makeRaw(path string) error {
	sfd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("chardev: open pty slave %s: %w", path, err)
	}
	defer unix.Close(sfd)
	t, err := unix.IoctlGetTermios(sfd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("chardev: %s: TCGETS: %w", path, err)
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(sfd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("chardev: %s: TCSETS: %w", path, err)
	}
	return nil
}
