package devices

import (
	"fmt"
	"testing"
)

// nopDev is the cheapest possible handler, to measure the bus itself.
type nopDev struct{ v uint64 }

func (d *nopDev) Read(a Access) uint64     { return d.v + a.Offset }
func (d *nopDev) Write(a Access, v uint64) { d.v = v }

func TestSpace_ZeroAlloc(t *testing.T) {
	s := NewSpace("pio")
	mustRegister(t, s, 0x3f8, 8, &nopDev{})
	mustRegister(t, s, 0xcf8, 8, &nopDev{})
	m := NewSpace("mmio")
	mustRegister(t, m, 0xfee00000, 0x1000, &nopDev{})
	c := NewConfigSpace()
	if err := c.Register(NewSBDF(0, 0, 1, 0), &nopDev{}); err != nil {
		t.Fatal(err)
	}
	l := Locked(&nopDev{})
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"pio read hit", func() { s.Read(0x3f9, 1, 0) }},
		{"pio write hit", func() { s.Write(0xcfc, 4, 0, 1) }},
		{"pio read miss", func() { s.Read(0x80, 1, 0) }},
		{"pio write miss", func() { s.Write(0x80, 1, 0, 1) }},
		{"pio bad size", func() { s.Read(0x3f8, 3, 0) }},
		{"mmio read hit", func() { m.Read(0xfee00010, 4, 0) }},
		{"mmio write hit", func() { m.Write(0xfee00010, 4, 0, 1) }},
		{"mmio read miss", func() { m.Read(0xfed00000, 4, 0) }},
		{"mmio write miss", func() { m.Write(0xfed00000, 8, 0, 1) }},
		{"config read hit", func() { c.Read(NewSBDF(0, 0, 1, 0), 4, 2, 0) }},
		{"config write hit", func() { c.Write(NewSBDF(0, 0, 1, 0), 4, 2, 0, 7) }},
		{"config read miss", func() { c.Read(NewSBDF(0, 0, 2, 0), 0, 4, 0) }},
		{"config write miss", func() { c.Write(NewSBDF(0, 0, 2, 0), 0, 4, 0, 1) }},
		{"stats", func() { _ = s.Stats() }},
		{"locked read", func() { l.Read(Access{Size: 4}) }},
		{"locked write", func() { l.Write(Access{Size: 4}, 1) }},
	} {
		if got := testing.AllocsPerRun(100, tc.f); got != 0 {
			t.Errorf("%s: %v allocs per run, want 0", tc.name, got)
		}
	}
}

// pcLayout registers the port ranges of a typical PC: the PIO table the
// benchmarks below look up in.
func pcLayout(tb testing.TB, s *Space) {
	tb.Helper()
	for _, r := range [][2]uint64{
		{0x20, 2}, {0x40, 4}, {0x60, 1}, {0x61, 1}, {0x64, 1}, {0x70, 2}, {0x80, 1},
		{0x92, 1}, {0xa0, 2}, {0xb2, 2}, {0xf0, 1}, {0x1f0, 8}, {0x2f8, 8}, {0x3b0, 0x30},
		{0x3f6, 1}, {0x3f8, 8}, {0x4d0, 2}, {0x510, 2}, {0xcf8, 4}, {0xcfc, 4},
		{0xb000, 0x40}, {0xc000, 0x100}, {0xc100, 0x40}, {0xc140, 0x20},
	} {
		mustRegister(tb, s, r[0], r[1], &nopDev{})
	}
}

// BenchmarkSpace measures one bus lookup plus a trivial handler call, for
// the binary-search table and the direct 64K index.
func BenchmarkSpace(b *testing.B) {
	for _, direct := range []bool{false, true} {
		s := NewSpace("pio")
		s.direct = direct
		pcLayout(b, s)
		name := "bsearch"
		if direct {
			name = "direct"
		}
		for _, port := range []uint64{0x3f8, 0xcfc, 0xc140, 0x3000} {
			b.Run(fmt.Sprintf("%s/read/%#x", name, port), func(b *testing.B) {
				b.ReportAllocs()
				var sum uint64
				for b.Loop() {
					sum += s.Read(port, 1, 0)
				}
				_ = sum
			})
		}
		b.Run(name+"/write/0xcf8", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Write(0xcf8, 4, 0, 0x80000000)
			}
		})
	}
}

// BenchmarkSpaceMMIO looks up in a table of 64 MMIO ranges.
func BenchmarkSpaceMMIO(b *testing.B) {
	s := NewSpace("mmio")
	for i := range uint64(64) {
		mustRegister(b, s, 0xf0000000+i*0x10000, 0x1000, &nopDev{})
	}
	b.ReportAllocs()
	var sum uint64
	for b.Loop() {
		sum += s.Read(0xf0250010, 4, 0)
	}
	_ = sum
}

func BenchmarkConfigSpace(b *testing.B) {
	c := NewConfigSpace()
	for d := range uint8(32) {
		if err := c.Register(NewSBDF(0, 0, d, 0), &nopDev{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	var sum uint64
	for b.Loop() {
		sum += c.Read(NewSBDF(0, 0, 17, 0), 0x10, 4, 0)
	}
	_ = sum
}

// BenchmarkSpace_Rebuild measures a Move on the PC port layout (one table
// rebuild, as for a PCI I/O BAR relocation).
func BenchmarkSpace_Rebuild(b *testing.B) {
	s := NewSpace("pio")
	pcLayout(b, s)
	b.ReportAllocs()
	at, to := uint64(0xc140), uint64(0xd000)
	for b.Loop() {
		if err := s.Move(at, to); err != nil {
			b.Fatal(err)
		}
		at, to = to, at
	}
}

// BenchmarkSpaceParallel looks up from all CPUs at once (one ioreq worker
// per vCPU): hits share only read-only cache lines; misses share the miss
// counter.
func BenchmarkSpaceParallel(b *testing.B) {
	s := NewSpace("pio")
	pcLayout(b, s)
	for _, tc := range []struct {
		name string
		port uint64
	}{{"hit", 0x3f8}, {"miss", 0x3000}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var sum uint64
				for pb.Next() {
					sum += s.Read(tc.port, 1, 0)
				}
				_ = sum
			})
		})
	}
}
