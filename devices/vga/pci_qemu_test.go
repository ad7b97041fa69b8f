package vga

import (
	"testing"

	"godm/devices"
	"godm/internal/qtest"
)

// The PCI function against QEMU 7.2's "-device VGA,vgamem_mb=16" (at
// 00:02.0 of the qtest machine): the configuration header after reset,
// every BAR's sizing probe (what hvmloader does), and the BARs and ROM
// programmed and read back.
func TestQEMUDiffConfigSpace(t *testing.T) {
	if _, err := qtest.Find(qtest.Options{}); err != nil {
		t.Skip("qemu-system-x86_64 not installed (scripts/test-packages.txt: qemu-system-x86):", err)
	}
	q, err := qtest.Start(qtest.Options{Args: []string{"-device", "VGA,vgamem_mb=16,addr=02.0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	rom := make([]byte, 39*1024) // the size class of vgabios-stdvga.bin (64 KiB ROM BAR)
	d, err := New(Config{VRAMSize: 16 << 20, ROM: rom})
	if err != nil {
		t.Fatal(err)
	}
	fn := d.Function()
	const dev = 0x80000000 | 2<<11
	qread := func(off uint32) uint32 {
		if _, err := q.Out(0xcf8, 4, uint64(dev|off)); err != nil {
			t.Fatal(err)
		}
		v, _, err := q.In(0xcfc, 4)
		if err != nil {
			t.Fatal(err)
		}
		return uint32(v)
	}
	write := func(off, v uint32) {
		if _, err := q.Out(0xcf8, 4, uint64(dev|off)); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Out(0xcfc, 4, uint64(v)); err != nil {
			t.Fatal(err)
		}
		fn.Write(devices.Access{Addr: uint64(off), Offset: uint64(off), Size: 4}, uint64(v))
	}
	check := func(step string) {
		t.Helper()
		for off := uint32(0); off < 0x40; off += 4 {
			if off == 0x3c {
				continue // interrupt line: the machine's firmware writes it
			}
			if got, want := fn.ConfigRead(off, 4), qread(off); got != want {
				t.Errorf("%s: config %#02x = %#08x, QEMU %#08x", step, off, got, want)
			}
		}
	}
	check("reset")
	for _, off := range []uint32{0x10, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x30} {
		write(off, 0xffffffff)
	}
	write(0x30, 0xfffff800)
	check("sizing")
	write(0x10, 0xe0000000)
	write(0x18, 0xe1000000)
	write(0x30, 0xe1010001)
	write(0x04, 0x0003)
	check("programmed")
	// System reset (QEMU through PIIX3's reset control register, as
	// QMP's system_reset; godm the device's reset, which the board runs).
	if _, err := q.Out(0xcf9, 1, 0x06); err != nil {
		t.Fatal(err)
	}
	if _, _, err := q.In(0x80, 1); err != nil {
		t.Fatal(err)
	}
	d.Reset()
	check("system_reset")
}
