package nic

import (
	"sync/atomic"
	"testing"

	"godm/memory"
)

func TestPiece(t *testing.T) {
	for _, c := range []struct {
		off  uint64
		n    uint8
		want []uint8
	}{
		{0x11, 4, []uint8{1, 2, 1}}, {0x10, 4, []uint8{4}}, {0x10, 8, []uint8{4, 4}},
		{0x13, 2, []uint8{1, 1}}, {0x12, 3, []uint8{2, 1}}, {0, 1, []uint8{1}},
	} {
		var got []uint8
		for done := uint8(0); done < c.n; {
			l := Piece(c.off+uint64(done), c.n-done)
			got = append(got, l)
			done += l
		}
		if string(got) != string(c.want) {
			t.Errorf("%#x/%d: pieces %v, want %v", c.off, c.n, got, c.want)
		}
	}
}

func TestChecksum(t *testing.T) {
	// RFC 1071's example: 0001 f203 f4f5 f6f7 sums to 0x2ddf0, folded 0xddf2.
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if s := Sum(0, b); Fold(s) != 0xddf2 {
		t.Errorf("sum %#x fold %#x", s, Fold(s))
	}
	// Word by word, any length, any chaining over even pieces.
	long := make([]byte, 1501)
	for i := range long {
		long[i] = byte(i*37 + 11)
	}
	var ref uint64
	for i := 0; i+1 < len(long); i += 2 {
		ref += uint64(long[i])<<8 | uint64(long[i+1])
	}
	ref += uint64(long[1500]) << 8
	for _, n := range []int{0, 1, 2, 7, 8, 9, 100, 1500, 1501} {
		var r uint64
		for i := 0; i+1 < n; i += 2 {
			r += uint64(long[i])<<8 | uint64(long[i+1])
		}
		if n%2 == 1 {
			r += uint64(long[n-1]) << 8
		}
		if Fold(Sum(0, long[:n])) != Fold(r) {
			t.Errorf("length %d: %#x, want %#x", n, Fold(Sum(0, long[:n])), Fold(r))
		}
	}
	if Fold(Sum(Sum(0, long[:12]), long[12:])) != Fold(ref) {
		t.Error("chained sum")
	}
	if Sum(0, []byte{0xab}) != 0xab00 {
		t.Error("odd byte")
	}
	// FinishCsum: the field ends up making the range sum to 0xffff.
	f := []byte{1, 2, 3, 4, 0, 0, 5, 6, 7}
	FinishCsum(f, 0, 4)
	if Fold(Sum(0, f)) != 0xffff {
		t.Errorf("finished %x", f)
	}
	g := append([]byte(nil), f...)
	FinishCsum(g, 2, 7) // out of range: untouched
	if string(g) != string(f) {
		t.Error("out-of-range field written")
	}
}

func TestDMA(t *testing.T) {
	var errs atomic.Uint64
	d := DMA{Mem: memory.NewFlat(0, 4096), Errors: &errs}
	if !d.Write(100, []byte{1, 2, 3}) {
		t.Fatal("write")
	}
	p := []byte{9, 9, 9}
	if !d.Read(100, p) || p[2] != 3 {
		t.Fatalf("read %v", p)
	}
	if d.Read(8192, p) || p[0] != 0 || d.Write(8192, p) || errs.Load() != 2 {
		t.Errorf("unmapped: %v, %d errors", p, errs.Load())
	}
}
