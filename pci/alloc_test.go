package pci

import (
	"testing"

	"godm/devices"
)

func TestConfigAccess_ZeroAlloc(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation allocates")
	}
	r := newRig(t)
	r.irq.Grow(0, 4096)
	d, sbdf := newMSIXDevice(t, r, nil)
	c := uint32(d.msix.cap)
	r.cfgWrite(sbdf, c+2, 2, msixEnable)
	r.spaces.MMIO.Write(0xfe002000+12, 4, 0, 0)
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"config read", func() { _ = r.cfgRead(sbdf, RegVendorID, 4) }},
		{"config read via handler", func() { _ = d.Read(devices.Access{Offset: 0x10, Size: 4}) }},
		{"config write line", func() { r.cfgWrite(sbdf, RegInterruptLine, 1, 9) }},
		{"config write command unchanged", func() { r.cfgWrite(sbdf, RegCommand, 2, CommandMemory|CommandMaster) }},
		{"config write bar unchanged", func() { r.cfgWrite(sbdf, RegBAR0, 4, 0xfe000000) }},
		{"msix table write", func() { r.spaces.MMIO.Write(0xfe002008, 4, 0, 0x41) }},
		{"msix table read", func() { _ = r.spaces.MMIO.Read(0xfe002000, 8, 0) }},
		{"intx", func() { d.SetINTx(true); d.SetINTx(false) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := testing.AllocsPerRun(100, tc.fn); got != 0 {
				t.Errorf("allocs = %v, want 0", got)
			}
		})
	}
	// MSI-X delivery (the rig's recorder appends into preallocated room).
	if got := testing.AllocsPerRun(100, func() { d.Interrupt(0) }); got != 0 {
		t.Errorf("Interrupt allocs = %v, want 0", got)
	}
}

func BenchmarkConfigRead(b *testing.B) {
	r := newRig(b)
	d := mustNew(b, testHeader)
	sbdf, err := r.bus.Add(d, 1, 0)
	must(b, err)
	b.ReportAllocs()
	for b.Loop() {
		_ = r.cfgRead(sbdf, RegVendorID, 4)
	}
}

func BenchmarkConfigWrite(b *testing.B) {
	r := newRig(b)
	d := mustNew(b, testHeader)
	sbdf, err := r.bus.Add(d, 1, 0)
	must(b, err)
	b.ReportAllocs()
	for b.Loop() {
		r.cfgWrite(sbdf, RegCommand, 2, CommandMemory)
	}
}

func BenchmarkMSIXInterrupt(b *testing.B) {
	r := newRig(b)
	d, sbdf := newMSIXDevice(b, r, nil)
	r.cfgWrite(sbdf, uint32(d.msix.cap)+2, 2, msixEnable)
	r.spaces.MMIO.Write(0xfe00200c, 4, 0, 0)
	d.mu.Lock()
	d.send = nopMSI{}
	d.mu.Unlock()
	b.ReportAllocs()
	for b.Loop() {
		d.Interrupt(0)
	}
}

func BenchmarkBARRead(b *testing.B) {
	r := newRig(b)
	h := &memHandler{mem: make([]byte, 0x4000)}
	newMSIXDevice(b, r, h)
	b.ReportAllocs()
	for b.Loop() {
		_ = r.spaces.MMIO.Read(0xfe000010, 4, 0)
	}
}

type nopMSI struct{}

func (nopMSI) SendMSI(uint64, uint32) {}
