package vga

import (
	"fmt"

	"godm/devices"
	"godm/pci"
)

// PCI identity of QEMU's standard VGA (hw/display/vga-pci.c
// pci_std_vga_class_init; QEMU's default subsystem IDs from hw/pci/pci.c).
const (
	VendorID = 0x1234
	DeviceID = 0x1111
	Revision = 0x02
	Class    = 0x030000 // display, VGA-compatible

	subsystemVendor = 0x1af4
	subsystemID     = 0x1100

	// MMIOBARSize is BAR 2: 0x400 the VGA ports 0x3c0-0x3df, 0x500 the
	// DISPI registers, 0x600 QEMU's extended registers (vga-pci.c).
	MMIOBARSize   = 4096
	mmioPorts     = 0x400
	mmioPortsSize = 0x20
	mmioQext      = 0x600
	qextSize      = 8          // PCI_VGA_QEXT_SIZE
	qextLittle    = 0x1e1e1e1e // PCI_VGA_QEXT_LITTLE_ENDIAN

	// DefaultVRAMMiB is QEMU's vgamem_mb default.
	DefaultVRAMMiB = 16
)

// VRAMSize turns vgamem_mb into bytes as QEMU's vga_common_init does:
// clamped to 1..512 MiB, rounded up to a power of two.
func VRAMSize(mb uint64) uint32 {
	mb = min(max(mb, 1), 512)
	p := uint64(1)
	for p < mb {
		p <<= 1
	}
	return uint32(p << 20)
}

// Device is the "-device VGA" PCI function: BAR 0 the linear framebuffer
// (VRAM, prefetchable), BAR 2 the MMIO registers, the expansion ROM the
// VGA BIOS, plus the legacy ports and memory window the Core serves.
type Device struct {
	*Core
	fn  *pci.Device
	rom []byte
}

// Config configures a Device.
type Config struct {
	// VRAMSize is VRAM in bytes (VRAMSize of vgamem_mb).
	VRAMSize uint32
	// ROM is the VGA BIOS image (vgabios-stdvga.bin) shown through the
	// expansion ROM BAR, nil for none.
	ROM []byte
	// P2M, when set, is VRAM in the guest's p2m (its Bytes VRAMSize
	// long): BAR 0 is then mapped onto it instead of trapped whenever
	// P2M.Map accepts.
	P2M P2M
	// Drop, for a device without P2M, releases VRAM frames a restore
	// record says the saved device had in the guest's p2m at gfn (see
	// Core.adoptFrom); nil: none can be there.
	Drop func(gfn uint64) error
}

// New builds the device.
func New(cfg Config) (*Device, error) {
	if cfg.VRAMSize < 1<<20 || cfg.VRAMSize&(cfg.VRAMSize-1) != 0 {
		return nil, fmt.Errorf("vga: VRAM size %#x is not a power of two of at least 1 MiB", cfg.VRAMSize)
	}
	d := &Device{Core: NewCore(cfg.VRAMSize)}
	d.drop = cfg.Drop
	var ram pci.RAMBacking
	if cfg.P2M != nil {
		if err := d.useP2M(cfg.P2M); err != nil {
			return nil, err
		}
		ram = lfbRAM{d.Core}
	}
	fn, err := pci.New(pci.Header{VendorID: VendorID, DeviceID: DeviceID, Revision: Revision, Class: Class,
		SubsystemVendorID: subsystemVendor, SubsystemID: subsystemID})
	if err != nil {
		return nil, err
	}
	if err := fn.SetBAR(0, pci.BAR{Kind: pci.BARMem32, Size: uint64(cfg.VRAMSize), Prefetchable: true, Handler: lfbHandler{d.Core}, RAM: ram}); err != nil {
		return nil, err
	}
	if err := fn.SetBAR(2, pci.BAR{Kind: pci.BARMem32, Size: MMIOBARSize, Handler: mmioHandler{d.Core}}); err != nil {
		return nil, err
	}
	if len(cfg.ROM) > 0 {
		size := uint64(2048)
		for size < uint64(len(cfg.ROM)) {
			size <<= 1
		}
		if size > 16<<20 {
			return nil, fmt.Errorf("vga: ROM of %d bytes is too large", len(cfg.ROM))
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
func (d *Device) Function() *pci.Device { return d.fn }

// Reset resets the function and the VGA.
func (d *Device) Reset() {
	d.fn.Reset()
	d.Core.Reset()
}

type lfbHandler struct{ c *Core }

func (h lfbHandler) Read(a devices.Access) uint64     { return h.c.readVRAM(a.Offset, a.Size) }
func (h lfbHandler) Write(a devices.Access, v uint64) { h.c.writeVRAM(a.Offset, a.Size, v) }

type romHandler struct{ rom []byte }

func (h romHandler) Read(a devices.Access) uint64 {
	var v uint64
	for i := uint64(0); i < uint64(a.Size); i++ {
		if a.Offset+i < uint64(len(h.rom)) {
			v |= uint64(h.rom[a.Offset+i]) << (8 * i)
		}
	}
	return v
}

func (romHandler) Write(devices.Access, uint64) {}

// mmioHandler is BAR 2. The EDID block QEMU 7.2 puts at 0 is not
// emulated: it reads as zeros (no valid header, so drivers use their
// default modes).
type mmioHandler struct{ c *Core }

func (h mmioHandler) Read(a devices.Access) uint64 {
	var v uint64
	for i := uint64(0); i < uint64(a.Size); i++ {
		v |= uint64(h.byteAt(a.Offset+i)) << (8 * i)
	}
	return v
}

func (h mmioHandler) byteAt(off uint64) byte {
	switch {
	case off >= mmioPorts && off < mmioPorts+mmioPortsSize:
		return h.c.ReadPort(0x3c0 + off - mmioPorts)
	case off >= MMIOOffset && off < MMIOOffset+MMIOSize:
		// The DISPI registers are 16 bits wide; a byte reads half.
		v := h.c.VBE.ReadMMIO((off - MMIOOffset) &^ 1)
		return byte(v >> (8 * (off & 1)))
	case off >= mmioQext && off < mmioQext+4:
		return byte(uint32(qextSize) >> (8 * (off - mmioQext)))
	case off >= mmioQext+4 && off < mmioQext+8:
		return byte(uint32(qextLittle) >> (8 * (off - mmioQext - 4)))
	}
	return 0
}

func (h mmioHandler) Write(a devices.Access, v uint64) {
	off := a.Offset
	switch {
	case off >= mmioPorts && off < mmioPorts+mmioPortsSize:
		for i := uint64(0); i < uint64(a.Size) && off+i < mmioPorts+mmioPortsSize; i++ {
			h.c.WritePort(0x3c0+off+i-mmioPorts, byte(v>>(8*i)))
		}
	case off >= MMIOOffset && off < MMIOOffset+MMIOSize && a.Size >= 2 && off&1 == 0:
		h.c.VBE.WriteMMIO(off-MMIOOffset, uint16(v))
		h.c.mu.Lock()
		h.c.vbeUpdateLocked()
		h.c.mu.Unlock()
	}
	// The byte-order register accepts only little endian here (the
	// Scanout reads little-endian pixels); other writes are dropped.
}
