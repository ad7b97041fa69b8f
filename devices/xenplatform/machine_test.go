package xenplatform_test

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"godm/devices"
	"godm/devices/i440fx"
	"godm/devices/piix3"
	"godm/devices/piix4pm"
	"godm/devices/xenplatform"
	"godm/internal/testfake"
	"godm/pci"
)

// xen records what the machine asks of Xen: the interrupt and platform
// DM ops (testfake.DMOps), and the ranges its ioreq server would claim.
type xen struct {
	testfake.DMOps
	mu     sync.Mutex
	ranges map[string]bool
}

// routes returns each PCI link's last route.
func (x *xen) routes() [4]uint8 {
	var r [4]uint8
	for _, e := range x.Events() {
		var link, isa uint8
		if n, _ := fmt.Sscanf(e, "route %d->%d", &link, &isa); n == 2 && link < 4 {
			r[link] = isa
		}
	}
	return r
}

// intx returns the INTx levels sent.
func (x *xen) intx() []string {
	var r []string
	for _, e := range x.Events() {
		if strings.HasPrefix(e, "intx ") {
			r = append(r, e)
		}
	}
	return r
}

func (x *xen) SetROMLock(bool) error { return nil }

func (x *xen) RangeAdded(s *devices.Space, base, size uint64) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.ranges[fmt.Sprintf("%v %#x+%#x", s, base, size)] = true
	return nil
}

func (x *xen) RangeRemoved(s *devices.Space, base, size uint64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.ranges, fmt.Sprintf("%v %#x+%#x", s, base, size))
}

func (x *xen) mapped() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	var r []string
	for k := range x.ranges {
		r = append(r, k)
	}
	sort.Strings(r)
	return r
}

// firmware runs the parts of hvmloader's pci_setup
// (tools/firmware/hvmloader/pci.c) that talk to the device model: link
// routes, the bus scan, BAR sizing, interrupt lines, BAR placement in
// descending size order and enabling decoding.
func firmware(t *testing.T, cfg *devices.ConfigSpace) {
	t.Helper()
	rd := func(devfn, reg uint32, size uint8) uint32 {
		return uint32(cfg.Read(devices.SBDF(devfn), reg, size, 0))
	}
	wr := func(devfn, reg uint32, size uint8, v uint32) {
		cfg.Write(devices.SBDF(devfn), reg, size, 0, uint64(v))
	}
	const isaDevfn = 1 << 3
	isa := 0
	for link := range uint32(4) {
		for { // PCI_ISA_IRQ_MASK = IRQs 5, 10, 11
			isa = (isa + 1) & 15
			if 0x0c20&(1<<isa) != 0 {
				break
			}
		}
		wr(isaDevfn, 0x60+link, 1, uint32(isa))
	}
	type bar struct {
		devfn, reg uint32
		size       uint64
		io         bool
	}
	var bars []bar
	decode := map[uint32]uint32{}
	for devfn := range uint32(256) {
		if rd(devfn, 0, 2) == 0xffff {
			continue
		}
		if rd(devfn, 0x0a, 2) == 0x0680 {
			wr(devfn, 0x20, 2, 0)
			wr(devfn, 0xd2, 2, 0)
			wr(devfn, 0x22, 2, 0)
			wr(devfn, 0x3c, 2, 9)
			wr(devfn, 0x3d, 2, 1)
			wr(devfn, 0x40, 4, 0xb000|1)
			wr(devfn, 0x80, 1, 1)
		}
		wr(devfn, 4, 2, rd(devfn, 4, 2)&^3)
		for i := range uint32(7) {
			reg := 0x10 + 4*i
			if i == 6 {
				reg = 0x30
			}
			orig := rd(devfn, reg, 4)
			if i == 6 {
				wr(devfn, reg, 4, (orig|0xfffff800)&^1)
			} else {
				wr(devfn, reg, 4, 0xffffffff)
			}
			sz := rd(devfn, reg, 4)
			wr(devfn, reg, 4, orig)
			io := i != 6 && orig&1 != 0
			switch {
			case i == 6:
				sz &= 0xfffff800
			case io:
				sz &= 0xfffc
			default:
				sz &= 0xfffffff0
			}
			sz &= -sz
			if sz == 0 {
				continue
			}
			bars = append(bars, bar{devfn, reg, uint64(sz), io})
			if io {
				decode[devfn] |= pci.CommandIO
			} else {
				decode[devfn] |= pci.CommandMemory
			}
		}
		if pin := rd(devfn, 0x3d, 1); pin != 0 {
			link := ((pin - 1) + (devfn >> 3)) & 3
			wr(devfn, 0x3c, 1, rd(isaDevfn, 0x60+link, 1))
		}
		decode[devfn] |= pci.CommandMaster
	}
	slices.SortStableFunc(bars, func(a, b bar) int {
		switch {
		case a.size > b.size:
			return -1
		case a.size < b.size:
			return 1
		}
		return 0
	})
	mem, io := uint64(0xf0000000), uint64(0xc000)
	for _, b := range bars {
		base := &mem
		if b.io {
			base = &io
		}
		*base = (*base + b.size - 1) &^ (b.size - 1)
		v := uint32(*base)
		if b.reg == 0x30 {
			v |= 1
		}
		wr(b.devfn, b.reg, 4, v|rd(b.devfn, b.reg, 4)&0xf&^1)
		*base += b.size
	}
	for devfn, bits := range decode {
		wr(devfn, 4, 2, rd(devfn, 4, 2)|bits)
	}
}

// TestXenfvBoot assembles the xenfv base platform and runs hvmloader's
// PCI setup over it.
func TestXenfvBoot(t *testing.T) {
	x := &xen{ranges: map[string]bool{}}
	spaces := devices.NewBus()
	spaces.PIO.SetListener(x)
	spaces.MMIO.SetListener(x)
	isa, err := piix3.New(piix3.Config{Links: x, INTx: x, Shutdown: x})
	if err != nil {
		t.Fatal(err)
	}
	bus, err := pci.NewBus(pci.BusConfig{Spaces: spaces, INTx: isa})
	if err != nil {
		t.Fatal(err)
	}
	host, err := i440fx.New(i440fx.Config{})
	if err != nil {
		t.Fatal(err)
	}
	pm, err := piix4pm.New(piix4pm.Config{Shutdown: x, VCPUs: 2})
	if err != nil {
		t.Fatal(err)
	}
	plat, err := xenplatform.New(xenplatform.Config{ROM: x})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := host.Attach(bus); err != nil {
		t.Fatal(err)
	}
	if _, err := isa.Attach(bus, spaces.PIO); err != nil {
		t.Fatal(err)
	}
	if _, err := pm.Attach(bus, spaces.PIO); err != nil {
		t.Fatal(err)
	}
	sbdf, err := plat.AttachAt(bus, spaces.PIO, 2)
	if err != nil {
		t.Fatal(err)
	}

	firmware(t, spaces.PCI)

	if got, want := x.routes(), [4]uint8{5, 10, 11, 5}; got != want {
		t.Errorf("link routes = %v, want %v", got, want)
	}
	want := []string{
		"mmio 0xf0000000+0x1000000", // platform BAR1, the largest
		"pio 0x10+0x10",
		"pio 0xae00+0x10",
		"pio 0xaf00+0x20",
		"pio 0xafe0+0x4",
		"pio 0xb004+0x2",
		"pio 0xb044+0x4",
		"pio 0xc000+0x100", // platform BAR0
		"pio 0xcf9+0x1",
	}
	if got := x.mapped(); !slices.Equal(got, want) {
		t.Errorf("ranges in Xen:\n got %q\nwant %q", got, want)
	}
	cfg := spaces.PCI
	// Barber pole: slot 2 INTA -> link (0+2)&3 = 2 -> IRQ 11.
	if got := cfg.Read(sbdf, pci.RegInterruptLine, 1, 0); got != 11 {
		t.Errorf("platform interrupt line = %d, want 11", got)
	}
	if got := cfg.Read(devices.NewSBDF(0, 0, 1, 3), pci.RegInterruptLine, 1, 0); got != 10 {
		t.Errorf("PM interrupt line = %d, want 10 (INTA of slot 1 -> link 1)", got)
	}
	if got := cfg.Read(devices.NewSBDF(0, 0, 1, 0), pci.RegHeaderType, 1, 0); got != 0x80 {
		t.Errorf("PIIX3 header type = %#x, want multi-function", got)
	}
	// The PV drivers find the platform device and lock the ROM through BAR0.
	if got := spaces.PIO.Read(0x10, 2, 0); got != xenplatform.Magic {
		t.Errorf("magic = %#x", got)
	}
	spaces.PIO.Write(0xc000, 1, 0, xenplatform.FlagROMLock)
	if got := plat.Flags(); got != xenplatform.FlagROMLock {
		t.Errorf("flags = %#x", got)
	}
	plat.Function().INTx().SetLevel(true)
	if got := x.intx(); !slices.Equal(got, []string{"intx 2.0=true"}) {
		t.Errorf("intx = %v", got)
	}
}

// ejector removes every function of a slot from the bus, as the wiring
// would on a guest's B0EJ write.
type ejector struct{ bus *pci.Bus }

func (e ejector) EjectPCISlot(slot uint8) error {
	for fn := range uint8(pci.NumFunctions) {
		if d := e.bus.Lookup(slot, fn); d != nil {
			if err := e.bus.Remove(d); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestHotplugCycle plugs a function into a running bus, tells the guest
// through the PIIX4 hotplug registers, and lets the guest eject it.
func TestHotplugCycle(t *testing.T) {
	x := &xen{ranges: map[string]bool{}}
	spaces := devices.NewBus()
	spaces.PIO.SetListener(x)
	spaces.MMIO.SetListener(x)
	bus, err := pci.NewBus(pci.BusConfig{Spaces: spaces})
	if err != nil {
		t.Fatal(err)
	}
	sci := &testfake.Recorder{}
	pm, err := piix4pm.New(piix4pm.Config{
		Eject:          ejector{bus},
		RemovableSlots: 0xfffffff8,
		SCI:            sci,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pm.Attach(bus, spaces.PIO); err != nil {
		t.Fatal(err)
	}
	pio := spaces.PIO
	pio.Write(piix4pm.GPE0Port+2, 2, 0, piix4pm.GPEPCIHotplug) // the OS enables GPE 1

	fn, err := pci.NewFunction(pci.Header{VendorID: 0x1af4, DeviceID: 0x1000, InterruptPin: 1},
		pci.BAR{Kind: pci.BARIO, Size: 0x20})
	if err != nil {
		t.Fatal(err)
	}
	sbdf, err := bus.Add(fn, 5, 0)
	if err != nil {
		t.Fatal(err)
	}
	pm.PCIPlugged(5)
	if got := pio.Read(piix4pm.HotplugPort, 4, 0); got != 1<<5 {
		t.Fatalf("PCIU = %#x", got)
	}
	pio.Write(piix4pm.GPE0Port, 2, 0, piix4pm.GPEPCIHotplug) // _E01 done
	// The OS enumerates the new function and enables it.
	spaces.PCI.Write(sbdf, pci.RegBAR0, 4, 0, 0xc100)
	spaces.PCI.Write(sbdf, pci.RegCommand, 2, 0, pci.CommandIO)
	if !x.ranges["pio 0xc100+0x20"] {
		t.Fatalf("BAR not mapped: %v", x.mapped())
	}
	pm.PCIUnplugRequest(5)
	pio.Write(piix4pm.HotplugPort+8, 4, 0, 1<<5) // _EJ0 of S5
	if got := spaces.PCI.Read(sbdf, 0, 4, 0); got != 0xffffffff {
		t.Errorf("ejected function reads %#x", got)
	}
	if x.ranges["pio 0xc100+0x20"] {
		t.Errorf("BAR still mapped after eject: %v", x.mapped())
	}
	if got, want := sci.Levels(), []bool{true, false, true}; !slices.Equal(got, want) {
		t.Errorf("SCI = %v, want %v", got, want)
	}
	if got := pm.Stats(); got.Ejects != 1 || got.Errors != 0 {
		t.Errorf("Stats = %+v", got)
	}
}
