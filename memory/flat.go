package memory

import (
	"fmt"
	"sync"
)

// Flat is a guest memory of one contiguous region at Base, backed by a Go
// slice. It is the fake used by tests of devices and the ioreq runtime.
type Flat struct {
	// Base is the guest-physical address of Mem[0].
	Base GPA
	// Dirty, if set, records every Write (see DirtyLog).
	Dirty *DirtyLog

	mu  sync.RWMutex
	Mem []byte // guarded by mu once shared
}

// NewFlat returns a Flat of size bytes at base.
func NewFlat(base GPA, size int) *Flat { return &Flat{Base: base, Mem: make([]byte, size)} }

func (f *Flat) span(gpa GPA, n int) (int, error) {
	if gpa < f.Base || uint64(gpa-f.Base) > uint64(len(f.Mem)) || uint64(len(f.Mem))-uint64(gpa-f.Base) < uint64(n) {
		return 0, fmt.Errorf("flat [%#x+%d]: %w", gpa, n, ErrUnmapped)
	}
	return int(gpa - f.Base), nil
}

// Read implements Accessor.
func (f *Flat) Read(gpa GPA, p []byte) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	off, err := f.span(gpa, len(p))
	if err != nil {
		return err
	}
	copy(p, f.Mem[off:])
	return nil
}

// Write implements Accessor.
func (f *Flat) Write(gpa GPA, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	off, err := f.span(gpa, len(p))
	if err != nil {
		return err
	}
	copy(f.Mem[off:], p)
	f.Dirty.Mark(gpa, uint64(len(p)))
	return nil
}
