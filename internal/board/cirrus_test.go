package board

import (
	"os"
	"path/filepath"
	"testing"

	"godm/devices/vga"
)

// The cirrus-vga driver: identity and placement (00:03.0, where libxl's
// guests see QEMU-xen's), BAR sizes, the ROM from vgabios-cirrus.bin,
// the extended registers through the ports, the banked window, reset,
// snapshot and restore, and removal leaving nothing routed.
func TestCirrusDriver(t *testing.T) {
	dir := t.TempDir()
	rom := make([]byte, 3000)
	rom[0], rom[1], rom[2] = 0x55, 0xaa, 6
	if err := os.WriteFile(filepath.Join(dir, "vgabios-cirrus.bin"), rom, 0o644); err != nil {
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
	list = append(list, Entry{Driver: "cirrus-vga", Props: map[string]string{"vgamem_mb": "8", "id": "vga"}})
	if err := b.Build(list); err != nil {
		t.Fatal(err)
	}
	pl := b.Device("vga")
	d := pl.Dev.(*vga.Cirrus)
	if sbdf := pl.PCI.SBDF(); sbdf.Dev() != 3 || sbdf.Fn() != 0 {
		t.Errorf("cirrus-vga at %v, want 00:03.0", sbdf)
	}
	if id := pl.PCI.ConfigRead(0, 4); id != 0x00b81013 {
		t.Errorf("vendor/device %#x", id)
	}
	// BAR sizes: 32 MiB prefetchable LFB, 4 KiB MMIO, a 4 KiB ROM.
	for _, c := range []struct {
		off  uint64
		want uint32
	}{{0x10, 0xfe000008}, {0x14, 0xfffff000}, {0x30, 0xfffff001}} {
		cfgWrite(pl, c.off, 4, 0xffffffff)
		if got := pl.PCI.ConfigRead(uint32(c.off), 4); got != c.want {
			t.Errorf("BAR at %#x sizes as %#x, want %#x", c.off, got, c.want)
		}
		cfgWrite(pl, c.off, 4, 0)
	}
	cfgWrite(pl, 0x30, 4, 0xfebf0001)
	cfgWrite(pl, 4, 2, 2)
	pio, mmio := b.env.Spaces.PIO, b.env.Spaces.MMIO
	if v := mmio.Read(0xfebf0000, 2, 0); v != 0xaa55 {
		t.Errorf("ROM signature %#x", v)
	}
	// SR06 unlocks; CR27 is the part ID; SVGA mode banks the window.
	pio.Write(0x3c4, 2, 0, 0x1206)
	pio.Write(0x3c4, 1, 0, 6)
	if v := pio.Read(0x3c5, 1, 0); v != 0x12 {
		t.Errorf("SR06 = %#x after unlock", v)
	}
	pio.Write(0x3c2, 1, 0, 0x67) // colour: the CRTC at 0x3d4
	pio.Write(0x3d4, 1, 0, 0x27)
	if v := pio.Read(0x3d5, 1, 0); v != vga.CLGD5446ID {
		t.Errorf("CR27 = %#x", v)
	}
	pio.Write(0x3c4, 2, 0, 0x0107)
	pio.Write(0x3ce, 2, 0, 0x0209) // bank 0 at 8 KiB
	mmio.Write(0xa0010, 4, 0, 0x44332211)
	if got := d.VRAM()[0x2010:0x2014]; string(got) != "\x11\x22\x33\x44" {
		t.Errorf("VRAM after a banked window write: % x", got)
	}
	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	pio.Write(0x3c4, 1, 0, 6)
	if v := pio.Read(0x3c5, 1, 0); v != 0x0f {
		t.Errorf("SR06 = %#x after reset", v)
	}
	d.VRAM()[0x2010] = 0
	if err := b.Restore(snap); err != nil {
		t.Fatal(err)
	}
	pio.Write(0x3c4, 1, 0, 6)
	if v := pio.Read(0x3c5, 1, 0); v != 0x12 {
		t.Errorf("SR06 = %#x after restore", v)
	}
	if v := mmio.Read(0xa0010, 1, 0); v != 0x11 || d.VRAM()[0x2010] != 0x11 {
		t.Errorf("banked VRAM after restore: %#x", v)
	}
	nPIO, nMMIO := len(pio.Ranges()), len(mmio.Ranges())
	if err := b.Unplug("vga"); err == nil {
		t.Error("cirrus-vga unplugged at run time (QEMU's is not hot-pluggable)")
	}
	if err := b.remove("vga", true); err != nil {
		t.Fatal(err)
	}
	if len(pio.Ranges()) != nPIO-1 || len(mmio.Ranges()) >= nMMIO {
		t.Errorf("after removal: %d port ranges (was %d), %d MMIO (was %d)", len(pio.Ranges()), nPIO, len(mmio.Ranges()), nMMIO)
	}
	if _, err := b.Plug("cirrus-vga", "v2", NewProps(map[string]string{"vgamem_mb": "32"})); err == nil {
		t.Error("vgamem_mb=32 accepted")
	}
}
