package memory

import "errors"

// GPA is a guest-physical address.
type GPA uint64

// PageSize is the size of a guest page frame.
const PageSize = 4096

// ErrUnmapped is returned (wrapped) for accesses to guest memory that is not
// populated, not mappable, or outside the guest.
var ErrUnmapped = errors.New("memory: guest address not mapped")

// Accessor reads and writes guest-physical memory. An access may span pages
// and mappings. A failed access returns an error wrapping ErrUnmapped; the
// bytes before the failing page may already have been transferred.
type Accessor interface {
	Read(gpa GPA, p []byte) error
	Write(gpa GPA, p []byte) error
}
