package foreign

import (
	"errors"
	"fmt"
	"sync"

	"godm/hyp"
	"godm/hyp/kernel"
	"godm/hyp/privcmd"

	"golang.org/x/sys/unix"
)

// PageSize is the granule of every mapping.
const PageSize = privcmd.PageSize

// MaxPages is the most pages one Mapping may hold.
const MaxPages = privcmd.MaxBatch

// ErrPageIndex is returned by PageErr for an index outside the mapping.
var ErrPageIndex = errors.New("foreign: page index out of range")

// Mapping is a range of this process's address space showing foreign
// frames.
type Mapping struct {
	f     kernel.File
	pages int
	errs  []int32 // per-page errno (negated), nil for resource mappings

	mu  sync.Mutex
	mem []byte // guarded by mu; nil once closed
}

// Map maps the guest frames gfns of dom, in order, read-only or writable.
// Frames that cannot be mapped (holes) do not fail the call: PageErr
// reports them, and touching them faults. An error means nothing was
// mapped.
func Map(p *privcmd.Handle, dom hyp.DomID, writable bool, gfns []uint64) (*Mapping, error) {
	n := len(gfns)
	if n == 0 || n > MaxPages {
		return nil, fmt.Errorf("foreign: map %v: %d pages (1..%d): %w", dom, n, MaxPages, unix.EINVAL)
	}
	if p.Closed() {
		return nil, fmt.Errorf("foreign: map %v: %w", dom, hyp.ErrClosed)
	}
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	f := p.File()
	mem, err := f.Mmap(0, n*PageSize, prot)
	if err != nil {
		return nil, fmt.Errorf("foreign: map %v: %d pages: %w", dom, n, err)
	}
	m := &Mapping{f: f, pages: n, mem: mem, errs: make([]int32, n)}
	if err := p.MmapBatch(dom, mem, gfns, m.errs); err != nil {
		_ = f.Munmap(mem)
		return nil, fmt.Errorf("foreign: map %v: %w", dom, err)
	}
	return m, nil
}

// MapResource maps num frames, from frame idx, of resource typ/id of dom
// (xenabi.XENMEM_resource_*; e.g. an ioreq server's pages) read-write. A
// kernel or Xen without resource mapping gives an error wrapping
// hyp.ErrNotSupported.
func MapResource(p *privcmd.Handle, dom hyp.DomID, typ, id, idx uint32, num int) (*Mapping, error) {
	if num <= 0 || num > MaxPages {
		return nil, fmt.Errorf("foreign: map resource %v type %d id %d: %d frames (1..%d): %w",
			dom, typ, id, num, MaxPages, unix.EINVAL)
	}
	if p.Closed() {
		return nil, fmt.Errorf("foreign: map resource %v: %w", dom, hyp.ErrClosed)
	}
	f := p.File()
	mem, err := f.Mmap(0, num*PageSize, unix.PROT_READ|unix.PROT_WRITE)
	if err != nil {
		return nil, fmt.Errorf("foreign: map resource %v type %d id %d: %w", dom, typ, id, err)
	}
	if err := p.MmapResource(dom, typ, id, idx, mem); err != nil {
		_ = f.Munmap(mem)
		return nil, fmt.Errorf("foreign: map resource: %w", err)
	}
	return &Mapping{f: f, pages: num, mem: mem}, nil
}

// Bytes returns the mapped memory, or nil after Close.
func (m *Mapping) Bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mem
}

// Pages returns the number of pages of the mapping (also after Close).
func (m *Mapping) Pages() int { return m.pages }

// PageErr returns nil if page i is mapped, the unix.Errno that left it a
// hole (for Map), or ErrPageIndex.
func (m *Mapping) PageErr(i int) error {
	if i < 0 || i >= m.pages {
		return ErrPageIndex
	}
	if m.errs == nil {
		return nil
	}
	if e := m.errs[i]; e != 0 {
		if e < 0 {
			e = -e
		}
		return unix.Errno(uint32(e))
	}
	return nil
}

// Holes returns the number of pages that could not be mapped.
func (m *Mapping) Holes() int {
	n := 0
	for _, e := range m.errs {
		if e != 0 {
			n++
		}
	}
	return n
}

// Close unmaps the range. It is idempotent.
func (m *Mapping) Close() error {
	m.mu.Lock()
	mem := m.mem
	m.mem = nil
	m.mu.Unlock()
	if mem == nil {
		return nil
	}
	if err := m.f.Munmap(mem); err != nil {
		return fmt.Errorf("foreign: unmap: %w", err)
	}
	return nil
}
