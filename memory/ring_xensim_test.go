package memory_test

import (
	"encoding/binary"
	"sync/atomic"
	"testing"

	"godm/hyp/foreign"
	"godm/hyp/privcmd"
	"godm/hyp/xensim"
	"godm/internal/testfake"
	"godm/memory"
)

// TestRing_XensimInvalidate runs a ring over the simulated Xen's foreign
// mappings of a domain's RAM: the pinned used ring keeps working across an
// INVALIDATE, the guest sees the device's stores, the dirty log has them,
// and releasing the pin after the INVALIDATE unmaps every mapping made.
func TestRing_XensimInvalidate(t *testing.T) {
	xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(1, 8<<20))
	sim, dom := xen.Sim, xen.Dom
	p, err := privcmd.Open(sim.Kernel(0))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var maps, unmaps atomic.Int64
	mapper := memory.MapperFunc(func(gfns []uint64, w bool) (memory.Mapping, error) {
		m, err := foreign.Map(p, dom.ID(), w, gfns)
		if err != nil {
			return nil, err
		}
		maps.Add(1)
		return &closeCounter{Mapping: m, n: &unmaps}, nil
	})
	log, err := memory.NewDirtyLog(8 << 20)
	if err != nil {
		t.Fatal(err)
	}
	c, err := memory.NewMapCache(mapper, memory.MapCacheConfig{Dirty: log})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	const used = 0x203000 // struct virtq_used of a 16-entry queue
	ring, err := c.Pin(used, 4+8*16)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ring.WriteAt([]byte{7, 0, 0, 0, 64, 0, 0, 0}, 4); err != nil {
		t.Fatal(err)
	}
	if err := ring.Store16(2, 1); err != nil {
		t.Fatal(err)
	}
	c.Invalidate()
	if got := maps.Load() - unmaps.Load(); got != 1 {
		t.Errorf("%d mappings live after Invalidate, want 1 (the pinned bucket, deferred)", got)
	}
	if err := ring.Store16(2, 2); err != nil {
		t.Fatalf("Store16 after Invalidate: %v", err)
	}
	var idx [2]byte
	if err := dom.ReadRAM(used+2, idx[:]); err != nil || binary.LittleEndian.Uint16(idx[:]) != 2 {
		t.Errorf("guest reads used idx %v (%v), want 2", idx, err)
	}
	var b [8]byte
	if err := c.Read(used+4, b[:]); err != nil || b != [8]byte{7, 0, 0, 0, 64, 0, 0, 0} {
		t.Errorf("Read after Invalidate = %v, %v", b, err)
	}
	ring.Release()
	if got := maps.Load() - unmaps.Load(); got != 1 {
		t.Errorf("%d mappings live after Release, want 1 (only the fresh bucket)", got)
	}
	c.Invalidate()
	if m, u := maps.Load(), unmaps.Load(); m != 2 || u != 2 {
		t.Errorf("maps %d unmaps %d, want 2 and 2: no mapping leaked", m, u)
	}
	var dirty []uint64
	log.Collect(func(g, n uint64) {
		for i := range n {
			dirty = append(dirty, g+i)
		}
	})
	if len(dirty) != 1 || dirty[0] != used/memory.PageSize {
		t.Errorf("dirty gfns %#x, want [%#x]", dirty, used/memory.PageSize)
	}
}

type closeCounter struct {
	*foreign.Mapping
	n    *atomic.Int64
	done atomic.Bool
}

func (m *closeCounter) Close() error {
	if !m.done.Swap(true) {
		m.n.Add(1)
	}
	return m.Mapping.Close()
}
