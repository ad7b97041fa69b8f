package i440fx

import (
	"testing"

	"godm/devices"
)

type byteReg struct{ v uint8 }

func (b *byteReg) Read(devices.Access) uint64       { return uint64(b.v) }
func (b *byteReg) Write(_ devices.Access, v uint64) { b.v = uint8(v) }

func TestConfigAddressPorts(t *testing.T) {
	d, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	pio := devices.NewSpace("pio")
	rcr := &byteReg{}
	if err := d.AttachPorts(pio, rcr); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		write bool
		port  uint64
		size  uint8
		v     uint64
		want  uint64 // reads
	}{
		{false, 0xcf8, 4, 0, 0},
		{true, 0xcf8, 4, 0x8000083c, 0},
		{false, 0xcf8, 4, 0, 0x8000083c},
		{false, 0xcf8, 1, 0, 0x3c},
		{false, 0xcfa, 2, 0, 0x083c}, // not shifted, as QEMU's pci_host_config_read
		{false, 0xcfb, 1, 0, 0x3c},
		{true, 0xcf8, 2, 0xffff, 0}, // only dword writes set it
		{true, 0xcfa, 1, 0xff, 0},
		{false, 0xcf8, 4, 0, 0x8000083c},
		{true, 0xcf9, 1, 0x02, 0}, // the reset control register
		{false, 0xcf9, 1, 0, 0x02},
		{false, 0xcf8, 4, 0, 0x8000083c},
	}
	for i, s := range steps {
		if s.write {
			pio.Write(s.port, s.size, 0, s.v)
			continue
		}
		if got := pio.Read(s.port, s.size, 0); got != s.want {
			t.Errorf("step %d: read %d at %#x = %#x, want %#x", i, s.size, s.port, got, s.want)
		}
	}
	if rcr.v != 0x02 {
		t.Errorf("reset control register = %#x, want 0x02", rcr.v)
	}
	if d.ConfigAddress() != 0x8000083c {
		t.Errorf("ConfigAddress = %#x", d.ConfigAddress())
	}
	// QEMU never resets CONFIG_ADDRESS (hw/pci/pci_host.c).
	d.Reset()
	if got := pio.Read(0xcf8, 4, 0); got != 0x8000083c {
		t.Errorf("CONFIG_ADDRESS after reset = %#x, want it kept", got)
	}
	// Without a reset control register, 0xcf9 reads as part of the block.
	d2, _ := New(Config{})
	pio2 := devices.NewSpace("pio")
	if err := d2.AttachPorts(pio2, nil); err != nil {
		t.Fatal(err)
	}
	pio2.Write(0xcf8, 4, 0, 0x80001234)
	if got := pio2.Read(0xcf9, 1, 0); got != 0x34 {
		t.Errorf("0xcf9 without RCR = %#x, want 0x34", got)
	}
}
