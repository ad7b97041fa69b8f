package xenstore

import (
	"encoding/binary"
	"errors"
	"io"
	"sync"

	"godm/hyp"
	"godm/hyp/kernel"
	"golang.org/x/sys/unix"
)

// fileConn adapts a non-blocking kernel.File (the xenbus device) to
// io.ReadWriteCloser. Read and Write wait with poll(2) on the file's Fd and
// on an eventfd that Close signals, so Close unblocks them.
type fileConn struct {
	f    kernel.File
	wake int // eventfd, readable forever once Close signalled it

	rmu sync.Mutex // held across a Read; Close takes it after waking
	wmu sync.Mutex // held across a Write; Close takes it after waking

	closeOnce sync.Once
	closeErr  error
	closedMu  sync.Mutex
	closed    bool // +checklocks:closedMu
}

func newFileConn(f kernel.File) (*fileConn, error) {
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	return &fileConn{f: f, wake: wake}, nil
}

func (fc *fileConn) isClosed() bool {
	fc.closedMu.Lock()
	defer fc.closedMu.Unlock()
	return fc.closed
}

// wait blocks until the file is ready for events or Close was called.
func (fc *fileConn) wait(events int16) error {
	for {
		if fc.isClosed() {
			return hyp.ErrClosed
		}
		fds := []unix.PollFd{
			{Fd: int32(fc.f.Fd()), Events: events},
			{Fd: int32(fc.wake), Events: unix.POLLIN},
		}
		_, err := unix.Poll(fds, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if fds[1].Revents != 0 {
			return hyp.ErrClosed
		}
		return nil
	}
}

// Read implements io.Reader, waiting in poll(2) while the file has nothing.
func (fc *fileConn) Read(p []byte) (int, error) {
	fc.rmu.Lock()
	defer fc.rmu.Unlock()
	for {
		if fc.isClosed() {
			return 0, hyp.ErrClosed
		}
		n, err := fc.f.Read(p)
		switch {
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			if err := fc.wait(unix.POLLIN); err != nil {
				return 0, err
			}
		case err != nil:
			return n, err
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		default:
			return n, nil
		}
	}
}

// Write implements io.Writer, writing all of p (waiting in poll(2) while
// the file is full).
func (fc *fileConn) Write(p []byte) (int, error) {
	fc.wmu.Lock()
	defer fc.wmu.Unlock()
	done := 0
	for done < len(p) {
		if fc.isClosed() {
			return done, hyp.ErrClosed
		}
		n, err := fc.f.Write(p[done:])
		if n > 0 {
			done += n
		}
		switch {
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			if err := fc.wait(unix.POLLOUT); err != nil {
				return done, err
			}
		case err != nil:
			return done, err
		case n == 0:
			return done, io.ErrShortWrite
		}
	}
	return done, nil
}

// Close wakes any Read or Write, waits for them to return, then closes
// the file and the eventfd. It is idempotent.
func (fc *fileConn) Close() error {
	fc.closeOnce.Do(func() {
		fc.closedMu.Lock()
		fc.closed = true
		fc.closedMu.Unlock()
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1) // eventfd counter increment
		_, _ = unix.Write(fc.wake, one[:])
		fc.rmu.Lock()
		fc.wmu.Lock()
		fc.closeErr = fc.f.Close()
		unix.Close(fc.wake)
		fc.wmu.Unlock()
		fc.rmu.Unlock()
	})
	return fc.closeErr
}
