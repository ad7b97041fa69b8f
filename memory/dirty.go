package memory

import (
	"fmt"
	"math/bits"
	"sync/atomic"
)

// DirtyLog records which guest pages the device model wrote: one bit per
// guest page frame, set atomically by every write a device makes to guest
// RAM (MapCache.Write, Region.WriteAt, the Region's atomic stores,
// Region.MarkDirty and the release of a Region whose segments were
// written, Flat.Write), and taken and cleared by Collect. It is the device
// model's half of live migration's log-dirty: Xen tracks the guest's own
// writes in its p2m, but writes through a foreign mapping are invisible to
// it, so a device model reports them with XEN_DMOP_modified_memory
// (QEMU: xen_hvm_modified_memory in hw/xen/xen-hvm-common.c is called from
// every write to guest RAM it makes while log-dirty is on).
//
// The log covers gfns [0, Pages()); it is allocated whole at creation (one
// bit per page: 32 KiB per GiB of guest-physical space), so marking never
// allocates. Writes to pages at or beyond the end cannot be recorded per
// page; they are counted, and Collect reports the count so that a
// migration can fall back to resending everything.
//
// Mark and Collect are safe for concurrent use; a page written while
// Collect runs is reported by this Collect or by the next one, never lost.
type DirtyLog struct {
	words  []atomic.Uint64 // bit g%64 of word g/64: gfn g written since the last Collect
	pages  uint64
	beyond atomic.Uint64 // writes that touched a page at or beyond pages
	off    atomic.Bool   // logging is switched off: Mark records nothing
}

// NewDirtyLog returns an empty log covering guest-physical addresses
// [0, limit), rounded up to whole pages. limit must be positive and at
// most 2^52 (the x86-64 physical address width).
func NewDirtyLog(limit GPA) (*DirtyLog, error) {
	if limit == 0 || limit > 1<<52 {
		return nil, fmt.Errorf("memory: dirty log: limit %#x not in (0, 2^52]", uint64(limit))
	}
	pages := (uint64(limit) + PageSize - 1) / PageSize
	return &DirtyLog{words: make([]atomic.Uint64, (pages+63)/64), pages: pages}, nil
}

// SetEnabled switches logging on or off (a new log is on). While it is
// off Mark records nothing, at the cost of one atomic load; what was
// marked before stays until Collect takes it. A device model switches it
// with log-dirty (QEMU's xen-set-global-dirty-log).
func (l *DirtyLog) SetEnabled(on bool) { l.off.Store(!on) }

// Enabled reports whether Mark records writes.
func (l *DirtyLog) Enabled() bool { return !l.off.Load() }

// Pages returns the number of guest pages the log covers.
func (l *DirtyLog) Pages() uint64 { return l.pages }

// Mark records that [gpa, gpa+n) was written. It does not allocate and
// takes no lock: one atomic load per page already marked, one atomic OR
// per word otherwise. n == 0 marks nothing. A nil log, or one switched
// off, marks nothing.
func (l *DirtyLog) Mark(gpa GPA, n uint64) {
	if l == nil || n == 0 || l.off.Load() {
		return
	}
	first := uint64(gpa) / PageSize
	last := ^uint64(0) / PageSize // the range wraps: beyond any log
	if end := uint64(gpa) + n - 1; end >= uint64(gpa) {
		last = end / PageSize
	}
	if last >= l.pages {
		l.beyond.Add(1)
		if first >= l.pages {
			return
		}
		last = l.pages - 1
	}
	for g := first; g <= last; {
		w := g / 64
		lo := g % 64
		hi := uint64(63)
		if last/64 == w {
			hi = last % 64
		}
		mask := (^uint64(0) >> (63 - hi)) &^ (1<<lo - 1)
		// Already marked (the common case for a ring or a buffer written
		// again): a load, no cache-line write.
		if l.words[w].Load()&mask != mask {
			l.words[w].Or(mask)
		}
		g = (w + 1) * 64
	}
}

// Dirty reports whether gfn is marked. It is meant for tests and
// diagnostics; a migration uses Collect.
func (l *DirtyLog) Dirty(gfn uint64) bool {
	if gfn >= l.pages {
		return false
	}
	return l.words[gfn/64].Load()&(1<<(gfn%64)) != 0
}

// Collect takes the marked pages out of the log, clearing them, and calls
// visit for each run of consecutive dirty pages, in ascending order
// (first gfn, page count: the shape of a XEN_DMOP_modified_memory
// extent). It returns the number of writes since the last Collect that
// touched pages beyond the log, and clears that count. Collect allocates
// nothing itself; visit must not call Collect.
func (l *DirtyLog) Collect(visit func(gfn, n uint64)) (beyond uint64) {
	var runStart, runLen uint64
	for w := range l.words {
		if l.words[w].Load() == 0 {
			continue
		}
		bitsLeft := l.words[w].Swap(0)
		for bitsLeft != 0 {
			b := uint64(bits.TrailingZeros64(bitsLeft))
			ones := uint64(bits.TrailingZeros64(^(bitsLeft >> b)))
			g := uint64(w)*64 + b
			if runLen > 0 && runStart+runLen == g {
				runLen += ones
			} else {
				if runLen > 0 {
					visit(runStart, runLen)
				}
				runStart, runLen = g, ones
			}
			if b+ones == 64 {
				bitsLeft = 0
			} else {
				bitsLeft &^= (1<<ones - 1) << b
			}
		}
	}
	if runLen > 0 {
		visit(runStart, runLen)
	}
	return l.beyond.Swap(0)
}
