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
		okRange := func(gpa GPA, n int) bool {
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
			gpa := GPA(a) * 4 // 0..256 KiB: inside and beyond memory
			if a == 0xffff {
				gpa = ^uint64(0) - 7 // wrapping
			}
			switch op {
			case 0: // read
				err := c.Read(gpa, buf[:n])
				if ok := okRange(gpa, n); ok != (err == nil) {
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
				err := c.Write(gpa, buf[:n])
				ok := okRange(gpa, n)
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
				r, err := c.Pin(gpa, n)
				if ok := okRange(gpa, n) && n > 0; ok != (err == nil) {
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
