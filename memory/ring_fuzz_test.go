package memory

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzRegionRing drives the ring-index accesses of a pinned Region with
// guest-chosen offsets and sizes (as a device would use values read from
// a hostile guest's rings) against a byte-slice model: an access succeeds
// exactly when it lies inside the region and is naturally aligned, a
// store changes exactly its bytes (little-endian) and marks their page
// dirty, a failed access changes nothing, and an INVALIDATE in between
// changes none of that; after the release nothing stays mapped.
func FuzzRegionRing(f *testing.F) {
	f.Add(uint16(0x1ff0), uint16(0x40), []byte{0x01, 0x02, 0x00, 0x12, 0x34, 0x41, 0x04, 0x00, 0x99, 0x80, 0x00})
	f.Add(uint16(0x0ffe), uint16(0x10), []byte{0x01, 0x00, 0xff, 0xff, 0x21, 0x01, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, at, n uint16, script []byte) {
		const memSize = 16 * PageSize
		mem := make([]byte, memSize)
		model := make([]byte, memSize)
		fm := FromBytes(mem)
		log, err := NewDirtyLog(memSize)
		if err != nil {
			t.Fatal(err)
		}
		c, err := NewMapCache(fm, MapCacheConfig{BucketShift: 13, MaxBytes: 8 << 13, Ways: 2, Dirty: log})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		gpa, size := uint64(at)%memSize, int(n)%512+1
		r, err := c.Pin(GPA(gpa), size)
		if gpa+uint64(size) > memSize {
			if err == nil {
				t.Fatalf("Pin(%#x, %d) beyond memory succeeded", gpa, size)
			}
			return
		}
		if err != nil {
			t.Fatalf("Pin(%#x, %d): %v", gpa, size, err)
		}
		for len(script) >= 3 {
			op, off := script[0], int(int8(script[1]))*4+int(script[2]&3)
			script = script[3:]
			if op == 0xff {
				c.Invalidate()
				continue
			}
			width := 2 << (op & 3 % 3) // 2, 4 or 8
			store := op&4 != 0
			v := uint64(op) * 0x0101010101010101
			ok := off >= 0 && off+width <= size && (gpa+uint64(off))%uint64(width) == 0
			var got uint64
			switch {
			case width == 2 && store:
				err = r.Store16(off, uint16(v))
			case width == 2:
				var x uint16
				x, err = r.Load16(off)
				got = uint64(x)
			case width == 4 && store:
				err = r.Store32(off, uint32(v))
			case width == 4:
				var x uint32
				x, err = r.Load32(off)
				got = uint64(x)
			case store:
				err = r.Store64(off, v)
			default:
				got, err = r.Load64(off)
			}
			if ok != (err == nil) {
				t.Fatalf("op %#x width %d at %d of [%#x+%d]: %v, model says ok=%v", op, width, off, gpa, size, err, ok)
			}
			if err != nil {
				if !errors.Is(err, ErrUnmapped) {
					t.Fatalf("error %v does not wrap ErrUnmapped", err)
				}
				continue
			}
			p := int(gpa) + off
			if store {
				var b [8]byte
				binary.LittleEndian.PutUint64(b[:], v)
				copy(model[p:p+width], b[:width])
				if !log.Dirty(uint64(p) / PageSize) {
					t.Fatalf("store at %#x not marked dirty", p)
				}
			} else {
				var b [8]byte
				copy(b[:], model[p:p+width])
				if want := binary.LittleEndian.Uint64(b[:]); got != want {
					t.Fatalf("load%d at %#x = %#x, want %#x", width*8, p, got, want)
				}
			}
			if !bytes.Equal(mem, model) {
				t.Fatalf("guest memory differs from the model after op %#x at %d", op, off)
			}
		}
		r.Release()
		c.Invalidate()
		if fm.Live() != 0 {
			t.Fatalf("%d mappings left after release and invalidate", fm.Live())
		}
	})
}
