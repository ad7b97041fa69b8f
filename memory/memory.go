// Package memory is godm's guest-memory vocabulary: guest-physical
// addresses, the consumer-side Accessor interface devices use for DMA, and
// (in later files) the map cache over foreign mappings.
//
// Guest memory is shared with a running guest: any byte may change under
// the reader. Accessors copy; they never hand out pointers into guest
// memory except through explicitly referenced mappings.
package memory

import "errors"

// GPA is a guest-physical address.
type GPA = uint64

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
