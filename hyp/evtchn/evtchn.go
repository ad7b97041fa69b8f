package evtchn

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"godm/hyp"
	"godm/hyp/kernel"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// Port is a local event-channel port.
type Port uint32

// portSize is the size of one port read from or written to the device.
const portSize = 4

// nslots is the number of preallocated argument blocks per Handle.
const nslots = 4

// slot is a preallocated argument block for Notify and Unmask.
type slot struct {
	mu     sync.Mutex
	notify *xenabi.IoctlEvtchnNotify // guarded by mu
	buf    []byte                    // guarded by mu: one port, for Unmask
}

// Handle is an open /dev/xen/evtchn.
type Handle struct {
	f      kernel.File
	closed atomic.Bool
	slots  [nslots]slot
}

// Open opens /dev/xen/evtchn through k, non-blocking.
func Open(k kernel.Kernel) (*Handle, error) {
	f, err := k.Open(kernel.Evtchn, unix.O_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("evtchn: open: %w", err)
	}
	h := &Handle{f: f}
	for i := range h.slots {
		h.slots[i].notify = new(xenabi.IoctlEvtchnNotify)
		h.slots[i].buf = make([]byte, portSize)
	}
	return h, nil
}

// acquire locks a free argument block, or waits for the first.
func (h *Handle) acquire() *slot {
	for i := range h.slots {
		if h.slots[i].mu.TryLock() {
			return &h.slots[i]
		}
	}
	s := &h.slots[0]
	s.mu.Lock()
	return s
}

// Fd returns the device's file descriptor: readable when Pending would
// return ports. It stays owned by the Handle.
func (h *Handle) Fd() int { return h.f.Fd() }

// Close closes the device, unbinding all its ports. It is idempotent.
func (h *Handle) Close() error {
	if h.closed.Swap(true) {
		return nil
	}
	if err := h.f.Close(); err != nil {
		return fmt.Errorf("evtchn: close: %w", err)
	}
	return nil
}

// BindInterdomain binds a new local port to port remote of dom.
func (h *Handle) BindInterdomain(dom hyp.DomID, remote Port) (Port, error) {
	if h.closed.Load() {
		return 0, fmt.Errorf("evtchn: bind_interdomain %v port %d: %w", dom, remote, hyp.ErrClosed)
	}
	a := &xenabi.IoctlEvtchnBindInterdomain{RemoteDomain: uint32(dom), RemotePort: uint32(remote)}
	p, err := ioctlBindInterdomain(h.f, a)
	if err != nil {
		return 0, fmt.Errorf("evtchn: bind_interdomain %v port %d: %w", dom, remote, err)
	}
	return Port(p), nil
}

// BindUnboundPort allocates a new local port that dom may bind to.
func (h *Handle) BindUnboundPort(dom hyp.DomID) (Port, error) {
	if h.closed.Load() {
		return 0, fmt.Errorf("evtchn: bind_unbound_port %v: %w", dom, hyp.ErrClosed)
	}
	a := &xenabi.IoctlEvtchnBindUnboundPort{RemoteDomain: uint32(dom)}
	p, err := ioctlBindUnboundPort(h.f, a)
	if err != nil {
		return 0, fmt.Errorf("evtchn: bind_unbound_port %v: %w", dom, err)
	}
	return Port(p), nil
}

// Unbind closes local port p.
func (h *Handle) Unbind(p Port) error {
	if h.closed.Load() {
		return fmt.Errorf("evtchn: unbind port %d: %w", p, hyp.ErrClosed)
	}
	if err := ioctlUnbind(h.f, &xenabi.IoctlEvtchnUnbind{Port: uint32(p)}); err != nil {
		return fmt.Errorf("evtchn: unbind port %d: %w", p, err)
	}
	return nil
}

// Notify signals the remote end of local port p. It allocates nothing on
// success.
func (h *Handle) Notify(p Port) error {
	if h.closed.Load() {
		return errNotifyClosed
	}
	s := h.acquire()
	s.notify.Port = uint32(p)
	err := ioctlNotify(h.f, s.notify)
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("evtchn: notify port %d: %w", p, err)
	}
	return nil
}

// Unmask re-enables delivery on local port p after it fired. It allocates
// nothing on success.
func (h *Handle) Unmask(p Port) error {
	if h.closed.Load() {
		return errUnmaskClosed
	}
	s := h.acquire()
	putPort(s.buf, p)
	n, err := h.f.Write(s.buf)
	s.mu.Unlock()
	switch {
	case err != nil:
		return fmt.Errorf("evtchn: unmask port %d: %w", p, err)
	case n != portSize:
		return fmt.Errorf("evtchn: unmask port %d: short write of %d bytes", p, n)
	}
	return nil
}

var (
	errNotifyClosed = fmt.Errorf("evtchn: notify: %w", hyp.ErrClosed)
	errUnmaskClosed = fmt.Errorf("evtchn: unmask: %w", hyp.ErrClosed)
)

// ErrShortRead is wrapped by Pending when the device returned a partial
// port.
var ErrShortRead = errors.New("evtchn: short read")

// Pending reads pending ports into buf without blocking and returns how
// many it read: 0, nil when none is pending. Each returned port stays
// masked until Unmask.
func (h *Handle) Pending(buf []Port) (int, error) {
	if h.closed.Load() {
		return 0, fmt.Errorf("evtchn: pending: %w", hyp.ErrClosed)
	}
	if len(buf) == 0 {
		return 0, nil
	}
	n, err := h.f.Read(portBytes(buf))
	switch {
	case errors.Is(err, unix.EAGAIN):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("evtchn: pending: %w", err)
	case n < 0 || n > len(buf)*portSize:
		return 0, fmt.Errorf("evtchn: pending: read returned %d bytes for %d", n, len(buf)*portSize)
	case n%portSize != 0:
		return 0, fmt.Errorf("evtchn: pending: %w of %d bytes", ErrShortRead, n)
	}
	return n / portSize, nil
}

// Reset empties the handle's ring of pending ports and clears its overflow
// flag (IOCTL_EVTCHN_RESET; drivers/xen/evtchn.c). Bound ports stay bound.
func (h *Handle) Reset() error {
	if h.closed.Load() {
		return fmt.Errorf("evtchn: reset: %w", hyp.ErrClosed)
	}
	if err := ioctlReset(h.f); err != nil {
		return fmt.Errorf("evtchn: reset: %w", err)
	}
	return nil
}

// RestrictDomain restricts the handle to binding ports of dom
// (IOCTL_EVTCHN_RESTRICT_DOMID). It cannot be undone.
func (h *Handle) RestrictDomain(dom hyp.DomID) error {
	if h.closed.Load() {
		return fmt.Errorf("evtchn: restrict %v: %w", dom, hyp.ErrClosed)
	}
	if err := ioctlRestrict(h.f, &xenabi.IoctlEvtchnRestrictDomid{Domid: uint16(dom)}); err != nil {
		return fmt.Errorf("evtchn: restrict %v: %w", dom, err)
	}
	return nil
}

// putPort stores p in b in the device's (native, little-endian)
// byte order.
func putPort(b []byte, p Port) {
	b[0] = byte(p)
	b[1] = byte(p >> 8)
	b[2] = byte(p >> 16)
	b[3] = byte(p >> 24)
}
