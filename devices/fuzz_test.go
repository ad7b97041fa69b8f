package devices

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// modelRange is one range of the reference model.
type modelRange struct {
	base, last uint64
	h          *regDev
}

// model is the obviously-correct reference the Space is checked against:
// an unsorted list scanned linearly.
type model struct{ ranges []modelRange }

func (m *model) overlaps(base, last uint64, skip int) bool {
	for i, r := range m.ranges {
		if i != skip && base <= r.last && r.base <= last {
			return true
		}
	}
	return false
}

func (m *model) at(base uint64) int {
	for i, r := range m.ranges {
		if r.base == base {
			return i
		}
	}
	return -1
}

func (m *model) lookup(addr uint64, size uint8) *modelRange {
	if size != 1 && size != 2 && size != 4 && size != 8 {
		return nil
	}
	last := addr + uint64(size) - 1
	if last < addr {
		return nil
	}
	for i := range m.ranges {
		if r := &m.ranges[i]; r.base <= addr && last <= r.last {
			return r
		}
	}
	return nil
}

// fuzzAddr maps a 16-bit script value into interesting regions: low ports,
// around the 64K boundary of the direct index, and the top of the space.
func fuzzAddr(v uint16) uint64 {
	switch v >> 14 {
	case 0, 1:
		return uint64(v & 0x7fff)
	case 2:
		return 0x10000 - 0x800 + uint64(v&0xfff)
	}
	return ^uint64(0) - uint64(v&0xfff)
}

// FuzzSpace runs random register/unregister/move/access scripts against a
// Space (with and without the direct index) and the reference model.
func FuzzSpace(f *testing.F) {
	f.Add([]byte{0, 0x10, 0, 0x8, 0, 3, 0x10, 0, 1, 3, 0x17, 0, 2})
	f.Add([]byte{0, 0xf0, 0xbf, 0x0, 0x10, 2, 0xf0, 0xbf, 0x00, 0x80, 3, 0xfe, 0xbf, 4})
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0x0f, 3, 0xff, 0xff, 8, 1, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, script []byte) {
		for _, direct := range []bool{false, true} {
			runSpaceScript(t, script, direct)
		}
	})
}

// xenModel is a listener that behaves like Xen's rangeset of one ioreq
// server (xen/common/rangeset.c, xen/common/ioreq.c): a claim that
// overlaps a held address is rejected (the test fails: the Space must
// never ask for one), adjacent claims merge, a release must lie inside
// one held interval (Xen answers ENOENT otherwise: the test fails) and
// splits it. Some claims are refused outright, to exercise the failure
// paths.
type xenModel struct {
	t   *testing.T
	ivs []interval // sorted, disjoint, non-adjacent
}

type interval struct{ s, e uint64 } // inclusive

// refuses reports whether the model refuses [base, base+size).
func refuses(base, size uint64) bool { return (base^size)&0x3f == 0x3f }

func (x *xenModel) RangeAdded(_ *Space, base, size uint64) error {
	e := base + size - 1
	for _, iv := range x.ivs {
		if base <= iv.e && iv.s <= e {
			x.t.Fatalf("listener asked to add [%#x+%#x] overlapping held [%#x-%#x]", base, size, iv.s, iv.e)
		}
	}
	if refuses(base, size) {
		return errRefused
	}
	x.ivs = mergeIntervals(append(x.ivs, interval{base, e}))
	return nil
}

func (x *xenModel) RangeRemoved(_ *Space, base, size uint64) {
	e := base + size - 1
	for i, iv := range x.ivs {
		if iv.s <= base && e <= iv.e {
			var rest []interval
			if iv.s < base {
				rest = append(rest, interval{iv.s, base - 1})
			}
			if e < iv.e {
				rest = append(rest, interval{e + 1, iv.e})
			}
			x.ivs = append(x.ivs[:i:i], append(rest, x.ivs[i+1:]...)...)
			return
		}
	}
	x.t.Fatalf("listener asked to remove [%#x+%#x], not inside one held interval (held: %#x)", base, size, x.ivs)
}

// claimedByMove is the part of [newBase, newLast] a move from [oldBase,
// oldLast] claims: all of it, or only the part outside the old range when
// they overlap.
func claimedByMove(oldBase, oldLast, newBase, newLast uint64) (base, size uint64) {
	switch {
	case newBase > oldLast || newLast < oldBase:
		return newBase, newLast - newBase + 1
	case newBase < oldBase:
		return newBase, oldBase - newBase
	default:
		return oldLast + 1, newLast - oldLast
	}
}

// mergeIntervals sorts intervals and merges overlapping or adjacent ones.
func mergeIntervals(ivs []interval) []interval {
	slices.SortFunc(ivs, func(a, b interval) int { return cmp.Compare(a.s, b.s) })
	var out []interval
	for _, iv := range ivs {
		if n := len(out); n > 0 && (out[n-1].e == ^uint64(0) || iv.s <= out[n-1].e+1) {
			out[n-1].e = max(out[n-1].e, iv.e)
			continue
		}
		out = append(out, iv)
	}
	return out
}

func runSpaceScript(t *testing.T, script []byte, direct bool) {
	s := NewSpace("fuzz")
	s.direct = direct
	xen := &xenModel{t: t}
	if err := s.Attach(xen); err != nil {
		t.Fatal(err)
	}
	var m model
	var misses Stats
	devs := 0
	for len(script) >= 5 {
		op := script[0] % 4
		a := fuzzAddr(binary.LittleEndian.Uint16(script[1:]))
		arg := binary.LittleEndian.Uint16(script[3:])
		script = script[5:]
		switch op {
		case 0: // register
			size := uint64(arg & 0x1fff)
			if arg&0x8000 != 0 {
				size = ^uint64(0) - uint64(arg&0xff) // huge: overflow or overlap
			}
			devs++
			d := &regDev{id: uint64(devs)}
			err := s.Register(a, size, d)
			last := a + size - 1
			var want error
			switch {
			case size == 0:
				want = ErrZeroSize
			case last < a:
				want = ErrOverflow
			case m.overlaps(a, last, -1):
				want = ErrOverlap
			case refuses(a, size):
				want = ErrListener
			}
			if !errors.Is(err, want) || (err == nil) != (want == nil) {
				t.Fatalf("Register(%#x, %#x) = %v, want %v", a, size, err, want)
			}
			if err == nil {
				m.ranges = append(m.ranges, modelRange{a, last, d})
			}
		case 1: // unregister an existing range (by index) or a random base
			base := a
			if len(m.ranges) > 0 && arg&1 == 0 {
				base = m.ranges[int(arg>>1)%len(m.ranges)].base
			}
			err := s.Unregister(base)
			i := m.at(base)
			if (i < 0) != errors.Is(err, ErrNotFound) || (i >= 0) != (err == nil) {
				t.Fatalf("Unregister(%#x) = %v, model index %d", base, err, i)
			}
			if i >= 0 {
				m.ranges = append(m.ranges[:i], m.ranges[i+1:]...)
			}
		case 2: // move an existing range to a
			if len(m.ranges) == 0 {
				continue
			}
			i := int(arg) % len(m.ranges)
			r := m.ranges[i]
			err := s.Move(r.base, a)
			last := a + (r.last - r.base)
			var want error
			switch {
			case a == r.base:
			case last < a:
				want = ErrOverflow
			case m.overlaps(a, last, i):
				want = ErrOverlap
			case refuses(claimedByMove(r.base, r.last, a, last)):
				want = ErrListener
			}
			if !errors.Is(err, want) || (err == nil) != (want == nil) {
				t.Fatalf("Move(%#x, %#x) = %v, want %v", r.base, a, err, want)
			}
			if err == nil {
				m.ranges[i].base, m.ranges[i].last = a, last
			}
		case 3: // access
			size := uint8(arg)
			if arg&0x100 == 0 {
				size = 1 << (arg & 3)
			}
			r := m.lookup(a, size)
			got := s.Read(a, size, 0)
			want := SizeMask(size)
			if r != nil {
				want = (r.h.id<<32 | (a-r.base)<<8 | uint64(size)) & SizeMask(size)
			} else {
				misses.ReadMisses++
			}
			if got != want {
				t.Fatalf("Read(%#x, %d) = %#x, want %#x (model range %+v)", a, size, got, want, r)
			}
			s.Write(a, size, 0, uint64(arg)<<20|0xabcdef)
			if r == nil {
				misses.WriteMisses++
			} else if got, want := r.h.last.Load(), (uint64(arg)<<20|0xabcdef)&SizeMask(size); got != want {
				t.Fatalf("Write(%#x, %d) stored %#x, want %#x", a, size, got, want)
			}
		}
	}
	if got := s.Stats(); got != misses {
		t.Fatalf("Stats() = %+v, want %+v", got, misses)
	}
	got := s.Ranges()
	// What Xen holds is exactly what is registered (adjacent ranges merge
	// in a rangeset).
	var want []interval
	for _, r := range got {
		want = append(want, interval{r.Base, r.Base + r.Size - 1})
	}
	if want = mergeIntervals(want); fmt.Sprint(xen.ivs) != fmt.Sprint(want) {
		t.Fatalf("listener holds %#x, space has %#x", xen.ivs, want)
	}
	if len(got) != len(m.ranges) {
		t.Fatalf("Ranges() has %d ranges, model %d", len(got), len(m.ranges))
	}
	for i := 1; i < len(got); i++ {
		if got[i-1].Base+got[i-1].Size-1 >= got[i].Base {
			t.Fatalf("Ranges() not sorted and disjoint: %+v", got)
		}
	}
}

// FuzzConfigSpace runs register/unregister/access scripts against a
// ConfigSpace and a map model.
func FuzzConfigSpace(f *testing.F) {
	f.Add([]byte{0, 0x08, 0, 0, 0, 2, 0x08, 0, 0x10, 4, 2, 0x08, 0, 0xfe, 0x0f, 1, 0x08, 0, 0, 0})
	f.Add([]byte{0, 0xff, 0xff, 0, 0, 2, 0xff, 0xff, 0xff, 0x0f, 2, 0x00, 0x01, 0x00, 0x10})
	f.Fuzz(func(t *testing.T, script []byte) {
		c := NewConfigSpace()
		model := map[SBDF]*regDev{}
		var misses Stats
		for len(script) >= 5 {
			op := script[0] % 3
			sbdf := SBDF(binary.LittleEndian.Uint16(script[1:])) // segment 0
			arg := binary.LittleEndian.Uint16(script[3:])
			script = script[5:]
			switch op {
			case 0:
				d := &regDev{id: uint64(sbdf) + 1}
				err := c.Register(sbdf, d)
				if _, dup := model[sbdf]; dup != errors.Is(err, ErrOverlap) || !dup && err != nil {
					t.Fatalf("Register(%v) = %v, duplicate %v", sbdf, err, dup)
				}
				if err == nil {
					model[sbdf] = d
				}
			case 1:
				err := c.Unregister(sbdf)
				if _, ok := model[sbdf]; ok != (err == nil) {
					t.Fatalf("Unregister(%v) = %v, registered %v", sbdf, err, ok)
				}
				delete(model, sbdf)
			case 2:
				reg := uint32(arg & 0x1fff)
				size := uint8(1) << (arg >> 13 & 3)
				if arg&0x8000 != 0 {
					size = uint8(arg >> 13)
				}
				d := model[sbdf]
				hit := d != nil && validSize(size) && uint64(reg)+uint64(size) <= ConfigSize
				want := SizeMask(size)
				if hit {
					want = (d.id<<32 | uint64(reg)<<8 | uint64(size)) & SizeMask(size)
				} else {
					misses.ReadMisses++
					misses.WriteMisses++
				}
				if got := c.Read(sbdf, reg, size, 0); got != want {
					t.Fatalf("Read(%v, %#x, %d) = %#x, want %#x", sbdf, reg, size, got, want)
				}
				c.Write(sbdf, reg, size, 0, 0x1234_5678_9abc_def0)
				if hit && d.last.Load() != 0x1234_5678_9abc_def0&SizeMask(size) {
					t.Fatalf("Write(%v, %#x, %d) stored %#x", sbdf, reg, size, d.last.Load())
				}
			}
		}
		if got := c.Stats(); got != misses {
			t.Fatalf("Stats() = %+v, want %+v", got, misses)
		}
		if got, want := len(c.Functions()), len(model); got != want {
			t.Fatalf("%d functions, model %d", got, want)
		}
	})
}
