package virtioblk

import (
	"encoding/binary"
	"testing"
	"time"
)

// FuzzRequest runs one request whose header and descriptor chain come
// from the input: the device either completes it (a status the spec
// defines, every writable byte counted) or declares itself broken; it
// never hangs or crashes, and a reset brings it back.
func FuzzRequest(f *testing.F) {
	f.Add(hdr(tIn, 3), []byte{0, 16, 0, 1, 0x10, 0x02, 1, 2, 0x01, 0x00})
	f.Add(hdr(tOut, 1), []byte{0, 16, 0, 0, 0x02, 0x00, 2, 1, 0x00})
	f.Add(hdr(tWriteZeroes, 0), []byte{0, 16, 0, 0, 16, 0, 2, 1, 0x00})
	f.Add(hdr(tGetID, 0), []byte{0, 16, 0, 1, 20, 0, 2, 1, 0})
	// One rig for the whole run (an image and guest memory per input
	// cost more than the input): reset and rings cleared each time.
	r := newRig(f, false)
	f.Fuzz(func(t *testing.T, h []byte, layout []byte) {
		r.t = t
		r.out(18, 1, 0)
		r.avail, r.nextD = 0, 0
		if r.ar.Store16(2, 0) != nil || r.ur.Store16(2, 0) != nil {
			t.Fatal("rings")
		}
		r.legacy(1<<28 | 1<<29)
		h16 := make([]byte, 16)
		copy(h16, h)
		r.put(bufBase, h16)
		// Payload for discard/write-zeroes segments: a small range.
		r.put(bufBase+0x1000, []byte{1, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0})
		// Each segment: base selector, length (2 bytes, up to 64 KiB),
		// write flag.
		var segs []seg
		for len(layout) >= 4 && len(segs) < 12 {
			base := []uint64{bufBase, bufBase + 0x1000, bufBase + 0x20000, memSize - 0x100, 1 << 40}[int(layout[0])%5]
			l := uint32(binary.LittleEndian.Uint16(layout[1:3]))
			segs = append(segs, seg{base, l, layout[3]&1 != 0})
			layout = layout[4:]
		}
		if len(segs) == 0 {
			return
		}
		var in uint64
		for _, s := range segs {
			if s.write {
				in += uint64(s.l)
			}
		}
		r.chain(segs...)
		r.kick()
		deadline := time.Now().Add(10 * time.Second)
		for {
			v, _ := r.ur.Load16(2)
			if v == 1 {
				_, l := r.used(0)
				if uint64(l) != in {
					t.Fatalf("used len %d, want %d", l, in)
				}
				break
			}
			if r.d.Transport().Broken() && !r.d.Busy() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("request neither completed nor broke the device")
			}
			time.Sleep(20 * time.Microsecond)
		}
		r.out(18, 1, 0)
		if r.d.Transport().Broken() || r.d.Busy() {
			t.Fatal("reset left the device broken or busy")
		}
	})
}
