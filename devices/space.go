package devices

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// Registration errors. They are returned wrapped with the space and range.
var (
	// ErrOverlap is returned when a range overlaps a registered one.
	ErrOverlap = errors.New("devices: range overlaps a registered range")
	// ErrZeroSize is returned for a range of size zero.
	ErrZeroSize = errors.New("devices: range has zero size")
	// ErrOverflow is returned when base+size-1 wraps past the end of the
	// 64-bit address space.
	ErrOverflow = errors.New("devices: range wraps the address space")
	// ErrNotFound is returned by Unregister and Move when no range starts
	// at the given base (or no device is registered at an SBDF).
	ErrNotFound = errors.New("devices: no range registered there")
	// ErrNilHandler is returned when registering a nil Handler.
	ErrNilHandler = errors.New("devices: nil handler")
	// ErrListener wraps the error returned by a Listener that refused a
	// range; the registration did not happen.
	ErrListener = errors.New("devices: listener refused range")
)

// Listener is told about every range registered in a Space. The ioreq
// server implements it to mirror ranges into Xen
// (XEN_DMOP_map_io_range_to_ioreq_server).
//
// Listener methods are called with the space's writer mutex held: they
// must not call Register, Unregister, Move or SetListener on the same
// space (lookups are fine). They are serialised per space, so the listener
// sees ranges in the order they take effect.
//
// A Move to a place overlapping the old one is reported piecewise, so that
// the shared part is claimed throughout: RangeAdded for the part of the new
// range outside the old one (before publishing), RangeRemoved for the part
// of the old range outside the new one (after). Added and removed pieces
// are therefore not always whole registered ranges; a listener mirroring
// them into something that merges adjacent ranges (Xen's rangesets) sees
// exactly the registered layout.
type Listener interface {
	// RangeAdded is called before the table holding the new range is
	// published. If it returns an error the registration fails and
	// nothing changes.
	RangeAdded(s *Space, base, size uint64) error
	// RangeRemoved is called after the table without the range has been
	// published (the old table is retired: new lookups no longer see it).
	RangeRemoved(s *Space, base, size uint64)
}

// Range is one registered range, as reported by Space.Ranges.
type Range struct {
	// Base is the first address of the range.
	Base uint64
	// Size is the length of the range in bytes (ports for port I/O).
	Size uint64
	// Handler is the device registered for the range.
	Handler Handler
}

// Stats are a space's counters. Reading them does not allocate.
type Stats struct {
	// ReadMisses counts reads that matched no range, did not fit in one
	// range, or had an invalid size.
	ReadMisses uint64
	// WriteMisses counts dropped writes, likewise.
	WriteMisses uint64
}

// entry is one range of a table; last is inclusive so that a range may end
// at the top of the address space.
type entry struct {
	base, last uint64
	h          Handler
}

// table is an immutable snapshot of a space's ranges, sorted by base.
type table struct {
	entries []entry
	// direct, when non-nil, maps every address below directLimit to
	// 1+index of the entry covering it (0: none), in pages of 256
	// addresses (nil: no range there). Accesses that end at or above
	// directLimit use the binary search. It exists when some range starts
	// below directLimit (the port I/O space).
	//
	// Measured on the PC port layout (24 ranges), minimum of 6 runs on a
	// loaded 2-core host:
	//	go test -run XXX -bench 'BenchmarkSpace$|Rebuild' ./devices
	// read or write through the index: 3.9-5.3 ns (a flat []uint16 of 64K
	// entries: 4.1-5.2 ns); binary search alone: 7.2-9.2 ns. A table
	// rebuild (Move) costs 4 us and 8.6 KB with this two-level index
	// against 8-16 us and 132 KB with the flat one, so the index is kept
	// in its two-level form.
	direct *[directLimit >> 8]*[256]uint16
}

// directLimit is the size of the direct index: the port I/O space.
const directLimit = 1 << 16

// validSize reports whether size is 1, 2, 4 or 8.
func validSize(size uint8) bool { return size-1 < 8 && size&(size-1) == 0 }

// find returns the entry that holds the whole access [addr, addr+size), or
// nil. It never allocates.
func (t *table) find(addr uint64, size uint8) *entry {
	if !validSize(size) {
		return nil
	}
	last := addr + uint64(size) - 1
	if last < addr {
		return nil
	}
	if last < directLimit && t.direct != nil {
		pa, pl := t.direct[addr>>8], t.direct[last>>8]
		if pa == nil || pl == nil {
			return nil
		}
		i := pa[addr&0xff]
		if i == 0 || pl[last&0xff] != i {
			return nil
		}
		return &t.entries[i-1]
	}
	e := t.floor(addr)
	if e == nil || last > e.last {
		return nil
	}
	return e
}

// floor returns the entry with the greatest base <= addr, or nil.
func (t *table) floor(addr uint64) *entry {
	lo, hi := 0, len(t.entries)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if t.entries[m].base <= addr {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 {
		return nil
	}
	return &t.entries[lo-1]
}

// index returns the index of the entry starting exactly at base, or -1.
func (t *table) index(base uint64) int {
	i, ok := slices.BinarySearchFunc(t.entries, base, func(e entry, b uint64) int {
		switch {
		case e.base < b:
			return -1
		case e.base > b:
			return 1
		}
		return 0
	})
	if !ok {
		return -1
	}
	return i
}

// overlap returns an entry, other than the one at index skip, that
// intersects [base, last], or nil.
func (t *table) overlap(base, last uint64, skip int) *entry {
	// Entries are disjoint and sorted, so only the entry with the greatest
	// base <= last, and (if it is skipped) its predecessor, can intersect.
	lo, hi := 0, len(t.entries)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if t.entries[m].base <= last {
			lo = m + 1
		} else {
			hi = m
		}
	}
	for i := lo - 1; i >= 0 && i >= lo-2; i-- {
		if i == skip {
			continue
		}
		if e := &t.entries[i]; e.last >= base {
			return e
		}
		return nil
	}
	return nil
}

// newTable builds a table from entries (taking ownership) and sorts it.
func newTable(entries []entry, direct bool) *table {
	slices.SortFunc(entries, func(a, b entry) int {
		switch {
		case a.base < b.base:
			return -1
		case a.base > b.base:
			return 1
		}
		return 0
	})
	t := &table{entries: entries}
	if direct && len(entries) > 0 && len(entries) < 1<<16 && entries[0].base < directLimit {
		t.direct = new([directLimit >> 8]*[256]uint16)
		for i, e := range entries {
			for a := e.base; a <= e.last && a < directLimit; a++ {
				p := t.direct[a>>8]
				if p == nil {
					p = new([256]uint16)
					t.direct[a>>8] = p
				}
				p[a&0xff] = uint16(i + 1)
			}
		}
	}
	return t
}

// Space is a port I/O or MMIO address space: a set of disjoint ranges,
// each routed to a Handler. The zero value is not usable; use NewSpace.
type Space struct {
	name string
	// direct enables the port-I/O direct index (see table.direct).
	direct bool

	table atomic.Pointer[table]

	// The miss counters are written by guests hammering unassigned
	// addresses; keep them off the cache line of the table pointer that
	// every hit reads.
	_           [64]byte
	readMisses  atomic.Uint64
	writeMisses atomic.Uint64

	// mu serialises writers (Register, Unregister, Move, SetListener) and
	// the listener calls. Lookups never take it.
	mu       sync.Mutex
	listener Listener // guarded by mu
}

// NewSpace returns an empty space. name appears in errors and String.
func NewSpace(name string) *Space {
	s := &Space{name: name, direct: true}
	s.table.Store(&table{})
	return s
}

// String returns the space's name.
func (s *Space) String() string { return s.name }

// SetListener sets (or, with nil, clears) the listener told about later
// range changes. Ranges already registered are not replayed; use Attach to
// set a listener and replay them atomically.
func (s *Space) SetListener(l Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listener = l
}

// Attach sets l as the listener and calls l.RangeAdded for every range
// already registered, in ascending order, atomically with respect to
// registrations (no range is missed or reported twice). If a RangeAdded
// fails, the ranges added so far are removed again (RangeRemoved, in
// reverse order), the listener is left unchanged, and the error is
// returned wrapping ErrListener.
func (s *Space) Attach(l Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.table.Load()
	for i, e := range t.entries {
		if err := l.RangeAdded(s, e.base, e.last-e.base+1); err != nil {
			for j := i - 1; j >= 0; j-- {
				l.RangeRemoved(s, t.entries[j].base, t.entries[j].last-t.entries[j].base+1)
			}
			return fmt.Errorf("devices: %s: attach [%#x-%#x]: %w: %w", s.name, e.base, e.last, ErrListener, err)
		}
	}
	s.listener = l
	return nil
}

// Register routes [base, base+size) to h.
//
// It fails with ErrNilHandler, ErrZeroSize, ErrOverflow (base+size-1 wraps),
// ErrOverlap, or an error wrapping ErrListener and the listener's error.
// On failure nothing changes. Register allocates; it is for the control path.
func (s *Space) Register(base, size uint64, h Handler) error {
	if h == nil {
		return fmt.Errorf("devices: %s: register [%#x+%#x]: %w", s.name, base, size, ErrNilHandler)
	}
	if size == 0 {
		return fmt.Errorf("devices: %s: register [%#x+%#x]: %w", s.name, base, size, ErrZeroSize)
	}
	last := base + size - 1
	if last < base {
		return fmt.Errorf("devices: %s: register [%#x+%#x]: %w", s.name, base, size, ErrOverflow)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.table.Load()
	if e := old.overlap(base, last, -1); e != nil {
		return fmt.Errorf("devices: %s: register [%#x-%#x]: %w [%#x-%#x]", s.name, base, last, ErrOverlap, e.base, e.last)
	}
	entries := make([]entry, len(old.entries), len(old.entries)+1)
	copy(entries, old.entries)
	nt := newTable(append(entries, entry{base: base, last: last, h: h}), s.direct)
	if s.listener != nil {
		if err := s.listener.RangeAdded(s, base, size); err != nil {
			return fmt.Errorf("devices: %s: register [%#x-%#x]: %w: %w", s.name, base, last, ErrListener, err)
		}
	}
	s.table.Store(nt)
	return nil
}

// Unregister removes the range starting at base. It fails with ErrNotFound
// when no range starts there. An access that looked the range up before
// Unregister published the new table may still reach its handler.
func (s *Space) Unregister(base uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.table.Load()
	i := old.index(base)
	if i < 0 {
		return fmt.Errorf("devices: %s: unregister %#x: %w", s.name, base, ErrNotFound)
	}
	e := old.entries[i]
	entries := make([]entry, 0, len(old.entries)-1)
	entries = append(append(entries, old.entries[:i]...), old.entries[i+1:]...)
	s.table.Store(newTable(entries, s.direct))
	if s.listener != nil {
		s.listener.RangeRemoved(s, e.base, e.last-e.base+1)
	}
	return nil
}

// Move relocates the range starting at oldBase to newBase, keeping its size
// and handler (a PCI BAR write). The change is one table swap: every lookup
// finds the device either at the old place or at the new one, never at both
// or neither.
//
// The listener sees RangeAdded(new) before the swap and RangeRemoved(old)
// after it. If the old and new ranges intersect, a listener could not hold
// both at once (Xen's ioreq_server_map_io_range fails with -EEXIST on an
// overlap within one server, xen/common/ioreq.c), so it then
// sees RangeRemoved(old) first and RangeAdded(new) before the swap; if that
// RangeAdded fails, RangeAdded(old) is called to restore the old range and
// Move fails with nothing changed in the space.
func (s *Space) Move(oldBase, newBase uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.table.Load()
	i := old.index(oldBase)
	if i < 0 {
		return fmt.Errorf("devices: %s: move %#x: %w", s.name, oldBase, ErrNotFound)
	}
	e := old.entries[i]
	if newBase == oldBase {
		return nil
	}
	size := e.last - e.base + 1
	newLast := newBase + size - 1
	if newLast < newBase {
		return fmt.Errorf("devices: %s: move [%#x+%#x] to %#x: %w", s.name, oldBase, size, newBase, ErrOverflow)
	}
	if o := old.overlap(newBase, newLast, i); o != nil {
		return fmt.Errorf("devices: %s: move [%#x+%#x] to %#x: %w [%#x-%#x]", s.name, oldBase, size, newBase, ErrOverlap, o.base, o.last)
	}
	entries := slices.Clone(old.entries)
	entries[i].base, entries[i].last = newBase, newLast
	nt := newTable(entries, s.direct)
	intersect := newBase <= e.last && e.base <= newLast
	// The listener sees the move so that the range is claimed in exactly
	// one place at every moment. Disjoint: claim the new range, publish,
	// release the old one. Overlapping: claim only the part of the new
	// range the old one does not cover, publish, release only the part of
	// the old range the new one does not cover. Xen's rangesets merge
	// adjacent claims and split on release (xen/common/rangeset.c), and
	// refuse a claim that overlaps one already held (-EEXIST,
	// xen/common/ioreq.c), which is why the shared part is never claimed
	// twice.
	addBase, addSize, delBase, delSize := newBase, size, e.base, size
	if intersect {
		if newBase < e.base { // moving down: new head, old tail
			addBase, addSize = newBase, e.base-newBase
			delBase, delSize = newLast+1, e.last-newLast
		} else { // moving up: new tail, old head
			addBase, addSize = e.last+1, newLast-e.last
			delBase, delSize = e.base, newBase-e.base
		}
	}
	if l := s.listener; l != nil {
		if err := l.RangeAdded(s, addBase, addSize); err != nil {
			return fmt.Errorf("devices: %s: move [%#x+%#x] to %#x: %w: %w", s.name, oldBase, size, newBase, ErrListener, err)
		}
	}
	s.table.Store(nt)
	if l := s.listener; l != nil {
		l.RangeRemoved(s, delBase, delSize)
	}
	return nil
}

// Ranges returns a snapshot of the registered ranges, sorted by base.
func (s *Space) Ranges() []Range {
	t := s.table.Load()
	r := make([]Range, len(t.entries))
	for i, e := range t.entries {
		r[i] = Range{Base: e.base, Size: e.last - e.base + 1, Handler: e.h}
	}
	return r
}

// Stats returns the space's counters.
func (s *Space) Stats() Stats {
	return Stats{ReadMisses: s.readMisses.Load(), WriteMisses: s.writeMisses.Load()}
}

// Read dispatches a guest read of size bytes at addr. The whole access
// must fall inside one range and size must be 1, 2, 4 or 8; otherwise it
// is a miss: it returns all-ones masked to size and is counted. The
// handler's value is masked to size. Read does not allocate or lock.
func (s *Space) Read(addr uint64, size uint8, vcpu uint32) uint64 {
	if e := s.table.Load().find(addr, size); e != nil {
		return e.h.Read(Access{Addr: addr, Offset: addr - e.base, Size: size, VCPU: vcpu}) & SizeMask(size)
	}
	s.readMisses.Add(1)
	return SizeMask(size)
}

// Write dispatches a guest write of the low size bytes of v at addr. A miss
// (see Read) is dropped and counted. The handler sees v masked to size.
// Write does not allocate or lock.
func (s *Space) Write(addr uint64, size uint8, vcpu uint32, v uint64) {
	if e := s.table.Load().find(addr, size); e != nil {
		e.h.Write(Access{Addr: addr, Offset: addr - e.base, Size: size, VCPU: vcpu}, v&SizeMask(size))
		return
	}
	s.writeMisses.Add(1)
}
