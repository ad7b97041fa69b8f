package piix3

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"godm/devices"
	"godm/devices/devicetest"
	"godm/internal/testfake"
	"godm/pci"
)

type machine struct {
	spaces *devices.Bus
	bus    *pci.Bus
	dev    *Device
	sink   *testfake.DMOps // what the bridge sends to Xen
	sbdf   devices.SBDF
}

func newMachine(t testing.TB) *machine {
	t.Helper()
	m := &machine{spaces: devices.NewBus(), sink: &testfake.DMOps{}}
	var err error
	m.dev, err = New(Config{Links: m.sink, INTx: m.sink, Shutdown: m.sink})
	if err != nil {
		t.Fatal(err)
	}
	m.bus, err = pci.NewBus(pci.BusConfig{Spaces: m.spaces, INTx: m.dev})
	if err != nil {
		t.Fatal(err)
	}
	m.sbdf, err = m.dev.Attach(m.bus, m.spaces.PIO)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRegisters(t *testing.T) {
	m := newMachine(t)
	if want := devices.NewSBDF(0, 0, 1, 0); m.sbdf != want {
		t.Errorf("SBDF = %v, want %v", m.sbdf, want)
	}
	for _, tc := range []struct {
		name string
		reg  uint32
		size uint8
		want uint64
	}{
		{"id", 0x00, 4, 0x70008086},
		{"command+status", 0x04, 4, 0x02000000},
		{"subsystem", 0x2c, 4, 0x11001af4},
		{"class", 0x08, 4, 0x06010000},
		{"header type multi-function", 0x0e, 1, 0x80},
		{"iort", 0x4c, 1, 0x4d},
		{"xbcs", 0x4e, 1, 0x03},
		{"pirq routes disabled", RegPIRQ, 4, 0x80808080},
		{"top of memory", 0x69, 1, 0x02},
		{"mbirq0", 0x70, 1, 0x80},
		{"mbdma", 0x76, 2, 0x0c0c},
		{"pcsc", 0x78, 1, 0x02},
		{"smien", 0xa0, 1, 0x08},
		{"smireq", 0xa8, 1, 0x0f},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := m.spaces.PCI.Read(m.sbdf, tc.reg, tc.size, 0); got != tc.want {
				t.Errorf("read %#x/%d = %#x, want %#x", tc.reg, tc.size, got, tc.want)
			}
		})
	}
}

func TestLinkRoutes(t *testing.T) {
	m := newMachine(t)
	cfg := m.spaces.PCI
	// hvmloader's pci_setup: one byte per link, IRQs 5, 10, 11, 5
	// (PCI_ISA_IRQ_MASK, tools/firmware/hvmloader/config.h).
	for link, isa := range []uint64{5, 10, 11, 5} {
		cfg.Write(m.sbdf, RegPIRQ+uint32(link), 1, 0, isa)
	}
	want := []string{"route 0->5", "route 1->10", "route 2->11", "route 3->5"}
	if got := m.sink.Take(); !slices.Equal(got, want) {
		t.Errorf("routes = %v, want %v", got, want)
	}
	// hvmloader reads them back to program Interrupt Line.
	if got := cfg.Read(m.sbdf, RegPIRQ, 4, 0); got != 0x050b0a05 {
		t.Errorf("routes read back = %#x", got)
	}
	// A dword write; the ACPI _DIS method sets 0x80 (disabled -> IRQ 0);
	// bits 6:4 are ignored.
	cfg.Write(m.sbdf, RegPIRQ, 4, 0, 0x8b_09_73_80)
	want = []string{"route 0->0", "route 1->3", "route 2->9", "route 3->0"}
	if got := m.sink.Take(); !slices.Equal(got, want) {
		t.Errorf("routes = %v, want %v", got, want)
	}
	// A write next to the routes does not send any.
	cfg.Write(m.sbdf, 0x5c, 4, 0, 0xffffffff)
	cfg.Write(m.sbdf, 0x64, 1, 0, 0xff)
	if got := m.sink.Take(); len(got) != 0 {
		t.Errorf("unexpected routes: %v", got)
	}
	m.sink.Fail(errors.New("boom"))
	cfg.Write(m.sbdf, RegPIRQ, 2, 0, 0x0505)
	if got := m.dev.Stats().RouteErrors; got != 2 {
		t.Errorf("RouteErrors = %d, want 2", got)
	}
}

func TestINTxWiredOR(t *testing.T) {
	m := newMachine(t)
	a := m.dev.INTx(3, 0, 1)
	b := m.dev.INTx(3, 1, 1)
	c := m.dev.INTx(4, 0, 4)
	a.SetLevel(true)
	b.SetLevel(true) // already high: nothing sent
	a.SetLevel(false)
	b.SetLevel(false)
	c.SetLevel(true)
	c.SetLevel(true)
	c.SetLevel(false)
	want := []string{"intx 3.0=true", "intx 3.0=false", "intx 4.3=true", "intx 4.3=false"}
	if got := m.sink.Take(); !slices.Equal(got, want) {
		t.Errorf("levels = %v, want %v", got, want)
	}
}

func TestINTxThroughBus(t *testing.T) {
	m := newMachine(t)
	fn, err := pci.New(pci.Header{VendorID: 0x1b36, DeviceID: 2, InterruptPin: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.bus.Add(fn, 5, 0); err != nil {
		t.Fatal(err)
	}
	fn.INTx().SetLevel(true)
	fn.INTx().SetLevel(false)
	want := []string{"intx 5.1=true", "intx 5.1=false"}
	if got := m.sink.Take(); !slices.Equal(got, want) {
		t.Errorf("levels = %v, want %v", got, want)
	}
}

func TestResetControl(t *testing.T) {
	m := newMachine(t)
	pio := m.spaces.PIO
	pio.Write(ResetControlPort, 1, 0, 0x0a) // SYS_RST stored, other bits dropped
	if got := pio.Read(ResetControlPort, 1, 0); got != 0x02 {
		t.Errorf("rcr = %#x, want 0x02", got)
	}
	if got := m.sink.Take(); len(got) != 0 {
		t.Errorf("unexpected calls: %v", got)
	}
	pio.Write(ResetControlPort, 1, 0, 0x06)
	if got, want := m.sink.Take(), []string{"shutdown 1"}; !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	if got := m.dev.Stats().Reboots; got != 1 {
		t.Errorf("Reboots = %d, want 1", got)
	}
	// 0xcf8 dword accesses are Xen's; a word access at 0xcf9 does not fit.
	if got := pio.Read(ResetControlPort, 2, 0); got != 0xffff {
		t.Errorf("word read at 0xcf9 = %#x, want a miss", got)
	}
	m.dev.Reset()
	if got := pio.Read(ResetControlPort, 1, 0); got != 0 {
		t.Errorf("rcr after reset = %#x, want 0", got)
	}
	if got := m.spaces.PCI.Read(m.sbdf, RegPIRQ, 4, 0); got != 0x80808080 {
		t.Errorf("routes after reset = %#x", got)
	}
}

func TestNilWiring(t *testing.T) {
	d, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	d.INTx(1, 0, 1).SetLevel(true)
	d.ResetControl().Write(devices.Access{Size: 1}, 4)
	d.Function().Write(devices.Access{Offset: RegPIRQ, Size: 1}, 5)
	if got, want := d.Stats(), (Stats{RouteErrors: 1, INTxErrors: 1, ShutdownErrors: 1, Reboots: 1}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func TestConformance(t *testing.T) {
	newDev := func() *Device {
		d, err := New(Config{Links: &testfake.DMOps{}, INTx: &testfake.DMOps{}, Shutdown: &testfake.DMOps{}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	t.Run("config", func(t *testing.T) {
		devicetest.Run(t, func() devices.Handler { return newDev().Function() }, pci.ConfigSize)
	})
	t.Run("rcr", func(t *testing.T) {
		devicetest.Run(t, func() devices.Handler { return newDev().ResetControl() }, 1)
	})
}

func TestZeroAlloc(t *testing.T) {
	m := newMachine(t)
	l := m.dev.INTx(2, 0, 1)
	cfg := m.spaces.PCI
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"config read", func() { _ = cfg.Read(m.sbdf, RegPIRQ, 4, 0) }},
		{"rcr read", func() { _ = m.spaces.PIO.Read(ResetControlPort, 1, 0) }},
		{"intx", func() { l.SetLevel(true); l.SetLevel(true) }},
	} {
		if got := testing.AllocsPerRun(100, tc.fn); got != 0 {
			t.Errorf("%s: allocs = %v, want 0", tc.name, got)
		}
	}
}

func FuzzConfig(f *testing.F) {
	f.Add(uint16(RegPIRQ), uint8(2), uint32(0x0b0a0905))
	f.Add(uint16(0x04), uint8(2), uint32(0xffff))
	f.Fuzz(func(t *testing.T, reg uint16, size uint8, v uint32) {
		m := newMachine(t)
		size = []uint8{1, 2, 4, 8}[size%4]
		m.spaces.PCI.Write(m.sbdf, uint32(reg), size, 0, uint64(v)|uint64(v)<<32)
		m.spaces.PIO.Write(ResetControlPort, 1, 0, uint64(v))
		for _, e := range m.sink.Take() {
			var link, isa int
			if n, _ := fmt.Sscanf(e, "route %d->%d", &link, &isa); n == 2 && (link > 3 || isa > 15) {
				t.Fatalf("bad route %q", e)
			}
		}
		if got := m.spaces.PCI.Read(m.sbdf, 0, 4, 0); got != 0x70008086 {
			t.Fatalf("identity changed: %#x", got)
		}
	})
}
