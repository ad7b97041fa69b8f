package kernel

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestHostOpenMissing(t *testing.T) {
	h := Host{DevDir: t.TempDir()}
	if h.Available(Privcmd) {
		t.Errorf("Available(privcmd) in an empty dir")
	}
	_, err := h.Open(Privcmd, 0)
	if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, unix.ENOENT) {
		t.Errorf("Open = %v, want ENOENT (fs.ErrNotExist)", err)
	}
}

func TestHostOpenAndFileOps(t *testing.T) {
	dir := t.TempDir()
	// A FIFO stands in for a device file: openable O_RDWR, readable and
	// writable, no ioctls.
	if err := unix.Mkfifo(filepath.Join(dir, "evtchn"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := Host{DevDir: dir}
	if !h.Available(Evtchn) {
		t.Fatal("Available(evtchn) = false")
	}
	f, err := h.Open(Evtchn, unix.O_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := f.Write([]byte{1, 2, 3, 4}); n != 4 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	buf := make([]byte, 8)
	if n, err := f.Read(buf); n != 4 || err != nil || buf[3] != 4 {
		t.Fatalf("Read = %d, %v, %v", n, err, buf)
	}
	if _, err := f.Read(buf); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("empty non-blocking Read = %v, want EAGAIN", err)
	}
	if _, err := f.Ioctl(0x1234, nil); !errors.Is(err, unix.ENOTTY) {
		t.Errorf("Ioctl on a FIFO = %v, want ENOTTY", err)
	}
	if f.Fd() < 0 {
		t.Errorf("Fd = %d", f.Fd())
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	for name, err := range map[string]error{
		"Read":  second(f.Read(buf)),
		"Write": second(f.Write(buf)),
		"Ioctl": second(f.Ioctl(0, nil)),
		"Mmap":  second(f.Mmap(0, 4096, unix.PROT_READ)),
	} {
		if !errors.Is(err, unix.EBADF) {
			t.Errorf("%s after Close = %v, want EBADF", name, err)
		}
	}
}

func TestNewFileTakesOwnership(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	fd, err := unix.Dup(int(r.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	f := NewFile(fd)
	w.Write([]byte("x"))
	b := make([]byte, 1)
	if n, err := f.Read(b); n != 1 || err != nil || b[0] != 'x' {
		t.Errorf("Read = %d %v %q", n, err, b)
	}
	f.Close()
	// Non-destructive check (closing again could hit a reused fd number).
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Errorf("fd still open after Close: %v", err)
	}
}

func second[T any](_ T, err error) error { return err }
