package ioreq

import (
	"errors"
	"slices"
	"testing"

	"godm/devices"
)

type irqCall struct {
	Kind  string
	A, B  uint64
	Level bool
}

type fakeIRQ struct {
	calls []irqCall
	fail  bool
}

var errFake = errors.New("fake hypervisor failure")

func (f *fakeIRQ) SetISAIRQLevel(n uint8, level bool) error {
	f.calls = append(f.calls, irqCall{"isa", uint64(n), 0, level})
	if f.fail {
		return errFake
	}
	return nil
}

func (f *fakeIRQ) SetPCIIntxLevel(seg uint16, bus, dev, intx uint8, level bool) error {
	f.calls = append(f.calls, irqCall{"intx", uint64(seg)<<16 | uint64(bus)<<8 | uint64(dev), uint64(intx), level})
	if f.fail {
		return errFake
	}
	return nil
}

func (f *fakeIRQ) InjectMSI(addr uint64, data uint32) error {
	f.calls = append(f.calls, irqCall{"msi", addr, uint64(data), false})
	if f.fail {
		return errFake
	}
	return nil
}

func TestIRQLinesOnlyOnChange(t *testing.T) {
	f := &fakeIRQ{}
	isa := NewISALine(f, 4)
	intx := NewPCIIntxLine(f, devices.NewSBDF(0, 0, 5, 2), 1)
	for _, lv := range []bool{false, true, true, false, false, true} {
		isa.SetLevel(lv)
		intx.SetLevel(lv)
	}
	want := []irqCall{
		{"isa", 4, 0, true}, {"intx", 5, 1, true},
		{"isa", 4, 0, false}, {"intx", 5, 1, false},
		{"isa", 4, 0, true}, {"intx", 5, 1, true},
	}
	if !slices.Equal(f.calls, want) {
		t.Fatalf("calls = %+v, want %+v", f.calls, want)
	}
	NewMSI(f).SendMSI(0xfee00000, 0x4031)
	if got := f.calls[len(f.calls)-1]; got != (irqCall{"msi", 0xfee00000, 0x4031, false}) {
		t.Fatalf("MSI call = %+v", got)
	}
}

func TestIRQFailureRetriesAndCounts(t *testing.T) {
	f := &fakeIRQ{fail: true}
	l := NewISALine(f, 1)
	l.SetLevel(true)
	f.fail = false
	l.SetLevel(true) // the failed raise did not take effect: retried
	if len(f.calls) != 2 || l.Errors() != 1 {
		t.Fatalf("calls %d, errors %d; want 2, 1", len(f.calls), l.Errors())
	}
	f.fail = true
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
