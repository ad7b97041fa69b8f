package privcmd

import (
	"godm/hyp"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// DMOpSize is sizeof(struct xen_dm_op): the op number, padding and the
// 24-byte argument union (xen/include/public/hvm/dm_op.h).
const DMOpSize = 32

// DMCall is a preallocated, reusable argument block for one DM op: the
// struct xen_dm_op buffer, an optional second buffer, and the ioctl
// structures pointing at them. Issuing a DMCall allocates nothing, which
// is what the interrupt-injection fast path of package hyp/dm needs.
//
// A DMCall must be used by one goroutine at a time. The zero value is not
// usable; get one from NewDMCall.
type DMCall struct {
	// Op is the struct xen_dm_op, encoded by the caller (little endian):
	// op at 0, pad at 4, the union at 8. Xen's OUT fields land here.
	Op [DMOpSize]byte

	ubufs    [2]xenabi.PrivcmdDMOpBuf
	uop      xenabi.PrivcmdDMOp
	extra    []byte // second buffer; kept here so it stays reachable
	hasExtra bool
}

// NewDMCall returns a new argument block.
func NewDMCall() *DMCall {
	c := new(DMCall)
	c.init()
	return c
}

// SetExtra sets the op's second buffer (a dirty bitmap or an extent
// array), or removes it with nil. A non-nil empty b is still passed, as a
// second buffer of size 0 (Xen requires two buffers for some ops even when
// the second is empty). The buffer is handed to the kernel in place.
func (c *DMCall) SetExtra(b []byte) { c.extra, c.hasExtra = b, b != nil }

// Extra returns the second buffer set by SetExtra.
func (c *DMCall) Extra() []byte { return c.extra }

// Reset zeroes Op and removes the second buffer.
func (c *DMCall) Reset() {
	c.Op = [DMOpSize]byte{}
	c.extra, c.hasExtra = nil, false
}

// Do issues c on dom. It allocates nothing on success. Its errors are not
// wrapped with an operation name (the caller knows the op): they are the
// kernel's unix.Errno, or wrap hyp.ErrClosed or hyp.ErrNotSupported.
func (h *Handle) Do(dom hyp.DomID, c *DMCall) error {
	if c == nil {
		return unix.EINVAL
	}
	if err := h.dmOpReady(); err != nil {
		return err
	}
	_, err := ioctlDMCall(h.f, dom, c)
	return err
}
