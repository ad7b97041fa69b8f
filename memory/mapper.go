package memory

import (
	"errors"
	"fmt"
	"sync"
)

// Mapper maps guest page frames into this process. The hypervisor layer
// provides it (hyp/foreign maps through privcmd; a three-line adapter turns
// foreign.Map into a Mapper); tests use FromBytes.
type Mapper interface {
	// MapPages maps gfns, in order, into one contiguous range. Per-page
	// failures (holes) are reported by Mapping.PageErr, not as an error;
	// an error means nothing was mapped. MapPages must not retain gfns.
	MapPages(gfns []uint64, writable bool) (Mapping, error)
}

// Mapping is a range of mapped guest pages. hyp/foreign.Mapping has this
// method set.
type Mapping interface {
	// Bytes returns the mapped range: page i of the request at
	// [i*PageSize, (i+1)*PageSize). Pages beyond its length are treated
	// as holes.
	Bytes() []byte
	// PageErr returns nil if page i is mapped, or why it is not.
	PageErr(i int) error
	// Close unmaps the range. It is idempotent.
	Close() error
}

// MapperFunc adapts a function to Mapper.
type MapperFunc func(gfns []uint64, writable bool) (Mapping, error)

// MapPages implements Mapper.
func (f MapperFunc) MapPages(gfns []uint64, writable bool) (Mapping, error) { return f(gfns, writable) }

// ErrFakeHole is the per-page error of a FakeMapper hole set with SetHole
// and a nil error.
var ErrFakeHole = errors.New("memory: fake mapper: page is a hole")

// FakeMapper is a Mapper over a byte slice, for tests: gfn g is
// mem[g*PageSize:(g+1)*PageSize]. Mappings alias the slice (writes through
// a mapping change it), like foreign mappings alias guest RAM. Pages beyond
// the slice, and pages marked with SetHole, are holes. It counts live
// mappings so tests can check bounds and leaks. Use FromBytes.
type FakeMapper struct {
	mem []byte

	mu    sync.Mutex
	holes map[uint64]error // guarded by mu
	fail  error            // guarded by mu
	live  int              // guarded by mu
	maps  int              // guarded by mu
}

// FromBytes returns a FakeMapper over mem (not copied).
func FromBytes(mem []byte) *FakeMapper {
	return &FakeMapper{mem: mem, holes: make(map[uint64]error)}
}

// SetHole makes gfn a hole with the given per-page error (ErrFakeHole if
// err is nil), or, with hole false, populated again. Existing mappings are
// not changed (as in Xen: until the cache is invalidated, it keeps seeing
// the old page).
func (f *FakeMapper) SetHole(gfn uint64, hole bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !hole {
		delete(f.holes, gfn)
		return
	}
	if err == nil {
		err = ErrFakeHole
	}
	f.holes[gfn] = err
}

// SetFail makes every later MapPages fail with err (nil: succeed again).
func (f *FakeMapper) SetFail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

// Live returns the number of mappings not yet closed.
func (f *FakeMapper) Live() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.live
}

// Maps returns the number of successful MapPages calls.
func (f *FakeMapper) Maps() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maps
}

// MapPages implements Mapper. The gfns must be consecutive.
func (f *FakeMapper) MapPages(gfns []uint64, writable bool) (Mapping, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	if len(gfns) == 0 {
		return nil, fmt.Errorf("memory: fake mapper: no pages")
	}
	for i := range gfns {
		if gfns[i] != gfns[0]+uint64(i) {
			return nil, fmt.Errorf("memory: fake mapper: gfns not consecutive at %d", i)
		}
	}
	m := &fakeMapping{f: f, errs: make([]error, len(gfns))}
	npages := uint64(len(f.mem) / PageSize)
	if first := gfns[0]; first < npages {
		end := min(npages, first+uint64(len(gfns)))
		m.b = f.mem[first*PageSize : end*PageSize : end*PageSize]
	}
	for i, g := range gfns {
		if g >= npages {
			m.errs[i] = fmt.Errorf("memory: fake mapper: gfn %#x beyond %d pages: %w", g, npages, ErrFakeHole)
		} else if err, ok := f.holes[g]; ok {
			m.errs[i] = err
		}
	}
	f.live++
	f.maps++
	return m, nil
}

type fakeMapping struct {
	f      *FakeMapper
	b      []byte
	errs   []error
	closed bool // guarded by f.mu
}

// Bytes implements Mapping.
func (m *fakeMapping) Bytes() []byte { return m.b }

// PageErr implements Mapping.
func (m *fakeMapping) PageErr(i int) error {
	if i < 0 || i >= len(m.errs) {
		return ErrFakeHole
	}
	return m.errs[i]
}

// Close implements Mapping.
func (m *fakeMapping) Close() error {
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	if !m.closed {
		m.closed = true
		m.f.live--
	}
	return nil
}
