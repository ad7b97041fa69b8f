package xensim_test

import (
	"testing"

	"godm/hyp/domctl"
	"godm/hyp/hcall"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"
)

// TestConformanceHcallDomctl drives the passthrough and memory hypercalls
// through godm's hyp/hcall and hyp/domctl packages.
func TestConformanceHcallDomctl(t *testing.T) {
	s := xensim.New(xensim.Config{})
	t.Cleanup(func() { s.Close() })
	d, err := s.CreateDomain(xensim.DomainConfig{VCPUs: 1, RAM: []xensim.Region{{GPA: 0, Size: 1 << 20}}})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := privcmd.Open(s.Kernel(0))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c := hcall.New(pc)
	if major, minor, err := c.XenVersion(); err != nil || major != 4 || minor != 17 {
		t.Fatalf("XenVersion = %d.%d, %v", major, minor, err)
	}
	dc, err := domctl.Open(c)
	if err != nil {
		t.Fatal(err)
	}
	info, err := dc.GetDomainInfo(d.ID())
	if err != nil || !info.HVM() || info.Domain != d.ID() {
		t.Fatalf("GetDomainInfo = %+v, %v", info, err)
	}
	pirq, err := c.MapGSI(d.ID(), 19, -1)
	if err != nil || pirq != 19 {
		t.Fatalf("MapGSI = %d, %v", pirq, err)
	}
	// The toolstack grants the guest the frames first (libxl_pci.c).
	if err := dc.IomemPermission(d.ID(), 0xfd000, 16, true); err != nil {
		t.Fatal(err)
	}
	mark := s.LastSeq()
	if err := dc.BindPtIRQ(d.ID(), domctl.IRQBinding{Kind: domctl.PCI, MachineIRQ: uint32(pirq), Device: 4, Intx: 0}); err != nil {
		t.Fatal(err)
	}
	if err := dc.MemoryMapping(d.ID(), 0xe0000, 0xfd000, 16, true); err != nil {
		t.Fatal(err)
	}
	if err := c.PopulatePhysmap(d.ID(), 0, 0, []uint64{0xf0000, 0xf0001}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetHVMParam(d.ID(), xenabi.HVM_PARAM_TIMER_MODE, 1); err != nil {
		t.Fatal(err)
	}
	if v, err := c.GetHVMParam(d.ID(), xenabi.HVM_PARAM_TIMER_MODE); err != nil || v != 1 {
		t.Errorf("timer mode = %d, %v", v, err)
	}
	var kinds []xensim.EventKind
	for _, e := range s.EventsSince(mark) {
		kinds = append(kinds, e.Kind)
	}
	want := []xensim.EventKind{xensim.EventBindPtIRQ, xensim.EventMemoryMapping, xensim.EventPopulatePhysmap, xensim.EventPopulatePhysmap}
	if len(kinds) != len(want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Errorf("event %d = %v, want %v", i, kinds[i], want[i])
		}
	}
}
