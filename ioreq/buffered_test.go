package ioreq

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"godm/hyp/xenabi"
)

// ringWriter plays Xen's side of the buffered ring
// (xen/common/ioreq.c ioreq_send_buffered, atomic mode).
type ringWriter struct {
	page []byte
	r    *Ring
	mu   sync.Mutex
}

func newRingWriter(t testing.TB) *ringWriter {
	page := newPage(t)
	r, err := NewRing(page)
	if err != nil {
		t.Fatal(err)
	}
	return &ringWriter{page: page, r: r}
}

func bufEntry(typ Type, sizeCode uint32, addr uint32, data uint32) uint64 {
	w0 := uint32(typ) | 0<<xenabi.BufIoreqDirShift | sizeCode<<xenabi.BufIoreqSizeShift | (addr&xenabi.BufIoreqAddrMask)<<xenabi.BufIoreqAddrShift
	return uint64(w0) | uint64(data)<<32
}

// send queues a write; it reports false when the ring is full (Xen then
// falls back to a synchronous request).
func (w *ringWriter) send(typ Type, size uint32, addr uint32, data uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	var code uint32
	switch size {
	case 2:
		code = 1
	case 4:
		code = 2
	case 8:
		code = 3
	}
	qw := uint32(0)
	if size == 8 {
		qw = 1
	}
	p := atomic.LoadUint64(w.r.ptrs)
	rd, wr := uint32(p), uint32(p>>32)
	if wr-rd >= RingSlots-qw {
		return false
	}
	atomic.StoreUint64(w.r.entries[wr%RingSlots], bufEntry(typ, code, addr, uint32(data)))
	if qw == 1 {
		atomic.StoreUint64(w.r.entries[(wr+1)%RingSlots], bufEntry(typ, code, addr, uint32(data>>32)))
	}
	w.bumpWrite(1 + qw)
	// Canonicalise, as Xen does in atomic mode.
	for {
		old := atomic.LoadUint64(w.r.ptrs)
		rd, wr := uint32(old), uint32(old>>32)
		if rd < RingSlots {
			break
		}
		n := rd / RingSlots
		nw := uint64(rd-n*RingSlots) | uint64(wr-n*RingSlots)<<32
		if atomic.CompareAndSwapUint64(w.r.ptrs, old, nw) {
			break
		}
	}
	return true
}

func (w *ringWriter) bumpWrite(n uint32) {
	for {
		old := atomic.LoadUint64(w.r.ptrs)
		nw := old + uint64(n)<<32
		if atomic.CompareAndSwapUint64(w.r.ptrs, old, nw) {
			return
		}
	}
}

func (w *ringWriter) setPtrs(rd, wr uint32) {
	atomic.StoreUint64(w.r.ptrs, uint64(rd)|uint64(wr)<<32)
}

func TestNewRingRejects(t *testing.T) {
	page := newPage(t)
	for _, b := range [][]byte{page[:100], page[1:]} {
		if _, err := NewRing(b); !errors.Is(err, ErrBadPage) {
			t.Fatalf("NewRing(%d bytes): %v, want ErrBadPage", len(b), err)
		}
	}
}

func TestRingDrainInOrder(t *testing.T) {
	w := newRingWriter(t)
	pio, mmio := &recSpace{}, &recSpace{}
	d := NewDispatcher(Targets{PIO: pio, MMIO: mmio})
	var st Stats
	// Start near the canonicalisation point and past it, so the indices
	// wrap around the ring.
	w.setPtrs(505, 505)
	sends := []struct {
		typ  Type
		size uint32
		addr uint32
		data uint64
	}{
		{TypeCopy, 1, 0xa0000, 0x11},
		{TypeCopy, 2, 0xa0002, 0x2222},
		{TypePIO, 4, 0x3c4, 0x33333333},
		{TypeCopy, 8, 0xa0008, 0x8877665544332211},
		{TypeCopy, 4, 0xbfffc, 0x44},
		{TypeTimeOffset, 8, 0, uint64(0xffffffffffffffc4)}, // -60 s
	}
	for _, s := range sends {
		if !w.send(s.typ, s.size, s.addr, s.data) {
			t.Fatal("ring full")
		}
	}
	n, more := w.r.Drain(d, make([]byte, 64), &st)
	if n != 8 || more {
		t.Fatalf("Drain = %d, %v; want 8 entries, no more", n, more)
	}
	wantMMIO := []op{
		{Write: true, Addr: 0xa0000, Size: 1, Val: 0x11},
		{Write: true, Addr: 0xa0002, Size: 2, Val: 0x2222},
		{Write: true, Addr: 0xa0008, Size: 8, Val: 0x8877665544332211},
		{Write: true, Addr: 0xbfffc, Size: 4, Val: 0x44},
	}
	if got := mmio.log(); !slices.Equal(got, wantMMIO) {
		t.Fatalf("MMIO = %+v, want %+v", got, wantMMIO)
	}
	if got := pio.log(); !slices.Equal(got, []op{{Write: true, Addr: 0x3c4, Size: 4, Val: 0x33333333}}) {
		t.Fatalf("PIO = %+v", got)
	}
	if d.TimeOffset() != -60 {
		t.Fatalf("TimeOffset = %d, want -60", d.TimeOffset())
	}
	if !w.r.Empty() {
		t.Fatal("ring not empty after drain")
	}
	var c Counters
	st.Snapshot(&c)
	if c.Buffered[KindMMIO] != 4 || c.Buffered[KindPIO] != 1 || c.Buffered[KindTimeOffset] != 1 {
		t.Fatalf("buffered counters %+v", c.Buffered)
	}
}

func TestRingIncompleteQuadAndOverrun(t *testing.T) {
	w := newRingWriter(t)
	mmio := &recSpace{}
	d := NewDispatcher(Targets{MMIO: mmio})
	var st Stats
	// An 8-byte entry whose second half is missing (write_pointer covers
	// only the first slot), followed by nothing.
	atomic.StoreUint64(w.r.entries[0], bufEntry(TypeCopy, 1, 0xa0000, 0x1))
	atomic.StoreUint64(w.r.entries[1], bufEntry(TypeCopy, 3, 0xa0010, 0x2))
	w.setPtrs(0, 2)
	if n, more := w.r.Drain(d, make([]byte, 8), &st); n != 2 || more {
		t.Fatalf("Drain = %d, %v; want 2, false", n, more)
	}
	if got := mmio.log(); !slices.Equal(got, []op{{Write: true, Addr: 0xa0000, Size: 2, Val: 1}}) {
		t.Fatalf("MMIO = %+v", got)
	}
	// Pointers that claim more than a ring's worth are skipped, not read.
	w.setPtrs(10, 10+RingSlots+5)
	if n, more := w.r.Drain(d, make([]byte, 8), &st); n != RingSlots+5 || more {
		t.Fatalf("overrun Drain = %d, %v", n, more)
	}
	var c Counters
	st.Snapshot(&c)
	if c.BufferedIncomplete != 1 || c.BufferedOverrun != 1 {
		t.Fatalf("incomplete, overrun = %d, %d; want 1, 1", c.BufferedIncomplete, c.BufferedOverrun)
	}
	if len(mmio.log()) != 1 {
		t.Fatal("overrun entries were dispatched")
	}
}

func TestRingBoundedPassUnderFlood(t *testing.T) {
	w := newRingWriter(t)
	mmio := &countSpace{}
	d := NewDispatcher(Targets{MMIO: mmio})
	var st Stats
	const total = 20000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for sent := 0; sent < total; {
			if w.send(TypeCopy, 4, 0xa0000, uint64(sent)) {
				sent++
			}
		}
	}()
	handled := 0
	scratch := make([]byte, 64)
	for handled < total {
		n, _ := w.r.Drain(d, scratch, &st)
		if n > RingSlots {
			t.Fatalf("one pass handled %d entries, more than a ring", n)
		}
		handled += n
	}
	<-done
	if got := mmio.writes.Load(); got != total {
		t.Fatalf("device saw %d writes, want %d", got, total)
	}
}

func TestRingConcurrentDrainers(t *testing.T) {
	w := newRingWriter(t)
	seen := &orderSpace{}
	d := NewDispatcher(Targets{MMIO: seen})
	const total = 5000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st Stats
			scratch := make([]byte, 64)
			for {
				select {
				case <-stop:
					return
				default:
					w.r.Drain(d, scratch, &st)
				}
			}
		}()
	}
	for sent := 0; sent < total; {
		if w.send(TypeCopy, 4, 0xa0000, uint64(sent)) {
			sent++
		}
	}
	for !w.r.Empty() {
		var st Stats
		w.r.Drain(d, make([]byte, 8), &st)
	}
	close(stop)
	wg.Wait()
	if seen.n != total || seen.outOfOrder != 0 {
		t.Fatalf("saw %d writes, %d out of order; want %d, 0", seen.n, seen.outOfOrder, total)
	}
}

// orderSpace checks that written values arrive in increasing order.
type orderSpace struct {
	mu            sync.Mutex
	n, outOfOrder int
	next          uint64
}

func (s *orderSpace) Read(uint64, uint8, uint32) uint64 { return 0 }
func (s *orderSpace) Write(_ uint64, _ uint8, _ uint32, v uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v != s.next {
		s.outOfOrder++
	}
	s.next = v + 1
	s.n++
}
