package passthrough

import (
	"log/slog"
	"testing"

	"godm/devices"
)

// BenchmarkConfigRead is a guest read of a register with host bits
// (command) through the sysfs-like file of a fake tree.
func BenchmarkConfigRead(b *testing.B) {
	dev, _, _, _ := plugged(b, synthetic(), false)
	a := devices.Access{Addr: 4, Size: 2}
	b.ReportAllocs()
	for b.Loop() {
		_ = dev.Read(a)
	}
}

// BenchmarkMSIXMaskUnmask is a guest masking and unmasking a bound
// MSI-X vector through the trapped table (no hypercall).
func BenchmarkMSIXMaskUnmask(b *testing.B) {
	dev, _, bus, _ := plugged(b, synthetic(), false)
	c := cfgIO{dev}
	c.w(0x1c, 4, 0xe0100000)
	c.w(0x04, 2, 0x0002)
	bus.MMIO.Write(0xe0100000, 4, 0, 0xfee00000)
	bus.MMIO.Write(0xe0100008, 4, 0, 0x51)
	bus.MMIO.Write(0xe010000c, 4, 0, 0)
	c.w(0xa2, 2, 0x8000)
	b.ReportAllocs()
	for b.Loop() {
		bus.MMIO.Write(0xe010000c, 4, 0, 1)
		bus.MMIO.Write(0xe010000c, 4, 0, 0)
	}
}

// BenchmarkMSIXPBARead is a guest read of the PBA on its own trapped
// page, served from the read-only mapping of the fake resource file.
func BenchmarkMSIXPBARead(b *testing.B) {
	_, bus, _ := plugWith(b, withBARFiles(synthetic()), slog.DiscardHandler)
	b.ReportAllocs()
	for b.Loop() {
		_ = bus.MMIO.Read(0xe0102000, 8, 0)
	}
}
