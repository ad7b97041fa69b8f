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

// CONFIG_DATA as ports: through CONFIG_ADDRESS when its enable bit is
// set, all-ones reads and dropped writes when it is clear, every width
// and offset, and a function that is not there reads all-ones.
func TestConfigDataPorts(t *testing.T) {
	d, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	spaces := devices.NewBus()
	reg := &byteRegs{}
	if err := spaces.PCI.Register(devices.NewSBDF(0, 0, 3, 1), reg); err != nil {
		t.Fatal(err)
	}
	if err := d.AttachPorts(spaces.PIO, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.AttachDataPorts(spaces.PIO, spaces.PCI); err != nil {
		t.Fatal(err)
	}
	pio := spaces.PIO
	pio.Write(0xcf8, 4, 0, 0x80001940) // 00:03.1, register 0x40
	pio.Write(0xcfc, 4, 0, 0x44332211)
	pio.Write(0xcfe, 1, 0, 0x99)
	for _, c := range []struct {
		port uint64
		size uint8
		want uint64
	}{{0xcfc, 4, 0x44992211}, {0xcfd, 1, 0x22}, {0xcfe, 2, 0x4499}, {0xcff, 1, 0x44}} {
		if got := pio.Read(c.port, c.size, 0); got != c.want {
			t.Errorf("read %d at %#x = %#x, want %#x", c.size, c.port, got, c.want)
		}
	}
	if reg.last != 0x42 {
		t.Errorf("the byte write reached register %#x, want 0x42", reg.last)
	}
	pio.Write(0xcf8, 4, 0, 0x00001940) // enable bit clear
	if got := pio.Read(0xcfc, 4, 0); got != 0xffffffff {
		t.Errorf("read with the enable bit clear = %#x", got)
	}
	pio.Write(0xcfc, 4, 0, 0)
	pio.Write(0xcf8, 4, 0, 0x80001940)
	if got := pio.Read(0xcfc, 4, 0); got != 0x44992211 {
		t.Errorf("a write with the enable bit clear changed the register: %#x", got)
	}
	pio.Write(0xcf8, 4, 0, 0x80002040) // 00:04.0: nobody
	if got := pio.Read(0xcfc, 2, 0); got != 0xffff {
		t.Errorf("read of an absent function = %#x", got)
	}
}

// byteRegs is a 256-byte configuration space.
type byteRegs struct {
	b    [256]byte
	last uint32
}

func (r *byteRegs) Read(a devices.Access) uint64 {
	var v uint64
	for i := uint8(0); i < a.Size; i++ {
		v |= uint64(r.b[(a.Offset+uint64(i))&0xff]) << (8 * i)
	}
	return v
}

func (r *byteRegs) Write(a devices.Access, v uint64) {
	r.last = uint32(a.Offset)
	for i := uint8(0); i < a.Size; i++ {
		r.b[(a.Offset+uint64(i))&0xff] = byte(v >> (8 * i))
	}
}
