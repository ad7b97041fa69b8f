package privcmd

import (
	"errors"
	"fmt"
	"sync"

	"godm/hyp"
	"godm/hyp/xenabi"

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
		return fmt.Errorf("privcmd: irqfd %s %v fd %d: %w", what, c.Dom, c.Fd,
			h.eventfdErr(&h.irqfdProbe, xenabi.IOCTL_PRIVCMD_IRQFD, "irqfd", err))
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
		return fmt.Errorf("privcmd: ioeventfd %s %v addr %#x: %w", what, c.Dom, c.Addr,
			h.eventfdErr(&h.ioeventfdProbe, xenabi.IOCTL_PRIVCMD_IOEVENTFD, "ioeventfd", err))
	}
	return nil
}

// eventfdProbe remembers, per request, what probeEventFD found: err is
// nil when the kernel offers the request, and otherwise wraps
// hyp.ErrNotSupported (and the probe's errno) or, for an answer no kernel
// is known to give, the plain errno.
type eventfdProbe struct {
	once sync.Once
	err  error
}

// IRQFDSupported reports whether the kernel offers IOCTL_PRIVCMD_IRQFD:
// nil if it does, an error wrapping hyp.ErrNotSupported if it does not. The
// kernel is asked once per Handle (see probeEventFD); later calls return
// the remembered answer.
func (h *Handle) IRQFDSupported() error {
	return h.eventfdSupported(&h.irqfdProbe, xenabi.IOCTL_PRIVCMD_IRQFD, "irqfd")
}

// IOEventFDSupported reports whether the kernel offers
// IOCTL_PRIVCMD_IOEVENTFD, like IRQFDSupported. Linux merged irqfd one
// release before ioeventfd, so the two are probed separately.
func (h *Handle) IOEventFDSupported() error {
	return h.eventfdSupported(&h.ioeventfdProbe, xenabi.IOCTL_PRIVCMD_IOEVENTFD, "ioeventfd")
}

// eventfdSupported runs the probe of req once. The probe is a deassign of
// eventfd -1, which changes nothing in any kernel. In Linux's
// privcmd_ioctl_irqfd and privcmd_ioctl_ioeventfd (drivers/xen/privcmd.c,
// Linux >= 6.6/6.7) the checks come in this order: copy_from_user (EFAULT),
// unknown flags (EINVAL; the probe sets only DEASSIGN), a restricted
// handle's domain (EPERM), then the deassign looks the eventfd up
// (eventfd_ctx_fdget(-1): EBADF). A kernel that offers the request
// therefore answers EBADF, EPERM or (if it skips the lookup) 0. A kernel
// without it answers ENOTTY (privcmd_ioctl's default), EOPNOTSUPP (built
// without CONFIG_XEN_PRIVCMD_EVENTFD) or ENOSYS (other privcmd drivers);
// EINVAL, which an offering kernel cannot give to this probe, is counted
// with them.
func (h *Handle) eventfdSupported(p *eventfdProbe, req uint, what string) error {
	if h.closed.Load() {
		return fmt.Errorf("privcmd: %s probe: %w", what, hyp.ErrClosed)
	}
	p.once.Do(func() {
		err := probeEventFD(h.f, req == xenabi.IOCTL_PRIVCMD_IRQFD)
		switch {
		case err == nil, errors.Is(err, unix.EBADF), errors.Is(err, unix.EPERM):
			p.err = nil
		case errors.Is(err, unix.ENOTTY), errors.Is(err, unix.EOPNOTSUPP),
			errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EINVAL):
			p.err = fmt.Errorf("privcmd: %s: %w (probe: %w)", what, hyp.ErrNotSupported, err)
		default:
			p.err = fmt.Errorf("privcmd: %s probe: %w", what, err)
		}
	})
	return p.err
}

// eventfdErr classifies the error of an irqfd or ioeventfd request. ENOTTY,
// ENOSYS and EOPNOTSUPP only ever mean "unknown request" here, and
// additionally wrap hyp.ErrNotSupported. EINVAL is ambiguous: an offering
// kernel gives it for a bad argument (a DM op it cannot copy, a
// configuration that contradicts an earlier one), so the probe decides.
func (h *Handle) eventfdErr(p *eventfdProbe, req uint, what string, err error) error {
	if errors.Is(err, unix.EINVAL) {
		if perr := h.eventfdSupported(p, req, what); errors.Is(perr, hyp.ErrNotSupported) {
			return fmt.Errorf("%w (%w)", hyp.ErrNotSupported, err)
		}
		return err
	}
	return notSupported(err)
}
