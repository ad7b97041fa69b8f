package memory

import (
	"errors"
	"fmt"
)

// Ring indices: atomic little-endian loads and stores in a pinned Region.
//
// Devices with descriptor rings share indices with the guest's driver,
// which runs on other CPUs at the same time, and the specifications order
// the index updates against the ring entries they publish. For virtio's
// split virtqueues (virtio 1.2 §2.7):
//
//   - the driver writes descriptors and avail ring entries, then a memory
//     barrier, then increments avail->idx (§2.7.13.3 "The driver MUST
//     perform a suitable memory barrier before the idx update"), so the
//     device's load of avail->idx must be an acquire: the entries it then
//     reads are at least as new as the index;
//   - the device writes the buffers and used ring entries (id, len) before
//     it updates used->idx (§2.7.8 "The device MUST set len prior to
//     updating the used idx"; "MUST write at least len bytes ... prior to
//     updating the used idx"), so its store of used->idx must be a
//     release: every earlier write is visible before the new index.
//
// AHCI (command list slots published through PxCI) and NVMe (submission
// queue tail doorbells, completion queue phase tags) have the same shape.
//
// Every Load here is at least an acquire and every Store at least a
// release: they are sync/atomic operations, which the Go memory model
// makes sequentially consistent ("all the atomic operations executed in a
// program behave as though executed in some sequentially consistent
// order"), and which on amd64 compile to a plain MOV for loads (ordered
// under x86-TSO) and XCHG for stores (a full barrier). That is stronger
// than the specifications need and enough for a guest CPU using its own
// barriers (Linux virtio_wmb/virtio_rmb), so the rings need no separate
// fence. The copies (ReadAt, WriteAt, MapCache.Read/Write) are plain
// memory copies: order them with these atomics, as the specifications do.
//
// 16-bit values (virtio's idx, flags and event fields) have no sync/atomic
// type; they are loaded through the aligned 32-bit word that contains them
// and stored with a compare-and-swap on that word, which retries if the
// guest changed the other half meanwhile, so no guest write is lost. The
// containing word lies in the same guest page as the value, which the pin
// holds mapped.
//
// Offsets come from guest-controlled values: an index access outside the
// region, misaligned for its size (the guest-physical address must be a
// multiple of the size, as the specifications require of ring fields), or
// on a released region fails with an error wrapping ErrUnmapped and
// touches nothing. None of these methods allocates.

// ErrMisaligned is wrapped by ring index accesses at a guest-physical
// address that is not a multiple of the access size.
var ErrMisaligned = errors.New("memory: ring index not naturally aligned")

var (
	errRingRange    = fmt.Errorf("memory: region: ring index outside the region: %w", ErrUnmapped)
	errRingAlign    = fmt.Errorf("memory: region: %w: %w", ErrMisaligned, ErrUnmapped)
	errRingReleased = fmt.Errorf("memory: region: released: %w", ErrUnmapped)
	// errRingContended: the guest kept changing the other half of a
	// 16-bit value's word through every attempt (see Store16).
	errRingContended = fmt.Errorf("memory: region: ring word changed by the guest through %d store attempts: %w", ringCASAttempts, ErrUnmapped)
)

// ringCASAttempts bounds Store16's compare-and-swap loop, so that a guest
// rewriting the neighbouring half-word without pause cannot hold a device
// goroutine: a lost race needs a guest write between the load and the CAS,
// a few nanoseconds, so an honest guest never comes near the bound.
const ringCASAttempts = 1 << 12

// word returns the bucket memory of the region's bytes [off, off+size)
// rounded out to the aligned word of wsize bytes containing them (wsize >=
// size, both powers of two), and the offset of the value in that word.
func (r *Region) word(off int, size, wsize uint64) ([]byte, uint64, error) {
	if r.released.Load() {
		return nil, 0, errRingReleased
	}
	if off < 0 || uint64(off) > uint64(r.n) || uint64(r.n)-uint64(off) < size {
		return nil, 0, errRingRange
	}
	if (uint64(r.gpa)+uint64(off))%size != 0 {
		return nil, 0, errRingAlign
	}
	shift := r.c.shift
	pos := r.first + uint64(off)
	b := r.buckets[pos>>shift]
	boff := pos & (r.c.size - 1)
	w := boff &^ (wsize - 1)
	if w+wsize > uint64(len(b.mem)) {
		return nil, 0, errRingRange
	}
	m := b.mem[w : w+wsize : w+wsize]
	if !aligned(m, uintptr(wsize)) {
		return nil, 0, errRingAlign
	}
	return m, boff - w, nil
}

// Load16 atomically loads the little-endian 16-bit value at offset off of
// the region (an acquire; see above).
func (r *Region) Load16(off int) (uint16, error) {
	m, sh, err := r.word(off, 2, 4)
	if err != nil {
		return 0, err
	}
	return uint16(atomicLoad32(m) >> (8 * sh)), nil
}

// Store16 atomically stores v little-endian at offset off of the region
// (a release; see above) and marks it dirty. If the guest changes the
// other half of the containing word through every one of a bounded number
// of attempts, Store16 gives up with an error wrapping ErrUnmapped and
// stores nothing.
func (r *Region) Store16(off int, v uint16) error {
	m, sh, err := r.word(off, 2, 4)
	if err != nil {
		return err
	}
	mask := uint32(0xffff) << (8 * sh)
	for range ringCASAttempts {
		old := atomicLoad32(m)
		if atomicCAS32(m, old, old&^mask|uint32(v)<<(8*sh)) {
			r.c.dirty.Mark(r.gpa+GPA(off), 2)
			return nil
		}
	}
	return errRingContended
}

// Load32 atomically loads the little-endian 32-bit value at offset off.
func (r *Region) Load32(off int) (uint32, error) {
	m, _, err := r.word(off, 4, 4)
	if err != nil {
		return 0, err
	}
	return atomicLoad32(m), nil
}

// Store32 atomically stores v little-endian at offset off and marks it
// dirty.
func (r *Region) Store32(off int, v uint32) error {
	m, _, err := r.word(off, 4, 4)
	if err != nil {
		return err
	}
	atomicStore32(m, v)
	r.c.dirty.Mark(r.gpa+GPA(off), 4)
	return nil
}

// Load64 atomically loads the little-endian 64-bit value at offset off.
func (r *Region) Load64(off int) (uint64, error) {
	m, _, err := r.word(off, 8, 8)
	if err != nil {
		return 0, err
	}
	return atomicLoad64(m), nil
}

// Store64 atomically stores v little-endian at offset off and marks it
// dirty.
func (r *Region) Store64(off int, v uint64) error {
	m, _, err := r.word(off, 8, 8)
	if err != nil {
		return err
	}
	atomicStore64(m, v)
	r.c.dirty.Mark(r.gpa+GPA(off), 8)
	return nil
}
