package memory

import (
	"encoding/binary"
	"errors"
	"sync"
	"testing"
)

func TestRegion_RingIndices(t *testing.T) {
	mem := make([]byte, 128<<10)
	c := small(t, FromBytes(mem), 4, 2) // 16 KiB buckets
	defer c.Close()
	// The region crosses from bucket 0 into bucket 1 at region offset 0x10.
	r, err := c.Pin(0x3ff0, 0x40)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	for i := range 0x40 {
		mem[0x3ff0+i] = 0xee
	}
	if err := r.Store16(2, 0x1234); err != nil {
		t.Fatal(err)
	}
	if err := r.Store16(0, 0xabcd); err != nil {
		t.Fatal(err)
	}
	if got := mem[0x3ff0:0x3ff6]; string(got) != "\xcd\xab\x34\x12\xee\xee" {
		t.Errorf("guest bytes after Store16s = % x, want cd ab 34 12 ee ee (little-endian, neighbours kept)", got)
	}
	if err := r.Store32(0x14, 0xdeadbeef); err != nil { // in bucket 1
		t.Fatal(err)
	}
	if err := r.Store64(0x18, 0x0102030405060708); err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint32(mem[0x4004:]); got != 0xdeadbeef {
		t.Errorf("Store32 wrote %#x", got)
	}
	if got := binary.LittleEndian.Uint64(mem[0x4008:]); got != 0x0102030405060708 {
		t.Errorf("Store64 wrote %#x", got)
	}
	binary.LittleEndian.PutUint16(mem[0x4012:], 0x5566) // the guest writes
	for _, tc := range []struct {
		off  int
		size int
		want uint64
	}{
		{0, 2, 0xabcd}, {2, 2, 0x1234}, {0, 4, 0x1234abcd}, {0x22, 2, 0x5566},
		{0x14, 4, 0xdeadbeef}, {0x18, 8, 0x0102030405060708}, {0x16, 2, 0xdead},
	} {
		var got uint64
		var err error
		switch tc.size {
		case 2:
			var v uint16
			v, err = r.Load16(tc.off)
			got = uint64(v)
		case 4:
			var v uint32
			v, err = r.Load32(tc.off)
			got = uint64(v)
		case 8:
			got, err = r.Load64(tc.off)
		}
		if err != nil || got != tc.want {
			t.Errorf("Load%d(%#x) = %#x, %v; want %#x", tc.size*8, tc.off, got, err, tc.want)
		}
	}
}

func TestRegion_RingErrors(t *testing.T) {
	mem := make([]byte, 64<<10)
	c := small(t, FromBytes(mem), 4, 1)
	defer c.Close()
	r, err := c.Pin(0x1002, 0x20) // 2-aligned, not 4-aligned
	if err != nil {
		t.Fatal(err)
	}
	before := append([]byte(nil), mem...)
	for _, tc := range []struct {
		name string
		f    func() error
		mis  bool
	}{
		{"Load16 negative", func() error { _, err := r.Load16(-2); return err }, false},
		{"Load16 odd near the end", func() error { _, err := r.Load16(0x1d); return err }, true},
		{"Load16 straddling the end", func() error { _, err := r.Load16(0x1f); return err }, false},
		{"Load16 beyond", func() error { _, err := r.Load16(0x20); return err }, false},
		{"Load16 huge", func() error { _, err := r.Load16(1 << 40); return err }, false},
		{"Store16 odd", func() error { return r.Store16(1, 1) }, true},
		{"Load32 misaligned gpa", func() error { _, err := r.Load32(0); return err }, true},
		{"Store32 beyond", func() error { return r.Store32(0x1e, 1) }, false},
		{"Store64 misaligned", func() error { return r.Store64(2, 1) }, true},
		{"Load64 beyond", func() error { _, err := r.Load64(0x1e); return err }, false},
	} {
		err := tc.f()
		if !errors.Is(err, ErrUnmapped) || errors.Is(err, ErrMisaligned) != tc.mis {
			t.Errorf("%s: %v, want ErrUnmapped (misaligned: %v)", tc.name, err, tc.mis)
		}
	}
	if string(mem) != string(before) {
		t.Error("a failed ring access changed guest memory")
	}
	if v, err := r.Load16(0x1e); err != nil || v != 0 {
		t.Errorf("Load16 of the last field = %v, %v", v, err)
	}
	r.Release()
	if _, err := r.Load16(0); !errors.Is(err, ErrUnmapped) {
		t.Errorf("Load16 after Release = %v, want ErrUnmapped", err)
	}
	if err := r.Store32(2, 1); !errors.Is(err, ErrUnmapped) {
		t.Errorf("Store32 after Release = %v, want ErrUnmapped", err)
	}
}

// TestRegion_Store16KeepsNeighbour: the device and the guest update the
// two halves of one 32-bit word at the same time (virtio's used flags and
// idx); neither update is lost.
func TestRegion_Store16KeepsNeighbour(t *testing.T) {
	mem := make([]byte, 64<<10)
	c := small(t, FromBytes(mem), 4, 1)
	defer c.Close()
	dev, err := c.Pin(0x2000, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Release()
	guest, err := c.Pin(0x2000, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer guest.Release()
	const n = 20000
	var wg sync.WaitGroup
	for _, w := range []struct {
		r   *Region
		off int
	}{{dev, 2}, {guest, 0}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				v, err := w.r.Load16(w.off)
				if err == nil {
					err = w.r.Store16(w.off, v+1)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if a, b := binary.LittleEndian.Uint16(mem[0x2000:]), binary.LittleEndian.Uint16(mem[0x2002:]); a != n%65536 || b != n%65536 {
		t.Errorf("halves = %d, %d; want %d each", a, b, n%65536)
	}
}

// TestRegion_UsedRingPublication is the virtio used-ring protocol between
// a device goroutine and a driver goroutine: the device writes an entry
// with WriteAt, then publishes it with Store16 of idx (a release); the
// driver loads idx (an acquire) and then reads the entry. Under -race a
// missing happens-before edge is reported; without it a torn entry is.
func TestRegion_UsedRingPublication(t *testing.T) {
	const qsz, n = 16, 5000
	mem := make([]byte, 64<<10)
	c := small(t, FromBytes(mem), 4, 1)
	defer c.Close()
	// struct virtq_used: le16 flags, le16 idx, {le32 id, le32 len}[qsz].
	dev, err := c.Pin(0x1000, 4+8*qsz)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Release()
	drv, err := c.Pin(0x1000, 4+8*qsz)
	if err != nil {
		t.Fatal(err)
	}
	defer drv.Release()
	consumed := make(chan uint16, qsz)
	go func() {
		var e [8]byte
		for i := range uint32(n) {
			if i >= qsz {
				<-consumed // the driver freed a slot
			}
			binary.LittleEndian.PutUint32(e[:], i)
			binary.LittleEndian.PutUint32(e[4:], ^i)
			if _, err := dev.WriteAt(e[:], int64(4+8*(i%qsz))); err != nil {
				t.Error(err)
				return
			}
			if err := dev.Store16(2, uint16(i+1)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var last uint16
	var e [8]byte
	for last != n {
		idx, err := drv.Load16(2)
		if err != nil {
			t.Fatal(err)
		}
		for ; last != idx; last++ {
			if _, err := drv.ReadAt(e[:], int64(4+8*(uint32(last)%qsz))); err != nil {
				t.Fatal(err)
			}
			id, l := binary.LittleEndian.Uint32(e[:]), binary.LittleEndian.Uint32(e[4:])
			if id != uint32(last) || l != ^id {
				t.Fatalf("entry %d = id %d len %#x: read before it was published", last, id, l)
			}
			select {
			case consumed <- last:
			default:
			}
		}
	}
}

// TestRegion_RingSurvivesInvalidate: a ring pinned before an INVALIDATE
// keeps working on the page it pinned; the cache maps afresh for new
// accesses; releasing the pin after the INVALIDATE unmaps it, leaving no
// mapping behind.
func TestRegion_RingSurvivesInvalidate(t *testing.T) {
	mem := make([]byte, 64<<10)
	fm := FromBytes(mem)
	c := small(t, fm, 4, 1)
	defer c.Close()
	ring, err := c.Pin(0x1000, 0x100)
	if err != nil {
		t.Fatal(err)
	}
	other, err := c.Pin(0x1000, 0x10) // a second pin of the same bucket
	if err != nil {
		t.Fatal(err)
	}
	if got := fm.Maps(); got != 1 {
		t.Fatalf("maps = %d, want 1 (two pins share the bucket)", got)
	}
	c.Invalidate()
	if got := fm.Live(); got != 1 {
		t.Errorf("live mappings after Invalidate = %d, want 1 (pinned, deferred)", got)
	}
	if err := ring.Store16(2, 42); err != nil {
		t.Fatalf("Store16 after Invalidate: %v", err)
	}
	if v, err := ring.Load16(2); err != nil || v != 42 || binary.LittleEndian.Uint16(mem[0x1002:]) != 42 {
		t.Errorf("Load16 after Invalidate = %d, %v; guest sees %d", v, err, binary.LittleEndian.Uint16(mem[0x1002:]))
	}
	// A copy after Invalidate maps the bucket afresh.
	var b [2]byte
	if err := c.Read(0x1002, b[:]); err != nil || b != [2]byte{42, 0} {
		t.Errorf("Read after Invalidate = %v, %v", b, err)
	}
	if got := fm.Maps(); got != 2 {
		t.Errorf("maps = %d, want 2 (the pinned bucket left the table)", got)
	}
	ring.Release()
	if got := fm.Live(); got != 2 {
		t.Errorf("live = %d after one of two pins released, want 2", got)
	}
	other.Release()
	if got := fm.Live(); got != 1 {
		t.Errorf("live = %d after the last pin's release, want 1 (only the fresh bucket)", got)
	}
	c.Invalidate()
	if got := fm.Live(); got != 0 {
		t.Errorf("live = %d at the end, want 0: a mapping leaked", got)
	}
}

// BenchmarkRegion_Ring measures the ring-index operations of a virtqueue
// on a pinned region with a dirty log, and the copy-out of a used entry.
func BenchmarkRegion_Ring(b *testing.B) {
	log, err := NewDirtyLog(8 << 20)
	if err != nil {
		b.Fatal(err)
	}
	c, err := NewMapCache(FromBytes(make([]byte, 8<<20)), MapCacheConfig{Dirty: log})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r, err := c.Pin(0x10000, PageSize)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Release()
	e := make([]byte, 8)
	for _, bm := range []struct {
		name string
		f    func(i int) error
	}{
		{"load16", func(int) error { _, err := r.Load16(2); return err }},
		{"store16", func(i int) error { return r.Store16(2, uint16(i)) }},
		{"load32", func(int) error { _, err := r.Load32(4); return err }},
		{"store32", func(i int) error { return r.Store32(4, uint32(i)) }},
		{"store64", func(i int) error { return r.Store64(8, uint64(i)) }},
		{"writeat/8", func(int) error { _, err := r.WriteAt(e, 16); return err }},
		{"used-elem+idx", func(i int) error {
			if _, err := r.WriteAt(e, int64(4+8*(i%256))); err != nil {
				return err
			}
			return r.Store16(2, uint16(i))
		}},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := bm.f(i); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
