package xensim_test

import (
	"bytes"
	"errors"
	"testing"

	"godm/hyp/hcall"
	"godm/hyp/privcmd"
	"godm/hyp/xensim"
	"godm/memory"
)

// A simulated save and restore brings back the RAM regions' contents,
// the pages the device model populated (at the same gfns, not counted as
// its populates) and the holes, and refuses a used or different domain.
func TestRestoreMemoryFrom(t *testing.T) {
	s := xensim.New(xensim.Config{})
	t.Cleanup(func() { s.Close() })
	ram := xensim.DomainConfig{VCPUs: 1, RAM: []xensim.Region{{GPA: 0, Size: 1 << 20}}}
	src, err := s.CreateDomain(ram)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := privcmd.Open(s.Kernel(0))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c := hcall.New(pc)
	if err := c.PopulatePhysmap(src.ID(), 0, 0, []uint64{0xe0000, 0xe0001}); err != nil {
		t.Fatal(err)
	}
	if err := src.WriteRAM(0x1000, []byte("low ram")); err != nil {
		t.Fatal(err)
	}
	if err := src.WriteRAM(0xe0001ff0, []byte("populated")); err != nil {
		t.Fatal(err)
	}
	if err := c.DecreaseReservation(src.ID(), 0, []uint64{0x10}); err != nil {
		t.Fatal(err)
	}
	dst, err := s.CreateDomain(ram)
	if err != nil {
		t.Fatal(err)
	}
	mark := s.LastSeq()
	if err := dst.RestoreMemoryFrom(src); err != nil {
		t.Fatal(err)
	}
	for _, e := range s.EventsSince(mark) {
		if e.Kind == xensim.EventPopulatePhysmap {
			t.Errorf("the restore counted as a populate: %+v", e)
		}
	}
	got := make([]byte, 9)
	if err := dst.ReadRAM(0xe0001ff0, got); err != nil || !bytes.Equal(got, []byte("populated")) {
		t.Errorf("populated page after restore: %q, %v", got, err)
	}
	if err := dst.ReadRAM(0x1000, got[:7]); err != nil || string(got[:7]) != "low ram" {
		t.Errorf("RAM after restore: %q, %v", got[:7], err)
	}
	if dst.IsRAMPage(0x10) || !dst.IsRAMPage(0xe0000) || dst.IsRAMPage(0xe0002) {
		t.Error("the restored p2m differs from the saved one")
	}
	// Separate copies: the source's later stores do not show.
	if err := src.WriteRAM(0xe0001ff0, []byte("X")); err != nil {
		t.Fatal(err)
	}
	if err := dst.ReadRAM(0xe0001ff0, got[:1]); err != nil || got[0] != 'p' {
		t.Errorf("restored page shares the source's: %q", got[:1])
	}
	if err := dst.ReadRAM(0x10000, got[:1]); !errors.Is(err, memory.ErrUnmapped) {
		t.Errorf("read of the hole: %v", err)
	}
	if err := dst.RestoreMemoryFrom(src); err == nil {
		t.Error("a second restore into a used domain was accepted")
	}
	other, err := s.CreateDomain(xensim.DomainConfig{VCPUs: 1, RAM: []xensim.Region{{GPA: 0, Size: 2 << 20}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.RestoreMemoryFrom(src); err == nil {
		t.Error("a restore into other RAM regions was accepted")
	}
}

// With MaxPages (libxl's maxmem) populate_physmap stops at the limit,
// having populated what fits, as Xen's does.
func TestPopulateMaxPages(t *testing.T) {
	s := xensim.New(xensim.Config{})
	t.Cleanup(func() { s.Close() })
	d, err := s.CreateDomain(xensim.DomainConfig{VCPUs: 1, RAM: []xensim.Region{{GPA: 0, Size: 1 << 20}}, MaxPages: 256 + 3})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := privcmd.Open(s.Kernel(0))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c := hcall.New(pc)
	if err := c.PopulatePhysmap(d.ID(), 0, 0, []uint64{0xe0000, 0xe0001, 0xe0002, 0xe0003, 0xe0004}); err == nil {
		t.Fatal("populating beyond MaxPages succeeded")
	}
	if !d.IsRAMPage(0xe0002) || d.IsRAMPage(0xe0003) {
		t.Error("not the first 3 pages populated")
	}
	// Freed pages make room again.
	if err := c.DecreaseReservation(d.ID(), 0, []uint64{0xe0000, 0xe0001}); err != nil {
		t.Fatal(err)
	}
	if err := c.PopulatePhysmap(d.ID(), 0, 0, []uint64{0xe0003, 0xe0004}); err != nil {
		t.Errorf("populate after a release: %v", err)
	}
}
