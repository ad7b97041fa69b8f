package vga

import (
	"fmt"

	"godm/devices"
	"godm/pci"
)

// PCI identity of QEMU's "-device cirrus-vga" (cirrus_vga_class_init:
// PCI_VENDOR_ID_CIRRUS, CIRRUS_ID_CLGD5446; QEMU's default subsystem).
const (
	CirrusVendorID = 0x1013
	CirrusDeviceID = 0x00b8

	// CirrusBAR0Size is the LFB BAR: VRAM (with the blitter registers
	// at its top) below 16 MiB, the system-to-screen blit aperture at 16
	// MiB (QEMU "cirrus-pci-bar0").
	CirrusBAR0Size = 32 << 20
	// CirrusMMIOSize is BAR 1: the VGA ports 0x3c0-0x3df at 0, the
	// blitter registers at 0x100 (CIRRUS_PNPMMIO_SIZE).
	CirrusMMIOSize = 0x1000

	clBltAperture     = 16 << 20
	clBltApertureSize = 4 << 20

	// CirrusDefaultVRAMMiB is QEMU's vgamem_mb default for cirrus-vga.
	CirrusDefaultVRAMMiB = 4
)

// CirrusPorts is the Cirrus VGA's I/O range (base, size): QEMU registers
// 0x3b0-0x3df as one block.
var CirrusPorts = struct{ Base, Size uint64 }{0x3b0, 0x30}

// CirrusConfig configures a Cirrus device.
type CirrusConfig struct {
	// VRAMMiB is vgamem_mb: 4, 8 or 16 (QEMU accepts no other). The chip
	// addresses 4 MiB of it; the rest is only seen through the LFB.
	VRAMMiB uint64
	// ROM is the VGA BIOS (vgabios-cirrus.bin), nil for none.
	ROM []byte
	// P2M, when set, is VRAM in the guest's p2m (VRAMMiB long): BAR 0's
	// first VRAMMiB is then guest RAM whenever QEMU's cirrus maps VRAM
	// straight into the LFB (clMapped), and trapped otherwise.
	P2M P2M
	// Drop is Config.Drop.
	Drop func(gfn uint64) error
}

// Cirrus is the "-device cirrus-vga" PCI function (CL-GD5446): BAR 0
// the LFB, BAR 1 the MMIO registers, the expansion ROM the VGA BIOS,
// plus the legacy ports and window the Core serves.
type Cirrus struct {
	*Core
	fn  *pci.Device
	rom []byte
}

// NewCirrus builds the device in its reset state.
func NewCirrus(cfg CirrusConfig) (*Cirrus, error) {
	switch cfg.VRAMMiB {
	case 4, 8, 16:
	default:
		return nil, fmt.Errorf("cirrus-vga: invalid vgamem_mb %d (want 4, 8 or 16)", cfg.VRAMMiB)
	}
	c := NewCore(uint32(cfg.VRAMMiB << 20))
	c.cl = &cirrus{}
	c.scan.modeOf = c.clScanMode
	c.scan.expand = true
	c.scan.overlay = func(row []byte, y, x int) { c.clCursorRowLocked(row, y, x, c.scan.vmode.XRes) }
	c.Reset()
	c.drop = cfg.Drop
	d := &Cirrus{Core: c}
	var ram pci.RAMBacking
	if cfg.P2M != nil {
		if err := c.useP2M(cfg.P2M); err != nil {
			return nil, err
		}
		ram = clLFBRAM{c}
	}
	fn, err := pci.New(pci.Header{VendorID: CirrusVendorID, DeviceID: CirrusDeviceID, Class: Class,
		SubsystemVendorID: subsystemVendor, SubsystemID: subsystemID})
	if err != nil {
		return nil, err
	}
	if err := fn.SetBAR(0, pci.BAR{Kind: pci.BARMem32, Size: CirrusBAR0Size, Prefetchable: true, Handler: clLFBHandler{c},
		RAM: ram, RAMOverlay: true}); err != nil {
		return nil, err
	}
	if err := fn.SetBAR(1, pci.BAR{Kind: pci.BARMem32, Size: CirrusMMIOSize, Handler: clMMIOHandler{c}}); err != nil {
		return nil, err
	}
	if len(cfg.ROM) > 0 {
		size := uint64(2048)
		for size < uint64(len(cfg.ROM)) {
			size <<= 1
		}
		if size > 16<<20 {
			return nil, fmt.Errorf("cirrus-vga: ROM of %d bytes is too large", len(cfg.ROM))
		}
		d.rom = make([]byte, size)
		copy(d.rom, cfg.ROM)
		if err := fn.SetROM(size, romHandler{d.rom}); err != nil {
			return nil, err
		}
	}
	d.fn = fn
	return d, nil
}

// Function is the PCI function.
func (d *Cirrus) Function() *pci.Device { return d.fn }

// Reset resets the function and the VGA.
func (d *Cirrus) Reset() {
	d.fn.Reset()
	d.Core.Reset()
}

// CirrusPortHandler is the 0x3b0-0x3df block as a devices.Handler
// (register it at CirrusPorts); wider accesses are bytes at consecutive
// ports.
func (c *Core) CirrusPortHandler() devices.Handler { return clPortHandler{c} }

type clPortHandler struct{ c *Core }

func (h clPortHandler) Read(a devices.Access) uint64 {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	var v uint64
	for i := range uint64(a.Size) {
		b := byte(0xff)
		if p := a.Addr + i; p >= CirrusPorts.Base && p < CirrusPorts.Base+CirrusPorts.Size {
			b = h.c.readPortLocked(p)
		}
		v |= uint64(b) << (8 * i)
	}
	return v
}

func (h clPortHandler) Write(a devices.Access, v uint64) {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	for i := range uint64(a.Size) {
		if p := a.Addr + i; p >= CirrusPorts.Base && p < CirrusPorts.Base+CirrusPorts.Size {
			h.c.writePortLocked(p, byte(v>>(8*i)))
		}
	}
	h.c.clSyncP2MLocked()
}

// clLFBHandler is BAR 0, byte by byte (QEMU cirrus_linear_io and
// cirrus_linear_bitblt_io take one byte per access).
type clLFBHandler struct{ c *Core }

func (h clLFBHandler) Read(a devices.Access) uint64 {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	var v uint64
	for i := range uint64(a.Size) {
		off := a.Offset + i
		var b byte
		switch {
		case off < clBltAperture:
			b = h.c.clReadLinearLocked(off)
		case off < clBltAperture+clBltApertureSize:
			b = 0xff
		}
		v |= uint64(b) << (8 * i)
	}
	return v
}

func (h clLFBHandler) Write(a devices.Access, v uint64) {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	h.c.gen++
	for i := range uint64(a.Size) {
		off, b := a.Offset+i, byte(v>>(8*i))
		switch {
		case off < clBltAperture:
			h.c.clWriteLinearLocked(off, b)
		case off < clBltAperture+clBltApertureSize:
			if h.c.cl.blt.feeding() {
				h.c.cl.blt.feed(h.c, b)
			}
		}
	}
	h.c.clSyncP2MLocked()
}

// clMMIOHandler is BAR 1 (QEMU cirrus_mmio_io): below 0x100 the ports
// from 0x3c0, above the blitter registers.
type clMMIOHandler struct{ c *Core }

func (h clMMIOHandler) Read(a devices.Access) uint64 {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	var v uint64
	for i := range uint64(a.Size) {
		off := a.Offset + i
		var b byte
		if off >= 0x100 {
			b = h.c.clReadBltLocked(off - 0x100)
		} else {
			b = h.c.readPortLocked(0x3c0 + off)
		}
		v |= uint64(b) << (8 * i)
	}
	return v
}

func (h clMMIOHandler) Write(a devices.Access, v uint64) {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	for i := range uint64(a.Size) {
		off, b := a.Offset+i, byte(v>>(8*i))
		if off >= 0x100 {
			h.c.gen++
			h.c.clWriteBltLocked(off-0x100, b)
		} else {
			h.c.writePortLocked(0x3c0+off, b)
		}
	}
	h.c.clSyncP2MLocked()
}
