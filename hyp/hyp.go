package hyp

import (
	"errors"
	"strconv"
)

// DomID is a Xen domain id.
type DomID uint16

// String implements fmt.Stringer.
func (d DomID) String() string { return "dom" + strconv.Itoa(int(d)) }

// ErrNotSupported is wrapped by errors for features the running kernel or
// hypervisor does not offer (e.g. privcmd irqfd on older kernels), so that
// callers can fall back and tests can skip with errors.Is.
var ErrNotSupported = errors.New("not supported by this kernel or hypervisor")

// ErrClosed is returned for operations on a closed handle.
var ErrClosed = errors.New("handle closed")
