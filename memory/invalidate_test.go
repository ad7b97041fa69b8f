package memory

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// p2mMapper stands for a guest whose p2m changes under the cache: gfn g
// holds frame[g] (0: a hole), and a mapping copies the frames' contents
// at map time, as a foreign mapping keeps showing the page it mapped after
// the p2m moved on. A frame's bytes are all equal to its number. Close
// overwrites the copy with poison, so a view used after its unmap shows
// it.
type p2mMapper struct {
	mu    sync.Mutex
	frame map[uint64]byte // guarded by mu
	live  int             // guarded by mu
}

func newP2MMapper(pages int, f byte) *p2mMapper {
	m := &p2mMapper{frame: make(map[uint64]byte)}
	for g := range pages {
		m.frame[uint64(g)] = f
	}
	return m
}

// set points every gfn in [first, first+n) at frame f (0: a hole).
func (m *p2mMapper) set(first, n uint64, f byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for g := first; g < first+n; g++ {
		m.frame[g] = f
	}
}

func (m *p2mMapper) liveMappings() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live
}

var errP2MHole = errors.New("p2m hole")

func (m *p2mMapper) MapPages(gfns []uint64, _ bool) (Mapping, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pm := &p2mMapping{m: m, b: make([]byte, len(gfns)*PageSize), errs: make([]error, len(gfns))}
	for i, g := range gfns {
		f := m.frame[g]
		if f == 0 {
			pm.errs[i] = errP2MHole
		}
		for j := range PageSize {
			pm.b[i*PageSize+j] = f
		}
	}
	m.live++
	return pm, nil
}

type p2mMapping struct {
	m      *p2mMapper
	b      []byte
	errs   []error
	closed atomic.Bool
}

func (pm *p2mMapping) Bytes() []byte       { return pm.b }
func (pm *p2mMapping) PageErr(i int) error { return pm.errs[i] }
func (pm *p2mMapping) Close() error {
	if pm.closed.Swap(true) {
		return errors.New("double close")
	}
	for i := range pm.b {
		pm.b[i] = poison
	}
	pm.m.mu.Lock()
	pm.m.live--
	pm.m.mu.Unlock()
	return nil
}

// allEqual reports whether every byte of p is v.
func allEqual(p []byte, v byte) bool {
	for _, b := range p {
		if b != v {
			return false
		}
	}
	return true
}

// TestMapCache_InvalidateSeesNewP2M: after the p2m changes under the
// cache, accesses keep the old page until Invalidate (as in Xen before
// IOREQ_TYPE_INVALIDATE) and map the new p2m after it, never the stale
// page; a region pinned before keeps a valid view of the old page (not
// unmapped under it) until its Release, which unmaps it.
func TestMapCache_InvalidateSeesNewP2M(t *testing.T) {
	const gpa = 0x5000 // bucket 1 of 16 KiB buckets, gfn 5
	for _, tc := range []struct {
		name    string
		frame   byte // the gfn's new frame; 0 makes it a hole
		wantErr bool
	}{
		{"relocated page", 2, false},
		{"decreased reservation", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newP2MMapper(32, 1)
			c := small(t, m, 8, 2)
			buf := make([]byte, 64)
			if err := c.Read(GPA(gpa), buf); err != nil || !allEqual(buf, 1) {
				t.Fatalf("Read before the change = %v, %v; want frame 1", buf[:4], err)
			}
			pin, err := c.Pin(GPA(gpa), 64)
			if err != nil {
				t.Fatal(err)
			}
			m.set(gpa/PageSize, 1, tc.frame)
			if err := c.Read(GPA(gpa), buf); err != nil || !allEqual(buf, 1) {
				t.Fatalf("Read before Invalidate = %v, %v; want the old frame (Xen has not asked yet)", buf[:4], err)
			}

			c.Invalidate()

			err = c.Read(GPA(gpa), buf)
			if tc.wantErr {
				if !errors.Is(err, ErrUnmapped) || !errors.Is(err, errP2MHole) {
					t.Errorf("Read after Invalidate = %v, want ErrUnmapped wrapping the hole", err)
				}
			} else if err != nil || !allEqual(buf, tc.frame) {
				t.Errorf("Read after Invalidate = %v, %v; want frame %d, never the stale 1", buf[:4], err, tc.frame)
			}
			// A page of the same bucket that did not change: remapped too.
			if err := c.Read(GPA(gpa)+PageSize, buf); err != nil || !allEqual(buf, 1) {
				t.Errorf("Read of an unchanged page after Invalidate = %v, %v", buf[:4], err)
			}
			if got := c.Stats().Maps; got != 2 {
				t.Errorf("Maps = %d, want 2 (one before, one after Invalidate)", got)
			}

			// The pin still shows the old page, mapped.
			seg := pin.Segments()[0]
			if !allEqual(seg, 1) {
				t.Errorf("pinned view after Invalidate = %v, want the old frame 1 (not unmapped)", seg[:4])
			}
			if n, err := pin.WriteAt([]byte{9}, 0); n != 1 || err != nil {
				t.Errorf("WriteAt on the pinned view after Invalidate = %d, %v", n, err)
			}
			if got, want := m.liveMappings(), 2; got != want {
				t.Errorf("live mappings with the pin held = %d, want %d (the pinned old + the new)", got, want)
			}
			pin.Release()
			if !allEqual(seg[1:], poison) {
				t.Error("the pinned bucket was not unmapped at Release")
			}
			if got, want := m.liveMappings(), 1; got != want {
				t.Errorf("live mappings after Release = %d, want %d", got, want)
			}
		})
	}
}

// TestMapCache_InvalidateOrdering runs readers and pinners while another
// goroutine changes the whole p2m to a new generation and invalidates, in
// a loop. A Read that starts after an Invalidate returned must never see
// a generation older than the one that Invalidate published; a pinned
// view must never change or show poison (unmapped) before its Release.
func TestMapCache_InvalidateOrdering(t *testing.T) {
	const pages = 16 * 4 // 16 buckets of 16 KiB
	m := newP2MMapper(pages, 1)
	c := small(t, m, 8, 2) // smaller than the working set: it also evicts
	var published atomic.Uint32
	published.Store(1)
	stop := make(chan struct{})
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	defer halt()
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 3*PageSize)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				gpa := uint64((i*7+w*13)%(pages-3)) * PageSize
				floor := byte(published.Load())
				if w == 0 {
					r, err := c.Pin(GPA(gpa), len(buf))
					if err != nil {
						errs <- fmt.Errorf("Pin(%#x): %w", gpa, err)
						return
					}
					// Each segment is one bucket, mapped at one
					// generation (buckets may differ).
					var first [4]byte
					for j, s := range r.Segments() {
						first[j] = s[0]
					}
					for k := 0; k < 50; k++ {
						for j, s := range r.Segments() {
							if !allEqual(s, first[j]) || first[j] == poison || first[j] < floor {
								errs <- fmt.Errorf("pinned view of %#x segment %d changed or unmapped (%#x, was %#x, pinned at generation >= %d)", gpa, j, s[0], first[j], floor)
								return
							}
						}
					}
					r.Release()
					continue
				}
				if err := c.Read(GPA(gpa), buf); err != nil {
					errs <- fmt.Errorf("Read(%#x): %w", gpa, err)
					return
				}
				for j, b := range buf {
					if b < floor || b == poison {
						errs <- fmt.Errorf("Read(%#x) byte %d = %d after Invalidate of generation %d returned", gpa, j, b, floor)
						return
					}
				}
			}
		}()
	}
	const gens = 150 // generations 2..151, below poison (0xdd)
	deadline := time.Now().Add(20 * time.Second)
	for g := byte(2); g < 2+gens; g++ {
		if time.Now().After(deadline) {
			t.Errorf("only %d generations in 20s", g-2)
			break
		}
		m.set(0, pages, g)
		c.Invalidate()
		published.Store(uint32(g))
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
	}
	halt()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	c.Invalidate()
	if got := m.liveMappings(); got != 0 {
		t.Errorf("%d mappings live after the last Invalidate with no pins, want 0", got)
	}
	if st := c.Stats(); st.UnmapErrors != 0 {
		t.Errorf("UnmapErrors = %d (double unmap)", st.UnmapErrors)
	}
}
