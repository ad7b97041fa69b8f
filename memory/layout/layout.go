// Package layout places an HVM guest's RAM in its guest-physical address
// space the way Xen's toolstack populates it and hvmloader and the device
// model see it: RAM from 0 up to the PCI hole below 4 GiB (less the legacy
// VGA hole), the rest from 4 GiB up.
//
// Facts, all from Xen (tools/libs/light/libxl_dom.c:libxl__build_hvm,
// tools/libs/light/libxl_dm.c, tools/libs/guest/xg_dom_x86.c:meminit_hvm,
// tools/firmware/hvmloader/pci.c) and QEMU (hw/i386/xen/xen-hvm.c:
// xen_ram_init):
//
//   - The hole below 4 GiB starts at HVM_BELOW_4G_MMIO_START = 0xF0000000
//     (xen/include/public/hvm/e820.h) unless the guest's config sets
//     mmio_hole; then libxl starts it at 4 GiB - mmio_hole and passes QEMU
//     "-machine xenfv,max-ram-below-4g=" that address. xl accepts mmio_hole
//     of 256..3840 MiB (xl.cfg(5)), so the hole starts between 256 MiB and
//     0xF0000000; libxl ignores a larger start.
//   - RAM below the hole start stays below it, the rest goes to 4 GiB up
//     (libxl: lowmem_end = min(mem, mmio_start), highmem_end = 4 GiB +
//     the rest; QEMU's xen_ram_init splits its RAM block the same way).
//   - The domain builder skips the VGA hole 0xA0000-0xC0000 when a device
//     model runs; QEMU maps its 640 KiB and "lo" RAM around it.
//   - hvmloader relocates no RAM for a QEMU-style device model: libxl
//     writes hvmloader/allow-memory-relocate = 0, so the layout the
//     toolstack built is the one the guest keeps.
package layout

import (
	"errors"
	"fmt"
)

const (
	// FourGiB is where RAM above the PCI hole starts.
	FourGiB = 1 << 32
	// DefaultHoleStart is HVM_BELOW_4G_RAM_END = HVM_BELOW_4G_MMIO_START
	// (xen/include/public/hvm/e820.h): the start of the PCI hole, and so
	// the most RAM below 4 GiB, without a mmio_hole setting. QEMU's
	// xen_ram_init caps max-ram-below-4g at it.
	DefaultHoleStart = 0xF0000000
	// MinHoleStart is the lowest hole start Xen's toolstack produces:
	// xl.cfg(5) caps mmio_hole at 3840 MiB.
	MinHoleStart = FourGiB - 3840<<20
	// VGAHoleStart and VGAHoleEnd bound the legacy VGA window the domain
	// builder leaves unpopulated (xg_dom_x86.c: "skipping VGA hole
	// 0xA0000-0xC0000").
	VGAHoleStart = 0xA0000
	VGAHoleEnd   = 0xC0000
	// MinRAM is the least RAM a guest can be given: the low RAM range
	// QEMU maps from VGAHoleEnd must not be empty (xen_ram_init), and
	// firmware loads at 1 MiB.
	MinRAM = 1 << 20
	// MaxRAM is the most RAM an x86 HVM guest can have: Xen supports
	// guests with "less than 16 TiB" (SUPPORT.md, Guest Limits/Memory).
	MaxRAM = 16<<40 - PageSize
	// PageSize is the granule of guest RAM.
	PageSize = 4096
)

// ErrRange reports a RAM size or hole start out of range.
var ErrRange = errors.New("out of range")

// Layout is where a guest's RAM lies. The zero Layout is "unknown": no
// RAM described.
type Layout struct {
	// HoleStart is where the PCI hole below 4 GiB starts (the most RAM
	// below 4 GiB: QEMU's max-ram-below-4g).
	HoleStart uint64
	// Below4G is the RAM in [0, Below4G), less the VGA hole.
	Below4G uint64
	// Above4G is the RAM in [4 GiB, 4 GiB + Above4G).
	Above4G uint64
}

// Range is a guest-physical range [GPA, GPA+Size).
type Range struct {
	GPA, Size uint64
}

// End returns the first address after r.
func (r Range) End() uint64 { return r.GPA + r.Size }

// New lays total bytes of RAM out around a PCI hole starting at holeStart
// (zero: DefaultHoleStart). total zero gives the zero Layout (unknown).
// Out-of-range values are refused with an error wrapping ErrRange that
// says which limit they break.
func New(total, holeStart uint64) (Layout, error) {
	if holeStart == 0 {
		holeStart = DefaultHoleStart
	}
	if holeStart < MinHoleStart || holeStart > DefaultHoleStart || holeStart%PageSize != 0 {
		return Layout{}, fmt.Errorf("RAM below 4 GiB %#x: want a page multiple in %#x..%#x (%d..%d MiB: Xen's mmio_hole of 3840..256 MiB): %w",
			holeStart, uint64(MinHoleStart), uint64(DefaultHoleStart), MinHoleStart>>20, DefaultHoleStart>>20, ErrRange)
	}
	if total == 0 {
		return Layout{}, nil
	}
	if total < MinRAM || total > MaxRAM || total%PageSize != 0 {
		return Layout{}, fmt.Errorf("guest RAM %d bytes: want a page multiple in 1 MiB..16 TiB-4 KiB (Xen's limit for x86 HVM guests): %w", total, ErrRange)
	}
	l := Layout{HoleStart: holeStart, Below4G: min(total, holeStart)}
	l.Above4G = total - l.Below4G
	return l, nil
}

// Total returns the guest's RAM size (the VGA hole counted, as the
// toolstack and QEMU's ram_size count it).
func (l Layout) Total() uint64 { return l.Below4G + l.Above4G }

// Regions returns the populated RAM ranges in address order: below the
// VGA hole, from its end to Below4G, and above 4 GiB.
func (l Layout) Regions() []Range {
	if l.Below4G == 0 {
		return nil
	}
	r := []Range{{0, min(l.Below4G, VGAHoleStart)}}
	if l.Below4G > VGAHoleEnd {
		r = append(r, Range{VGAHoleEnd, l.Below4G - VGAHoleEnd})
	}
	if l.Above4G > 0 {
		r = append(r, Range{FourGiB, l.Above4G})
	}
	return r
}

// IsRAM reports whether [gpa, gpa+n) lies wholly in one RAM range.
func (l Layout) IsRAM(gpa, n uint64) bool {
	if n == 0 || gpa+n < gpa {
		return false
	}
	for _, r := range l.Regions() {
		if gpa >= r.GPA && gpa+n <= r.End() {
			return true
		}
	}
	return false
}

// String describes the layout in MiB.
func (l Layout) String() string {
	if l.Below4G == 0 {
		return "RAM size unknown"
	}
	return fmt.Sprintf("%d MiB RAM: %d MiB below the PCI hole at %#x, %d MiB from 4 GiB",
		l.Total()>>20, l.Below4G>>20, l.HoleStart, l.Above4G>>20)
}
