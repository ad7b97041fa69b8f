package board

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"godm/devices"
	"godm/devices/vga"
	"godm/internal/qtest"
)

// The VGA driver: identity and placement on the bus (the first free slot
// after the platform device, as libxl's guests see it under QEMU-xen), the
// legacy ports and window, the ROM BAR from romfile, reset, snapshot and
// restore (VRAM included), and unplug leaving nothing behind.
func TestVGADriver(t *testing.T) {
	dir := t.TempDir()
	rom := make([]byte, 3000)
	rom[0], rom[1], rom[2] = 0x55, 0xaa, 6
	if err := os.WriteFile(filepath.Join(dir, "vgabios-stdvga.bin"), rom, 0o644); err != nil {
		t.Fatal(err)
	}
	env := testEnv()
	env.FirmwareDirs = []string{dir}
	b, err := New(env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	list := append([]Entry{}, defaultList[:4]...)
	list = append(list, Entry{Driver: "VGA", Props: map[string]string{"vgamem_mb": "8", "id": "vga"}})
	if err := b.Build(list); err != nil {
		t.Fatal(err)
	}
	pl := b.Device("vga")
	d := pl.Dev.(*vga.Device)
	if sbdf := pl.PCI.SBDF(); sbdf.Dev() != 3 || sbdf.Fn() != 0 {
		t.Errorf("VGA at %v, want 00:03.0 (first free slot after the platform device)", sbdf)
	}
	if id := pl.PCI.ConfigRead(0, 4); id != 0x11111234 {
		t.Errorf("vendor/device %#x", id)
	}
	if c := pl.PCI.ConfigRead(8, 4) >> 8; c != 0x030000 {
		t.Errorf("class %#x", c)
	}
	// BAR sizes: 8 MiB prefetchable VRAM, 4 KiB MMIO, a 4 KiB ROM.
	for _, c := range []struct {
		off  uint64
		want uint32
	}{{0x10, 0xff800008}, {0x18, 0xfffff000}, {0x30, 0xfffff001}} {
		cfgWrite(pl, c.off, 4, 0xffffffff)
		if got := pl.PCI.ConfigRead(uint32(c.off), 4); got != c.want {
			t.Errorf("BAR at %#x sizes as %#x, want %#x", c.off, got, c.want)
		}
		cfgWrite(pl, c.off, 4, 0)
	}
	// The ROM decodes once placed and enabled.
	cfgWrite(pl, 0x30, 4, 0xfebf0001)
	cfgWrite(pl, 4, 2, 2)
	pio, mmio := b.env.Spaces.PIO, b.env.Spaces.MMIO
	if v := mmio.Read(0xfebf0000, 2, 0); v != 0xaa55 {
		t.Errorf("ROM signature %#x", v)
	}
	// Legacy: the DAC and the window (chain 4 after the sequencer says so).
	pio.Write(0x3c8, 1, 0, 5)
	for _, v := range []uint64{1, 2, 3} {
		pio.Write(0x3c9, 1, 0, v)
	}
	pio.Write(0x3c4, 2, 0, 0x0e04)
	pio.Write(0x3c4, 2, 0, 0x0f02)
	pio.Write(0x3ce, 2, 0, 0x0506)
	mmio.Write(0xa0010, 4, 0, 0x44332211)
	if got := d.VRAM()[0x10:0x14]; string(got) != "\x11\x22\x33\x44" {
		t.Errorf("VRAM after a window write: % x", got)
	}
	pio.Write(PortIndexForTest, 2, 0, 0x3)
	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	pio.Write(0x3c7, 1, 0, 5)
	if v := pio.Read(0x3c9, 1, 0); v != 0 {
		t.Errorf("palette after reset %#x, want 0", v)
	}
	d.VRAM()[0x10] = 0
	if err := b.Restore(snap); err != nil {
		t.Fatal(err)
	}
	pio.Write(0x3c7, 1, 0, 5)
	if v := pio.Read(0x3c9, 1, 0) | pio.Read(0x3c9, 1, 0)<<8 | pio.Read(0x3c9, 1, 0)<<16; v != 0x030201 {
		t.Errorf("palette after restore %#x", v)
	}
	if d.VRAM()[0x10] != 0x11 {
		t.Error("VRAM not restored")
	}
	if v := pio.Read(PortIndexForTest, 2, 0); v != 3 {
		t.Errorf("DISPI index after restore %#x", v)
	}
	// A truncated or foreign record is refused.
	if err := d.Restore(snap[:len(snap)/2]); err == nil {
		t.Error("half a record accepted")
	}
	nPIO, nMMIO := len(pio.Ranges()), len(mmio.Ranges())
	if err := b.Unplug("vga"); err == nil {
		t.Error("the VGA unplugged at run time (QEMU's is not hot-pluggable)")
	}
	if err := b.remove("vga", true); err != nil {
		t.Fatal(err)
	}
	if len(pio.Ranges()) != nPIO-6 || len(mmio.Ranges()) >= nMMIO {
		t.Errorf("after unplug: %d port ranges (was %d), %d MMIO (was %d)", len(pio.Ranges()), nPIO, len(mmio.Ranges()), nMMIO)
	}
	for _, r := range pio.Ranges() {
		if r.Base <= 0x3cc && 0x3cc < r.Base+r.Size {
			t.Error("port 0x3cc still routed after unplug")
		}
	}
}

func cfgWrite(pl *Plugged, off uint64, size uint8, v uint64) {
	pl.PCI.Write(devices.Access{Addr: off, Offset: off, Size: size}, v)
}

// PortIndexForTest is the DISPI index port.
const PortIndexForTest = vga.PortIndex

// A romfile that does not exist is an error; the default one missing is
// not (the device works without its BIOS).
func TestVGAROMFile(t *testing.T) {
	env := testEnv()
	env.FirmwareDirs = []string{t.TempDir()}
	b, err := New(env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := b.Plug("VGA", "v", NewProps(map[string]string{"romfile": "nope.bin"})); err == nil || !strings.Contains(err.Error(), "nope.bin") {
		t.Errorf("missing romfile: %v", err)
	}
	p, err := b.Plug("VGA", "v", NewProps(map[string]string{}))
	if err != nil {
		t.Fatal(err)
	}
	if p.PCI.ConfigRead(0x30, 4) != 0 {
		t.Error("a ROM BAR without a ROM")
	}
	if _, err := b.Plug("VGA", "v2", NewProps(map[string]string{"vgamem_mb": "x"})); err == nil {
		t.Error("vgamem_mb=x accepted")
	}
}

// TestQEMUDiffVGADISPIPorts compares the DISPI ports as the board routes
// them (index 0x1ce, data at 0x1cf and 0x1d0; word accesses only) with
// QEMU's -vga std: every port from 0x1cd to 0x1d1, byte and word, read
// and written. A guest's VGA BIOS sets VBE modes with outw 0x1cf.
func TestQEMUDiffVGADISPIPorts(t *testing.T) {
	if _, err := qtest.Find(qtest.Options{}); errors.Is(err, exec.ErrNotFound) {
		t.Skipf("qemu-system-x86_64 not installed (scripts/test.sh installs qemu-system-x86): %v", err)
	}
	c, err := qtest.Start(qtest.Options{Args: []string{"-vga", "std"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := New(testEnv())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	list := append([]Entry{}, defaultList[:4]...)
	list = append(list, Entry{Driver: "VGA", Props: map[string]string{"romfile": ""}})
	if err := b.Build(list); err != nil {
		t.Fatal(err)
	}
	pio := b.env.Spaces.PIO
	out := func(port uint16, size uint8, v uint64) {
		if _, err := c.Out(port, size, v); err != nil {
			t.Fatal(err)
		}
		pio.Write(uint64(port), size, 0, v)
	}
	in := func(port uint16, size uint8, what string) {
		want, _, err := c.In(port, size)
		if err != nil {
			t.Fatal(err)
		}
		if got := pio.Read(uint64(port), size, 0); got != want {
			t.Errorf("%s: in%d %#x = %#x, QEMU %#x", what, size*8, port, got, want)
		}
	}
	for port := uint16(0x1cd); port <= 0x1d1; port++ {
		for _, size := range []uint8{1, 2} {
			out(vga.PortIndex, 2, vga.IndexXRes)
			out(vga.PortData, 2, 0x230)
			in(port, size, "read")
			out(vga.PortIndex, 2, vga.IndexXRes)
			out(port, size, 0x208)
			in(vga.PortIndex, 2, fmt.Sprintf("index after a write at %#x/%d", port, size))
			out(vga.PortIndex, 2, vga.IndexXRes)
			in(vga.PortData, 2, fmt.Sprintf("xres after a write at %#x/%d", port, size))
		}
	}
}
