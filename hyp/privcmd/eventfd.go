package privcmd

import (
	"errors"
	"fmt"

	"godm/hyp"

	"golang.org/x/sys/unix"
)

// IRQFD binds an eventfd to a DM op: whenever the eventfd is signalled,
// the kernel issues DMOp (a struct xen_dm_op, typically set_irq_level or
// set_isa_irq_level) on Dom. Linux >= 6.7 (IOCTL_PRIVCMD_IRQFD).
type IRQFD struct {
	Dom  hyp.DomID
	Fd   int    // eventfd
	DMOp []byte // struct xen_dm_op; the kernel copies it at assignment
}

// IOEventFD makes the kernel complete guest writes of VQ to the
// QueueNotify register of the virtio-mmio device at Addr itself, signalling
// EventFd, instead of passing them to the device model. Linux >= 6.7
// (IOCTL_PRIVCMD_IOEVENTFD).
type IOEventFD struct {
	Dom hyp.DomID
	// IOReqPage is the ioreq server's shared ioreq page, mapped through
	// this handle (a resource mapping).
	IOReqPage []byte
	// Ports are the local event-channel ports bound to each vCPU's ioreq
	// channel, indexed by vCPU.
	Ports   []uint32
	Addr    uint64
	AddrLen uint32 // 1, 2, 4 or 8
	EventFd int
	VQ      uint32
}

// AssignIRQFD registers c with the kernel.
func (h *Handle) AssignIRQFD(c IRQFD) error { return h.irqfd(c, false) }

// DeassignIRQFD removes the binding of c.Fd.
func (h *Handle) DeassignIRQFD(c IRQFD) error { return h.irqfd(c, true) }

func (h *Handle) irqfd(c IRQFD, deassign bool) error {
	what := "assign"
	if deassign {
		what = "deassign"
	}
	if c.Fd < 0 || c.Fd > 1<<31-1 || (!deassign && (len(c.DMOp) == 0 || len(c.DMOp) > PageSize)) {
		return fmt.Errorf("privcmd: irqfd %s %v fd %d (%d-byte dm op): %w", what, c.Dom, c.Fd, len(c.DMOp), unix.EINVAL)
	}
	if h.closed.Load() {
		return fmt.Errorf("privcmd: irqfd %s %v: %w", what, c.Dom, hyp.ErrClosed)
	}
	if err := ioctlIRQFD(h.f, c, deassign); err != nil {
		return fmt.Errorf("privcmd: irqfd %s %v fd %d: %w", what, c.Dom, c.Fd, eventfdNotSupported(err))
	}
	return nil
}

// AssignIOEventFD registers c with the kernel.
func (h *Handle) AssignIOEventFD(c IOEventFD) error { return h.ioeventfd(c, false) }

// DeassignIOEventFD removes the registration c.
func (h *Handle) DeassignIOEventFD(c IOEventFD) error { return h.ioeventfd(c, true) }

func (h *Handle) ioeventfd(c IOEventFD, deassign bool) error {
	what := "assign"
	if deassign {
		what = "deassign"
	}
	switch {
	case c.EventFd < 0 || c.EventFd > 1<<31-1,
		len(c.IOReqPage) == 0,
		len(c.Ports) == 0 || len(c.Ports) > 4096, // the kernel's limit
		c.AddrLen != 1 && c.AddrLen != 2 && c.AddrLen != 4 && c.AddrLen != 8,
		c.Addr+uint64(c.AddrLen) < c.Addr:
		return fmt.Errorf("privcmd: ioeventfd %s %v addr %#x/%d fd %d vcpus %d: %w",
			what, c.Dom, c.Addr, c.AddrLen, c.EventFd, len(c.Ports), unix.EINVAL)
	}
	if h.closed.Load() {
		return fmt.Errorf("privcmd: ioeventfd %s %v: %w", what, c.Dom, hyp.ErrClosed)
	}
	if err := ioctlIOEventFD(h.f, c, deassign); err != nil {
		return fmt.Errorf("privcmd: ioeventfd %s %v addr %#x: %w", what, c.Dom, c.Addr, eventfdNotSupported(err))
	}
	return nil
}

// eventfdNotSupported adds hyp.ErrNotSupported to the answers of kernels
// without irqfd/ioeventfd: ENOTTY (unknown request), EOPNOTSUPP (built
// without CONFIG_XEN_PRIVCMD_EVENTFD) and EINVAL (arguments were checked
// above, so EINVAL most likely means the request is unknown).
func eventfdNotSupported(err error) error {
	if errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("%w (%w)", hyp.ErrNotSupported, err)
	}
	return notSupported(err)
}
