package kernel

import "unsafe"

// Device names one of the dom0 Xen device files.
type Device int

// The device files godm uses.
const (
	// Privcmd is /dev/xen/privcmd: hypercalls, DM ops, foreign mappings.
	Privcmd Device = iota
	// Hypercall is /dev/xen/hypercall: mmap-able hypercall buffers.
	Hypercall
	// Evtchn is /dev/xen/evtchn: event channels.
	Evtchn
	// Xenbus is /dev/xen/xenbus: the xenstore ring of a domain without a
	// local xenstored socket.
	Xenbus
)

// Name returns the file name of the device under the device directory.
func (d Device) Name() string {
	switch d {
	case Privcmd:
		return "privcmd"
	case Hypercall:
		return "hypercall"
	case Evtchn:
		return "evtchn"
	case Xenbus:
		return "xenbus"
	}
	return "unknown"
}

// String implements fmt.Stringer.
func (d Device) String() string { return d.Name() }

// Kernel opens dom0 device files. Implemented by Host (real files) and by
// the simulated Xen.
type Kernel interface {
	// Open opens a device. flags are open(2) flags beyond O_RDWR|O_CLOEXEC,
	// e.g. unix.O_NONBLOCK. A missing device gives an error wrapping
	// fs.ErrNotExist.
	Open(dev Device, flags int) (File, error)
}

// File is an open device file.
type File interface {
	// Ioctl issues request req with argument arg (a pointer to the
	// request's argument struct, or nil). It returns the ioctl's
	// non-negative result (hypercalls return their own value), or an error
	// that is a unix.Errno.
	Ioctl(req uint, arg unsafe.Pointer) (uintptr, error)
	// Mmap maps length bytes of the file at offset with the given
	// protection (MAP_SHARED).
	Mmap(offset int64, length int, prot int) ([]byte, error)
	// Munmap unmaps a region returned by Mmap.
	Munmap(b []byte) error
	// Read reads from the file (evtchn: pending ports as uint32s).
	Read(p []byte) (int, error)
	// Write writes to the file (evtchn: ports to unmask).
	Write(p []byte) (int, error)
	// Fd returns a file descriptor that is readable whenever Read would
	// not block, for use with epoll. It stays owned by the File.
	Fd() int
	// Close closes the file. It is idempotent.
	Close() error
}
