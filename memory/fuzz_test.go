package memory

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzMapCache runs random access scripts (read, write, pin, release,
// invalidate) against a small MapCache over a FakeMapper with holes, and
// checks them against a plain byte-slice model.
func FuzzMapCache(f *testing.F) {
	f.Add([]byte{0x12, 0x05, 0, 0x00, 0x10, 0, 0x40, 1, 0x10, 0x00, 0x20, 0x01, 2, 0x00, 0x3f, 0x00, 0x30, 4, 0, 0, 0, 0, 3, 0, 0, 0, 0})
	f.Add([]byte{0x31, 0xff, 2, 0xf0, 0x3f, 0x20, 0x00, 2, 0xf0, 0x7f, 0x20, 0x00, 0, 0x00, 0x00, 0xff, 0xff, 4, 0, 0, 0, 0})
	f.Add([]byte{0x01, 0x00, 1, 0xff, 0xff, 0xff, 0x0f, 0, 0x00, 0xe0, 0x00, 0x40})
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) < 2 {
			return
		}
		const memSize = 24 * PageSize // 6 buckets of 4 pages
		mem := pattern(memSize)
		ref := bytes.Clone(mem)
		fm := FromBytes(mem)
		holes := map[uint64]bool{}
		// script[1]: up to 8 hole pages among the first 24+4
		for i := range 8 {
			if script[1]&(1<<i) != 0 {
				g := uint64(i*3+1) % 28
				fm.SetHole(g, true, nil)
				holes[g] = true
			}
		}
		ways := 1 + int(script[0]&3)
		c := small(t, fm, ways*(1+int(script[0]>>2&3)), ways)
		script = script[2:]
		okRange := func(g GPA, n int) bool {
			gpa := uint64(g)
			if n == 0 {
				return true
			}
			if gpa+uint64(n)-1 < gpa || gpa+uint64(n) > memSize {
				return false
			}
			for g := gpa / PageSize; g <= (gpa+uint64(n)-1)/PageSize; g++ {
				if holes[g] {
					return false
				}
			}
			return true
		}
		var pins []*Region
		buf := make([]byte, 3*16<<10)
		for len(script) >= 5 {
			op := script[0] % 5
			a := binary.LittleEndian.Uint16(script[1:])
			n := int(binary.LittleEndian.Uint16(script[3:])) % len(buf)
			script = script[5:]
			gpa := uint64(a) * 4 // 0..256 KiB: inside and beyond memory
			if a == 0xffff {
				gpa = ^uint64(0) - 7 // wrapping
			}
			switch op {
			case 0: // read
				err := c.Read(GPA(gpa), buf[:n])
				if ok := okRange(GPA(gpa), n); ok != (err == nil) {
					t.Fatalf("Read(%#x, %d) = %v, model says ok=%v", gpa, n, err, ok)
				}
				if err == nil && n > 0 && !bytes.Equal(buf[:n], ref[gpa:gpa+uint64(n)]) {
					t.Fatalf("Read(%#x, %d) returned wrong bytes", gpa, n)
				}
				if err != nil && !errors.Is(err, ErrUnmapped) {
					t.Fatalf("Read error %v does not wrap ErrUnmapped", err)
				}
			case 1: // write
				for i := range buf[:n] {
					buf[i] = byte(a) + byte(i)
				}
				err := c.Write(GPA(gpa), buf[:n])
				ok := okRange(GPA(gpa), n)
				if ok != (err == nil) {
					t.Fatalf("Write(%#x, %d) = %v, model says ok=%v", gpa, n, err, ok)
				}
				if ok && n > 0 {
					copy(ref[gpa:], buf[:n])
				} else if gpa < memSize {
					// A failed write may have transferred a prefix.
					end := min(memSize, gpa+uint64(n))
					copy(ref[gpa:end], mem[gpa:end])
				}
				if !bytes.Equal(mem, ref) {
					t.Fatalf("Write(%#x, %d) changed memory outside its range", gpa, n)
				}
			case 2: // pin
				r, err := c.Pin(GPA(gpa), n)
				if ok := okRange(GPA(gpa), n) && n > 0; ok != (err == nil) {
					t.Fatalf("Pin(%#x, %d) = %v, model says ok=%v", gpa, n, err, ok)
				}
				if err == nil {
					var got []byte
					for _, s := range r.Segments() {
						got = append(got, s...)
					}
					if !bytes.Equal(got, ref[gpa:gpa+uint64(n)]) {
						t.Fatalf("Pin(%#x, %d) segments differ from memory", gpa, n)
					}
					pins = append(pins, r)
				}
			case 3: // release
				if len(pins) > 0 {
					i := int(a) % len(pins)
					pins[i].Release()
					pins = append(pins[:i], pins[i+1:]...)
				}
			case 4:
				c.Invalidate()
			}
		}
		for _, r := range pins {
			r.Release()
		}
		c.Invalidate()
		if got := fm.Live(); got != 0 {
			t.Fatalf("%d mappings live at the end, want 0", got)
		}
		if st := c.Stats(); st.Live != 0 || st.UnmapErrors != 0 {
			t.Fatalf("Stats() = %+v", st)
		}
	})
}

// FuzzMapCacheStale checks when p2m changes become visible: a bucket keeps
// the holes it had when it was mapped until Invalidate. The cache is large
// enough never to evict, so the model knows exactly when each bucket is
// mapped (at the first access after an Invalidate, in address order, up to
// the first failing bucket).
func FuzzMapCacheStale(f *testing.F) {
	f.Add([]byte{0, 0x10, 0x00, 0x20, 1, 0x05, 0, 0, 0x10, 0x00, 0x20, 2, 0, 0, 0, 0x10, 0x00, 0x20})
	f.Add([]byte{3, 0x00, 0x00, 0xff, 1, 0x02, 0, 3, 0x00, 0x00, 0xff, 4, 0, 0, 2, 0, 0, 3, 0x00, 0x00, 0xff})
	f.Fuzz(func(t *testing.T, script []byte) {
		const (
			shift   = 14
			bpages  = 1 << (shift - 12)
			memSize = 16 << shift // 16 buckets
		)
		mem := pattern(memSize)
		fm := FromBytes(mem)
		c := small(t, fm, 64, 4)             // 16 sets of 4 ways: no evictions here
		holes := map[uint64]bool{}           // current p2m holes (gfn)
		snap := map[uint64]map[uint64]bool{} // bucket -> holes when mapped
		// touch mirrors the cache walking [gpa, gpa+n): it maps buckets
		// in order and reports whether the access succeeds.
		touch := func(g GPA, n int) bool {
			gpa := uint64(g)
			if n == 0 {
				return true
			}
			if gpa+uint64(n)-1 < gpa {
				return false
			}
			for b := gpa >> shift; b <= (gpa+uint64(n)-1)>>shift; b++ {
				h, ok := snap[b]
				if !ok {
					h = map[uint64]bool{}
					for g := b * bpages; g < (b+1)*bpages; g++ {
						if holes[g] || g >= memSize/PageSize {
							h[g] = true
						}
					}
					snap[b] = h
				}
				lo, hi := max(gpa, b<<shift), min(gpa+uint64(n)-1, (b+1)<<shift-1)
				for g := lo / PageSize; g <= hi/PageSize; g++ {
					if h[g] {
						return false
					}
				}
			}
			return true
		}
		var pins []*Region
		buf := make([]byte, 3<<shift)
		for len(script) >= 4 {
			op := script[0] % 5
			a := uint64(binary.LittleEndian.Uint16(script[1:]))
			n := int(script[3]) * 128
			script = script[4:]
			gpa := a * 4 % (memSize + 2<<shift) // a little beyond memory too
			switch op {
			case 0: // read
				err := c.Read(GPA(gpa), buf[:n])
				if want := touch(GPA(gpa), n); want != (err == nil) {
					t.Fatalf("Read(%#x, %d) = %v, model says ok=%v", gpa, n, err, want)
				}
			case 1: // toggle a hole in the p2m (seen only after Invalidate)
				g := a % (memSize / PageSize)
				holes[g] = !holes[g]
				fm.SetHole(g, holes[g], nil)
			case 2:
				c.Invalidate()
				clear(snap)
				// Pinned buckets are detached: not in the table any more.
			case 3: // pin, at most 3 at a time (the ways stay free)
				if len(pins) >= 3 || n == 0 {
					continue
				}
				r, err := c.Pin(GPA(gpa), n)
				if want := touch(GPA(gpa), n); want != (err == nil) {
					t.Fatalf("Pin(%#x, %d) = %v, model says ok=%v", gpa, n, err, want)
				}
				if err == nil {
					pins = append(pins, r)
				}
			case 4:
				if len(pins) > 0 {
					pins[0].Release()
					pins = pins[1:]
				}
			}
		}
		for _, r := range pins {
			r.Release()
		}
		if st := c.Stats(); st.Evictions != 0 || st.Private != 0 {
			t.Fatalf("model assumption broken: %+v", st)
		}
		c.Invalidate()
		if got := fm.Live(); got != 0 {
			t.Fatalf("%d mappings live at the end", got)
		}
	})
}
