package kernel

import (
	"fmt"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// DefaultDevDir is where Linux dom0 kernels expose the Xen device files.
const DefaultDevDir = "/dev/xen"

// Host is the real kernel: device files under DevDir.
type Host struct {
	// DevDir is the directory holding the device files; empty means
	// DefaultDevDir.
	DevDir string
}

var _ Kernel = Host{}

// Open implements Kernel.
func (h Host) Open(dev Device, flags int) (File, error) {
	dir := h.DevDir
	if dir == "" {
		dir = DefaultDevDir
	}
	path := filepath.Join(dir, dev.Name())
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC|flags, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return NewFile(fd), nil
}

// Available reports whether the device exists under the host's device
// directory (e.g. to detect real Xen).
func (h Host) Available(dev Device) bool {
	dir := h.DevDir
	if dir == "" {
		dir = DefaultDevDir
	}
	return unix.Access(filepath.Join(dir, dev.Name()), unix.R_OK|unix.W_OK) == nil
}

// NewFile returns a File over an open file descriptor, which it takes
// ownership of: Read, Write, Ioctl and Mmap go straight to the kernel.
// Simulated devices backed by real fds (a socketpair standing in for
// /dev/xen/xenbus) use it too.
func NewFile(fd int) File { return &hostFile{fd: fd} }

type hostFile struct {
	mu     sync.RWMutex // guards fd against Close during use
	fd     int
	closed bool
}

func (f *hostFile) Mmap(offset int64, length int, prot int) ([]byte, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return nil, unix.EBADF
	}
	return unix.Mmap(f.fd, offset, length, prot, unix.MAP_SHARED)
}

func (f *hostFile) Munmap(b []byte) error { return unix.Munmap(b) }

func (f *hostFile) Read(p []byte) (int, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return 0, unix.EBADF
	}
	n, err := unix.Read(f.fd, p)
	if err != nil {
		return 0, err
	}
	return n, nil
}

func (f *hostFile) Write(p []byte) (int, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return 0, unix.EBADF
	}
	n, err := unix.Write(f.fd, p)
	if err != nil {
		return 0, err
	}
	return n, nil
}

func (f *hostFile) Fd() int { return f.fd }

func (f *hostFile) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	return unix.Close(f.fd)
}
