package ioreq

import (
	"errors"
	"slices"
	"testing"

	"godm/devices"
	"godm/internal/testfake"
)

func TestIRQLinesOnlyOnChange(t *testing.T) {
	f := &testfake.DMOps{}
	isa := NewISALine(f, 4)
	intx := NewPCIIntxLine(f, devices.NewSBDF(0, 0, 5, 2), 1)
	for _, lv := range []bool{false, true, true, false, false, true} {
		isa.SetLevel(lv)
		intx.SetLevel(lv)
	}
	want := []string{
		"isa 4=true", "intx 5.1=true",
		"isa 4=false", "intx 5.1=false",
		"isa 4=true", "intx 5.1=true",
	}
	if got := f.Take(); !slices.Equal(got, want) {
		t.Fatalf("calls = %q, want %q", got, want)
	}
	// Off bus 0, the line names its segment and bus.
	NewPCIIntxLine(f, devices.NewSBDF(1, 2, 5, 0), 3).SetLevel(true)
	NewMSI(f).SendMSI(0xfee00000, 0x4031)
	if got, want := f.Take(), []string{"intx 0001:02:5.3=true", "msi 0xfee00000 0x4031"}; !slices.Equal(got, want) {
		t.Fatalf("calls = %q, want %q", got, want)
	}
}

func TestIRQFailureRetriesAndCounts(t *testing.T) {
	f := &testfake.DMOps{}
	f.Fail(errors.New("fake hypervisor failure"))
	l := NewISALine(f, 1)
	l.SetLevel(true)
	f.Fail(nil)
	l.SetLevel(true) // the failed raise did not take effect: retried
	if n := len(f.Take()); n != 2 || l.Errors() != 1 {
		t.Fatalf("calls %d, errors %d; want 2, 1", n, l.Errors())
	}
	f.Fail(errors.New("fake hypervisor failure"))
	m := NewMSI(f)
	m.SendMSI(1, 2)
	if m.Errors() != 1 {
		t.Fatalf("MSI errors %d, want 1", m.Errors())
	}
}

type nopIRQ struct{}

func (nopIRQ) SetISAIRQLevel(uint8, bool) error                        { return nil }
func (nopIRQ) SetPCIIntxLevel(uint16, uint8, uint8, uint8, bool) error { return nil }
func (nopIRQ) InjectMSI(uint64, uint32) error                          { return nil }

func TestIRQZeroAlloc(t *testing.T) {
	isa := NewISALine(nopIRQ{}, 3)
	intx := NewPCIIntxLine(nopIRQ{}, devices.NewSBDF(0, 0, 3, 0), 0)
	msi := NewMSI(nopIRQ{})
	lv := false
	allocs := testing.AllocsPerRun(100, func() {
		lv = !lv
		isa.SetLevel(lv)
		intx.SetLevel(lv)
		msi.SendMSI(0xfee00000, 0x30)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations, want 0", allocs)
	}
}
