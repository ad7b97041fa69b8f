package board

import (
	"bytes"
	"strings"
	"testing"

	"godm/devices/uhci"
)

// TestUSBDrivers plugs -usb's controller at 01.2 and a tablet on it,
// checks the function, the port's connection, reset, snapshot into a
// fresh board, the refusals and the help text.
func TestUSBDrivers(t *testing.T) {
	list := append(defaultList[:len(defaultList):len(defaultList)],
		Entry{Driver: UHCIDriver, Props: map[string]string{"id": "usb", "addr": "01.2"}},
		Entry{Driver: TabletDriver, Props: map[string]string{"id": "tab", "bus": "usb.0"}})
	mk := func() *Board {
		b, err := New(testEnv())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		if err := b.Build(list); err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := mk()
	p := b.Device("usb")
	if _, ok := p.Dev.(*uhci.Controller); !ok || p.PCI == nil || p.PCI.SBDF().Dev() != 1 || p.PCI.SBDF().Fn() != 2 {
		t.Fatalf("uhci: %T at %v", p.Dev, p.PCI)
	}
	sp := b.Env().Spaces
	sbdf := p.PCI.SBDF()
	if got := sp.PCI.Read(sbdf, 0, 4, 0); got != 0x70208086 {
		t.Fatalf("vendor/device %#x", got)
	}
	// The PIIX3 at 01.0 now says multi-function.
	if got := sp.PCI.Read(sbdf&^7, 0x0e, 1, 0); got&0x80 == 0 {
		t.Errorf("01.0 header type %#x: not multi-function", got)
	}
	const base = 0xc040
	sp.PCI.Write(sbdf, 0x20, 4, 0, base)
	sp.PCI.Write(sbdf, 0x04, 2, 0, 1)
	if got := sp.PIO.Read(base+uhci.RegPortSC1, 2, 0); got != 0x83 {
		t.Fatalf("PORTSC1 %#x: the tablet is not connected", got)
	}
	sp.PIO.Write(base+uhci.RegPortSC1, 2, 0, uhci.PortCSC|uhci.PortEN)
	sp.PIO.Write(base+uhci.RegSOF, 1, 0, 0x22)
	tab := b.Device("tab").Dev.(*USBTablet)
	tab.PointerEvent(1, 1, 10, 10, 1)

	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b2 := mk()
	if err := b2.Restore(snap); err != nil {
		t.Fatal(err)
	}
	sp2 := b2.Env().Spaces
	if got := sp2.PIO.Read(base+uhci.RegPortSC1, 2, 0); got != 0x85 {
		t.Errorf("restored PORTSC1 %#x, want 0x85", got)
	}
	if got := sp2.PIO.Read(base+uhci.RegSOF, 1, 0); got != 0x22 {
		t.Errorf("restored SOF %#x", got)
	}
	if n := b2.Device("tab").Dev.(*USBTablet).Pending(); n != 1 {
		t.Errorf("restored tablet has %d reports", n)
	}
	// Reset: the controller's registers, and the tablet connected anew.
	b.Reset()
	if got := sp.PCI.Read(sbdf, 0x20, 4, 0); got != 1 {
		t.Errorf("BAR4 after reset %#x", got)
	}
	if tab.Pending() != 0 {
		t.Error("tablet kept its reports across reset")
	}

	// Refusals.
	for _, c := range []struct {
		entries []Entry
		want    string
	}{
		{[]Entry{{Driver: TabletDriver}}, "no USB bus"},
		{[]Entry{{Driver: UHCIDriver, Props: map[string]string{"id": "u"}}, {Driver: TabletDriver, Props: map[string]string{"bus": "x.0"}}}, "Bus 'x.0' not found"},
		{[]Entry{{Driver: UHCIDriver}, {Driver: TabletDriver, Props: map[string]string{"port": "3"}}}, "not a root port"},
		{[]Entry{{Driver: UHCIDriver}, {Driver: TabletDriver}, {Driver: TabletDriver}, {Driver: TabletDriver}}, "no USB bus with a free port"},
		{[]Entry{{Driver: UHCIDriver}, {Driver: TabletDriver, Props: map[string]string{"port": "1"}}, {Driver: TabletDriver, Props: map[string]string{"port": "1"}}}, "port in use"},
	} {
		b, err := New(testEnv())
		if err != nil {
			t.Fatal(err)
		}
		err = b.Build(append(defaultList[:len(defaultList):len(defaultList)], c.entries...))
		b.Close()
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %v, want %q", c.entries, err, c.want)
		}
	}
	var help bytes.Buffer
	if err := Help(&help); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`name "piix3-usb-uhci", bus PCI`, `name "usb-tablet", bus usb-bus`} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("help lacks %s:\n%s", want, help.String())
		}
	}
}
