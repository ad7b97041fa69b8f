package privcmd

import (
	"errors"
	"fmt"
	"sync/atomic"

	"godm/hyp"
	"godm/hyp/kernel"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// PageSize is the size of a Xen page and of every mapping granule here.
const PageSize = xenabi.XEN_PAGE_SIZE

// MaxDMOpBufs is the most buffers one DM op may carry (the ioctl's count
// is 16 bits; the kernel's own limit, privcmd_dm_op_max_num, is lower).
const MaxDMOpBufs = 0xffff

// Handle is an open /dev/xen/privcmd.
type Handle struct {
	f      kernel.File
	bufs   *BufferPool
	closed atomic.Bool
	noDMOp error // non-nil when the DM_OP probe at Open said the kernel lacks DM_OP

	irqfdProbe, ioeventfdProbe eventfdProbe // run on first need (eventfd.go)
}

// Open opens /dev/xen/privcmd through k and, like libxendevicemodel,
// probes IOCTL_PRIVCMD_DM_OP once with dom=DOMID_INVALID and no buffers
// (tools/libs/devicemodel/linux.c). A kernel that does not know DM_OP
// still gives a usable Handle; its DM ops then fail with
// hyp.ErrNotSupported.
func Open(k kernel.Kernel) (*Handle, error) {
	f, err := k.Open(kernel.Privcmd, 0)
	if err != nil {
		return nil, fmt.Errorf("privcmd: open: %w", err)
	}
	h := &Handle{f: f, bufs: newBufferPool(k)}
	if err := probeDMOp(f); err != nil && isUnknownRequest(err) {
		h.noDMOp = fmt.Errorf("IOCTL_PRIVCMD_DM_OP: %w (probe: %w)", hyp.ErrNotSupported, err)
	}
	return h, nil
}

// File returns the underlying device file (for mmap of foreign and
// resource mappings). It stays owned by the Handle.
func (h *Handle) File() kernel.File { return h.f }

// Closed reports whether Close was called.
func (h *Handle) Closed() bool { return h.closed.Load() }

// Buffers returns the handle's hypercall-buffer pool.
func (h *Handle) Buffers() *BufferPool { return h.bufs }

// Close closes the device file and the hypercall-buffer pool. It is
// idempotent.
func (h *Handle) Close() error {
	if h.closed.Swap(true) {
		return nil
	}
	errB := h.bufs.close()
	errF := h.f.Close()
	if errF != nil {
		return fmt.Errorf("privcmd: close: %w", errF)
	}
	if errB != nil {
		return fmt.Errorf("privcmd: close: %w", errB)
	}
	return nil
}

// Hypercall issues hypercall op with args through IOCTL_PRIVCMD_HYPERCALL
// and returns the hypercall's (non-negative) result. Arguments that are
// pointers must point into buffers from Buffers(): Xen reads them from
// there, and ordinary Go memory may be paged out or not be contiguous.
func (h *Handle) Hypercall(op uint64, args [5]uint64) (uintptr, error) {
	if h.closed.Load() {
		return 0, fmt.Errorf("privcmd: hypercall %d: %w", op, hyp.ErrClosed)
	}
	hc := &xenabi.PrivcmdHypercall{Op: op, Arg: args}
	r, err := ioctlHypercall(h.f, hc)
	if err != nil {
		return 0, fmt.Errorf("privcmd: hypercall %d: %w", op, err)
	}
	return r, nil
}

// Restrict restricts the handle to DM ops and mappings of dom
// (IOCTL_PRIVCMD_RESTRICT). It cannot be undone.
func (h *Handle) Restrict(dom hyp.DomID) error {
	if h.closed.Load() {
		return fmt.Errorf("privcmd: restrict %v: %w", dom, hyp.ErrClosed)
	}
	d := new(uint16)
	*d = uint16(dom)
	if _, err := ioctlRestrict(h.f, d); err != nil {
		return fmt.Errorf("privcmd: restrict %v: %w", dom, notSupported(err))
	}
	return nil
}

// DMOp issues one device-model op on dom (IOCTL_PRIVCMD_DM_OP). bufs[0]
// is a struct xen_dm_op; further buffers are op-specific (bitmaps,
// extents). Xen writes OUT fields back into the buffers. The buffers are
// handed to the kernel in place; they must not be used concurrently.
func (h *Handle) DMOp(dom hyp.DomID, bufs ...[]byte) error {
	if len(bufs) == 0 || len(bufs) > MaxDMOpBufs {
		return fmt.Errorf("privcmd: dm_op %v: %d buffers: %w", dom, len(bufs), unix.EINVAL)
	}
	if err := h.dmOpReady(); err != nil {
		return fmt.Errorf("privcmd: dm_op %v: %w", dom, err)
	}
	if _, err := ioctlDMOp(h.f, dom, bufs); err != nil {
		return fmt.Errorf("privcmd: dm_op %v: %w", dom, err)
	}
	return nil
}

// dmOpReady reports why DM ops cannot be issued, or nil.
func (h *Handle) dmOpReady() error {
	if h.closed.Load() {
		return hyp.ErrClosed
	}
	return h.noDMOp
}

// isUnknownRequest reports whether err is how a kernel answers an ioctl
// request it does not implement.
func isUnknownRequest(err error) bool {
	return errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) ||
		errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP)
}

// notSupported adds hyp.ErrNotSupported to err when err says the request is
// unknown to the kernel; err itself stays errors.Is-able.
func notSupported(err error) error {
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("%w (%w)", hyp.ErrNotSupported, err)
	}
	return err
}
