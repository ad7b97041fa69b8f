package chardev

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"
)

// File is an output-only backend writing to a host file, such as a guest's
// serial log. Opening it changes nothing in an existing file: its previous
// contents are truncated only when the device model has started (Commit)
// or when the first output byte reaches it, whichever comes first. A start
// that fails therefore leaves the last run's log as it was (QEMU's "file:"
// chardev truncates at open, before it knows the machine will start), and
// a file the backend had to create, never used, is removed on Close.
type File struct {
	*core
	f       *os.File
	path    string
	created bool
	opt     Options

	commitOnce sync.Once
	commitErr  error
	committed  bool // set inside commitOnce; read after it

	closeOnce sync.Once
	closeErr  error
}

var _ Backend = (*File)(nil)

// OpenFile opens (or creates, mode 0o644) the file at path as an
// output-only backend; see File for when it is truncated.
func OpenFile(path string, opt Options) (*File, error) {
	created := true
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		created = false
		f, err = os.OpenFile(path, os.O_WRONLY, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("chardev: open %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("chardev: open %s: %w", path, err)
	}
	b := &File{core: newCore(opt), f: f, path: path, created: created, opt: opt}
	if !fi.Mode().IsRegular() {
		// A terminal, FIFO or device (file:/dev/tty): nothing to
		// truncate, as open(2) ignores O_TRUNC on them.
		b.commitOnce.Do(func() { b.committed = true })
	}
	b.startWriter(b.out, func() {
		_ = f.SetWriteDeadline(time.Now().Add(opt.flushTimeout()))
	})
	return b, nil
}

// Path returns the file's path.
func (b *File) Path() string { return b.path }

// Commit truncates the file to empty, once: the device model has started
// and this run's output replaces the last one's. Later calls, and calls on
// a file that is not a regular file, do nothing.
func (b *File) Commit() error {
	b.commitOnce.Do(func() {
		b.committed = true
		if err := b.f.Truncate(0); err != nil {
			b.commitErr = fmt.Errorf("chardev: truncate %s: %w", b.path, err)
			return
		}
		if _, err := b.f.Seek(0, 0); err != nil {
			b.commitErr = fmt.Errorf("chardev: truncate %s: %w", b.path, err)
		}
	})
	return b.commitErr
}

func (b *File) out(p []byte) (int, error) {
	if err := b.Commit(); err != nil {
		return 0, err
	}
	return b.f.Write(p)
}

// Close implements Backend: it flushes buffered output for at most
// Options.FlushTimeout and closes the file, removing it if this backend
// created it and it was never committed or written.
func (b *File) Close() error {
	b.closeOnce.Do(func() {
		b.shutdown(func() { _ = b.f.SetWriteDeadline(time.Now().Add(b.opt.flushTimeout())) })
		// Once.Do returns after a Commit running elsewhere completes (and
		// stops later ones), so committed is safe to read after it.
		b.commitOnce.Do(func() {})
		used := b.committed
		if err := b.f.Close(); err != nil {
			b.closeErr = fmt.Errorf("chardev: close %s: %w", b.path, err)
		}
		if b.created && !used {
			if err := os.Remove(b.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				b.closeErr = errors.Join(b.closeErr, fmt.Errorf("chardev: remove unused %s: %w", b.path, err))
			}
		}
	})
	return b.closeErr
}
