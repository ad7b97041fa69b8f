package devicetest

import (
	"fmt"
	"io"
	"slices"
	"testing"

	"godm/devices"
)

// sizes are the access widths a guest can issue.
var sizes = [...]uint8{1, 2, 4, 8}

// writeValues are written at every offset and size by the write sweep.
var writeValues = [...]uint64{0, ^uint64(0), 0x5a5a_a5a5_0f0f_f0f0, 0x8000_0000_0000_0001}

// Run checks newHandler's devices over a range of size bytes (offsets
// 0..size-1; Access.Addr equals Access.Offset). newHandler must return a
// fresh device on every call; devices that implement io.Closer are closed
// when the test ends.
//
// Checks:
//   - no Read or Write panics, at any offset and size that fit in the range;
//   - every Read returns a value with no bits above its size;
//   - if the device implements devices.Resetter, the sequence of values
//     read after Reset is the same for a fresh device and for one the
//     sweep has scribbled on, and Reset twice gives the same values again
//     ("stable reset state"). Reads may have side effects; they are
//     compared as a deterministic sequence. Reads touching bytes a
//     devices.ResetKeeper keeps over Reset are left out of the comparison.
func Run(t *testing.T, newHandler func() devices.Handler, size uint64) {
	t.Helper()
	if size == 0 {
		t.Fatal("devicetest.Run: size 0")
	}
	t.Run("masked", func(t *testing.T) {
		h := mustNew(t, newHandler)
		checkReads(t, h, size, "fresh")
		writeSweep(t, h, size)
		checkReads(t, h, size, "after writes")
	})
	t.Run("reset", func(t *testing.T) {
		if _, ok := mustNew(t, newHandler).(devices.Resetter); !ok {
			t.Skip("device does not implement devices.Resetter")
		}
		fresh := mustNew(t, newHandler)
		reset(t, fresh)
		want := readSweep(t, fresh, size)

		used := mustNew(t, newHandler)
		writeSweep(t, used, size)
		readSweep(t, used, size)
		reset(t, used)
		if got := readSweep(t, used, size); !slices.Equal(unkept(used, got, size), unkept(used, want, size)) {
			t.Errorf("state after Reset depends on history: %s", firstDiff(got, want, size))
		}
		reset(t, fresh)
		if got := readSweep(t, fresh, size); !slices.Equal(got, want) {
			t.Errorf("state after a second Reset differs: %s", firstDiff(got, want, size))
		}
	})
}

// mustNew makes a device and closes it at the end of the test if it is an
// io.Closer (devices with worker goroutines).
func mustNew(t *testing.T, newHandler func() devices.Handler) devices.Handler {
	t.Helper()
	h := newHandler()
	if h == nil {
		t.Fatal("newHandler returned nil")
	}
	if c, ok := h.(io.Closer); ok {
		t.Cleanup(func() {
			if err := c.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	return h
}

// access is one sweep step.
type access struct {
	off  uint64
	size uint8
}

// sweep returns every access of the range, in order.
func sweep(size uint64) []access {
	var as []access
	for off := uint64(0); off < size; off++ {
		for _, sz := range sizes {
			if size-off >= uint64(sz) {
				as = append(as, access{off, sz})
			}
		}
	}
	return as
}

func (a access) dev() devices.Access {
	return devices.Access{Addr: a.off, Offset: a.off, Size: a.size, VCPU: uint32(a.off % 3)}
}

// String formats a for failure messages.
func (a access) String() string { return fmt.Sprintf("[%#x size %d]", a.off, a.size) }

// read performs one read, turning a panic into a test failure.
func read(t *testing.T, h devices.Handler, a access) (v uint64) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Read%v panicked: %v", a, r)
		}
	}()
	return h.Read(a.dev())
}

func write(t *testing.T, h devices.Handler, a access, v uint64) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Write%v of %#x panicked: %v", a, v, r)
		}
	}()
	h.Write(a.dev(), v)
}

func reset(t *testing.T, h devices.Handler) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Reset panicked: %v", r)
		}
	}()
	h.(devices.Resetter).Reset()
}

func checkReads(t *testing.T, h devices.Handler, size uint64, when string) {
	t.Helper()
	bad := 0
	for _, a := range sweep(size) {
		if v := read(t, h, a); v&^devices.SizeMask(a.size) != 0 {
			if bad++; bad <= 5 {
				t.Errorf("%s: Read%v = %#x, has bits above size %d", when, a, v, a.size)
			}
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d unmasked reads in all", when, bad)
	}
}

func readSweep(t *testing.T, h devices.Handler, size uint64) []uint64 {
	t.Helper()
	as := sweep(size)
	vs := make([]uint64, len(as))
	for i, a := range as {
		vs[i] = read(t, h, a)
	}
	return vs
}

func writeSweep(t *testing.T, h devices.Handler, size uint64) {
	t.Helper()
	for _, a := range sweep(size) {
		for _, v := range writeValues {
			write(t, h, a, v&devices.SizeMask(a.size))
		}
	}
}

// unkept returns vs (one value per sweep access) with the reads that
// touch bytes h keeps over Reset zeroed.
func unkept(h devices.Handler, vs []uint64, size uint64) []uint64 {
	k, ok := h.(devices.ResetKeeper)
	if !ok {
		return vs
	}
	out := slices.Clone(vs)
	for i, a := range sweep(size) {
		for o := a.off; o < a.off+uint64(a.size); o++ {
			if k.KeptOnReset(o) {
				out[i] = 0
				break
			}
		}
	}
	return out
}

func firstDiff(got, want []uint64, size uint64) string {
	as := sweep(size)
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("read #%d %v = %#x, want %#x", i, as[i], got[i], want[i])
		}
	}
	return fmt.Sprintf("%d reads, want %d", len(got), len(want))
}
