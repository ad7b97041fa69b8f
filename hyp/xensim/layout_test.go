package xensim

import (
	"errors"
	"testing"

	"godm/memory"
	"godm/memory/layout"
)

// TestLayoutRAM: a domain created from a layout of more RAM than fits
// below the PCI hole has RAM below the hole and from 4 GiB up, and
// nothing in the VGA hole or the PCI hole: a vCPU access there is MMIO,
// forwarded to an ioreq server (here none: all-ones).
func TestLayoutRAM(t *testing.T) {
	l, err := layout.New(4096<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{})
	defer s.Close()
	d, err := s.CreateDomain(DomainConfig{VCPUs: 1, RAM: LayoutRAM(l)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		gpa uint64
		ram bool
	}{
		{0, true}, {0x9f000, true}, {0xa0000, false}, {0xbf000, false}, {0xc0000, true},
		{0xeffff000, true}, {0xf0000000, false}, {0xfffff000, false},
		{1 << 32, true}, {1<<32 + 256<<20 - 4096, true}, {1<<32 + 256<<20, false},
	} {
		b := []byte{0x5a}
		err := d.WriteRAM(tc.gpa, b)
		if tc.ram != (err == nil) {
			t.Errorf("WriteRAM(%#x) = %v, want RAM %v", tc.gpa, err, tc.ram)
		}
		if !tc.ram && !errors.Is(err, memory.ErrUnmapped) {
			t.Errorf("WriteRAM(%#x) = %v, want ErrUnmapped", tc.gpa, err)
		}
		if got, want := l.IsRAM(tc.gpa, 1), tc.ram; got != want {
			t.Errorf("layout says IsRAM(%#x) = %v, the domain %v", tc.gpa, got, want)
		}
		v, err := d.VCPU(0).MMIORead(tc.gpa, 1)
		if err != nil {
			t.Fatalf("MMIORead(%#x): %v", tc.gpa, err)
		}
		if want := map[bool]uint64{true: 0x5a, false: 0xff}[tc.ram]; v != want {
			t.Errorf("vCPU read at %#x = %#x, want %#x", tc.gpa, v, want)
		}
	}
}
