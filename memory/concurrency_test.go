package memory

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// guestByte is the content of guest memory at gpa in the concurrency
// tests.
func guestByte(gpa uint64) byte { return byte(gpa%251) + byte(gpa>>12) }

// poisonMapper gives every mapping a private copy of guest memory and
// overwrites it at Close, so a use after unmap is seen either by the race
// detector (concurrent with Close) or as poison (after it).
type poisonMapper struct {
	pages  uint64
	guest  []byte // guestByte over pages+ a bucket, built once
	poison []byte // poison bytes, as long as guest
	live   atomic.Int64
}

func newPoisonMapper(pages uint64) *poisonMapper {
	n := (pages + 64) * PageSize
	p := &poisonMapper{pages: pages, guest: make([]byte, n), poison: make([]byte, n)}
	for i := range p.guest {
		p.guest[i] = guestByte(uint64(i))
		p.poison[i] = poison
	}
	return p
}

const poison = 0xdd

func (p *poisonMapper) MapPages(gfns []uint64, _ bool) (Mapping, error) {
	m := &poisonMapping{p: p, b: make([]byte, len(gfns)*PageSize), first: gfns[0]}
	copy(m.b, p.guest[gfns[0]*PageSize:])
	p.live.Add(1)
	return m, nil
}

type poisonMapping struct {
	p      *poisonMapper
	b      []byte
	first  uint64
	closed atomic.Bool
}

func (m *poisonMapping) Bytes() []byte { return m.b }

func (m *poisonMapping) PageErr(i int) error {
	if m.first+uint64(i) >= m.p.pages {
		return ErrFakeHole
	}
	return nil
}

func (m *poisonMapping) Close() error {
	if m.closed.Swap(true) {
		return fmt.Errorf("double close")
	}
	copy(m.b, m.p.poison)
	m.p.live.Add(-1)
	return nil
}

func (pm *poisonMapper) check(gpa uint64, p []byte) error {
	if bytes.Equal(p, pm.guest[gpa:gpa+uint64(len(p))]) {
		return nil
	}
	for i, b := range p {
		if want := guestByte(gpa + uint64(i)); b != want {
			return fmt.Errorf("byte at %#x = %#x, want %#x (use after unmap?)", gpa+uint64(i), b, want)
		}
	}
	return nil
}

// TestMapCache_ConcurrentInvalidate runs readers and pinners against a
// cache that is too small for their working set (so it evicts) while
// another goroutine invalidates it in a loop.
func TestMapCache_ConcurrentInvalidate(t *testing.T) {
	const memPages = 32 * 4 // 32 buckets of 16 KiB
	pm := newPoisonMapper(memPages)
	c := small(t, pm, 8, 2)
	const workers, iters = 4, 1500
	var wg sync.WaitGroup
	errs := make(chan error, workers+1)
	var done atomic.Int32
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer done.Add(1)
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			buf := make([]byte, 40<<10)
			for range iters {
				gpa := rng.Uint64N(memPages * PageSize)
				n := 1 + rng.IntN(len(buf))
				if gpa+uint64(n) > memPages*PageSize {
					n = int(memPages*PageSize - gpa)
				}
				if rng.IntN(4) == 0 {
					r, err := c.Pin(GPA(gpa), n)
					if err != nil {
						errs <- fmt.Errorf("Pin(%#x, %d): %w", gpa, n, err)
						return
					}
					off := uint64(0)
					for _, s := range r.Segments() {
						if err := pm.check(gpa+off, s); err != nil {
							errs <- err
							return
						}
						off += uint64(len(s))
					}
					r.Release()
					continue
				}
				if err := c.Read(GPA(gpa), buf[:n]); err != nil {
					errs <- fmt.Errorf("Read(%#x, %d): %w", gpa, n, err)
					return
				}
				if err := pm.check(gpa, buf[:n]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Add(1)
	invalidations := 0
	go func() {
		defer wg.Done()
		for done.Load() < workers {
			c.Invalidate()
			invalidations++
			runtime.Gosched() // let the workers map between invalidations
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if invalidations == 0 {
		t.Error("no Invalidate ran concurrently with the workers")
	}
	c.Invalidate()
	if got := pm.live.Load(); got != 0 {
		t.Errorf("%d mappings live after the final Invalidate, want 0", got)
	}
	if got := c.Stats(); got.UnmapErrors != 0 || got.Live != 0 {
		t.Errorf("Stats() = %+v, want no unmap errors (double close) and nothing live", got)
	}
	t.Logf("%d invalidations, stats %+v", invalidations, c.Stats())
}

// TestMapCache_InvalidateWithHeldPin checks the deadlock rule: a pin held
// by a goroutine that waits for Invalidate to finish does not stop it.
func TestMapCache_InvalidateWithHeldPin(t *testing.T) {
	pm := newPoisonMapper(64)
	c := small(t, pm, 8, 2)
	r, err := c.Pin(0x100, 0x100)
	if err != nil {
		t.Fatal(err)
	}
	invalidated := make(chan struct{})
	released := make(chan struct{})
	go func() {
		// The "DMA": waits for the ioreq path (Invalidate) before it
		// releases its pin.
		<-invalidated
		if err := pm.check(0x100, r.Segments()[0]); err != nil {
			t.Error(err)
		}
		r.Release()
		close(released)
	}()
	c.Invalidate() // must not wait for the pin
	close(invalidated)
	<-released
	if got := pm.live.Load(); got != 0 {
		t.Errorf("%d mappings live after the pin's release, want 0", got)
	}
}

// TestMapCache_InvalidateWaitsForCopy holds a copy reference (as a Read in
// progress does) and checks that Invalidate retires the bucket at once but
// unmaps it, and returns, only after the copy is done.
func TestMapCache_InvalidateWaitsForCopy(t *testing.T) {
	pm := newPoisonMapper(64)
	c := small(t, pm, 8, 2)
	b, err := c.get(0, copyUnit, copyMask) // a Read of bucket 0 in progress
	if err != nil {
		t.Fatal(err)
	}
	returned := make(chan struct{})
	go func() {
		c.Invalidate()
		close(returned)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for b.state.Load()&retired == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Invalidate did not retire the bucket within 10s")
		}
		runtime.Gosched()
	}
	select {
	case <-returned:
		t.Fatal("Invalidate returned while a copy was in progress")
	default:
	}
	if err := pm.check(0, b.mem[:PageSize]); err != nil {
		t.Fatalf("bucket unmapped under the copy: %v", err)
	}
	c.put(b, copyUnit) // the copy ends
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("Invalidate did not return within 10s after the copy ended")
	}
	if got := pm.live.Load(); got != 0 {
		t.Errorf("%d mappings live after Invalidate, want 0", got)
	}
}
