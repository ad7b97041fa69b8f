package board

import (
	"bytes"
	"strings"
	"testing"

	"godm/devices/uart/pciserial"
)

// TestPCISerialDriver plugs pci-serial, drives its UART through BAR 0 and
// checks reset, snapshot into a fresh board, unplug and the help text.
func TestPCISerialDriver(t *testing.T) {
	list := append(defaultList[:len(defaultList):len(defaultList)],
		Entry{Driver: PCISerialDriver, Props: map[string]string{"id": "ps", "chardev": "c0", "addr": "06"}})
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
	p := b.Device("ps")
	if _, ok := p.Dev.(*pciserial.Device); !ok || p.PCI == nil || p.PCI.SBDF().Dev() != 6 {
		t.Fatalf("pci-serial: %T at %v", p.Dev, p.PCI)
	}
	sp := b.Env().Spaces
	sbdf := p.PCI.SBDF()
	if got := sp.PCI.Read(sbdf, 0, 4, 0); got != 0x00021b36 {
		t.Fatalf("vendor/device %#x, want 0x00021b36", got)
	}
	const base = 0xc100
	setup := func(b *Board) {
		sp := b.Env().Spaces
		sp.PCI.Write(sbdf, 0x10, 4, 0, base)
		sp.PCI.Write(sbdf, 0x04, 2, 0, 1)
	}
	setup(b)
	sp.PIO.Write(base+7, 1, 0, 0xa5) // SCR
	sp.PIO.Write(base+3, 1, 0, 0x1b) // LCR: 8 data bits, even parity
	if got := sp.PIO.Read(base+7, 1, 0); got != 0xa5 {
		t.Fatalf("SCR through BAR 0 = %#x", got)
	}

	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b2 := mk()
	if err := b2.Restore(snap); err != nil {
		t.Fatal(err)
	}
	sp2 := b2.Env().Spaces
	if got := sp2.PCI.Read(sbdf, 0x10, 4, 0); got != base|1 {
		t.Errorf("restored BAR0 = %#x, want %#x", got, base|1)
	}
	if got := sp2.PIO.Read(base+7, 1, 0); got != 0xa5 {
		t.Errorf("restored SCR = %#x, want 0xa5", got)
	}
	if got := sp2.PIO.Read(base+3, 1, 0); got != 0x1b {
		t.Errorf("restored LCR = %#x, want 0x1b", got)
	}

	b.Reset()
	if got := sp.PCI.Read(sbdf, 0x10, 4, 0); got != 1 {
		t.Errorf("BAR0 after reset = %#x, want 1", got)
	}
	setup(b)
	if got := sp.PIO.Read(base+7, 1, 0); got != 0 {
		t.Errorf("SCR after reset = %#x, want 0", got)
	}

	if _, err := b.Plug(PCISerialDriver, "", NewProps(map[string]string{"chardev": "nope"})); err == nil || !strings.Contains(err.Error(), "can't find value 'nope'") {
		t.Errorf("unknown chardev: %v", err)
	}
	if err := b.Unplug("ps"); err != nil {
		t.Fatal(err)
	}
	if b.PCI.Lookup(6, 0) != nil {
		t.Error("function still on the bus after unplug")
	}
	if got := sp.PIO.Read(base+7, 1, 0); got != 0xff {
		t.Errorf("port after unplug reads %#x, want 0xff", got)
	}

	var h bytes.Buffer
	if err := DriverHelp(&h, PCISerialDriver); err != nil || !strings.Contains(h.String(), "chardev=<str>") || !strings.Contains(h.String(), "addr=<int32>") {
		t.Errorf("-device pci-serial,help: %v\n%s", err, h.String())
	}
}
