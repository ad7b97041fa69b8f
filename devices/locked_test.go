package devices

import (
	"sync"
	"testing"
)

// counter is a device with no locking of its own.
type counter struct{ n uint64 }

func (c *counter) Read(Access) uint64       { return c.n }
func (c *counter) Write(_ Access, v uint64) { c.n += v }
func (c *counter) Reset()                   { c.n = 0 }

// TestLocked runs concurrent accesses through Locked; -race reports any
// access that is not serialised.
func TestLocked(t *testing.T) {
	d := &counter{}
	h := Locked(d)
	r, ok := h.(Resetter)
	if !ok {
		t.Fatal("Locked(Resetter) does not implement Resetter")
	}
	if _, ok := Locked(&nopDev{}).(Resetter); ok {
		t.Error("Locked(non-Resetter) implements Resetter")
	}
	const workers, n = 4, 1000
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				h.Write(Access{Size: 8}, 1)
				_ = h.Read(Access{Size: 8})
			}
		}()
	}
	wg.Wait()
	if got, want := h.Read(Access{Size: 8}), uint64(workers*n); got != want {
		t.Errorf("count = %d, want %d", got, want)
	}
	r.Reset()
	if got := h.Read(Access{Size: 8}); got != 0 {
		t.Errorf("count after Reset = %d, want 0", got)
	}
}
