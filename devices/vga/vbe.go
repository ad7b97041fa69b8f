package vga

import (
	"sync"

	"godm/devices"
	"godm/devices/savestate"
)

// DISPI register indices and values (QEMU include/hw/display/bochs-vbe.h).
const (
	IndexID          = 0x0
	IndexXRes        = 0x1
	IndexYRes        = 0x2
	IndexBPP         = 0x3
	IndexEnable      = 0x4
	IndexBank        = 0x5
	IndexVirtWidth   = 0x6
	IndexVirtHeight  = 0x7
	IndexXOffset     = 0x8
	IndexYOffset     = 0x9
	IndexVideoMem64K = 0xa // read-only: VRAM size in 64 KiB units
	numRegs          = 0xa

	ID0 = 0xb0c0
	ID5 = 0xb0c5

	Enabled    = 0x01
	GetCaps    = 0x02
	DAC8Bit    = 0x20
	LFBEnabled = 0x40
	NoClearMem = 0x80

	MaxXRes = 16000
	MaxYRes = 12000
	MaxBPP  = 32

	// PortIndex and PortData are the DISPI ports (16-bit accesses).
	PortIndex = 0x1ce
	PortData  = 0x1cf
	// DISPIPorts is how many ports from PortIndex DISPI decodes: the
	// index at 0x1ce, the data at 0x1cf and again at 0x1d0, 16-bit
	// accesses only, so a word at 0x1d0 reaches 0x1d1 (QEMU 7.2 with
	// -vga std, measured through qtest: inw/outw at 0x1cf and 0x1d0 are
	// the data register, byte accesses read 0xff and are dropped).
	DISPIPorts = 4
	// MMIOOffset is where the registers sit in the PCI MMIO BAR, two bytes
	// per index (QEMU vga-pci.c "bochs dispi interface").
	MMIOOffset = 0x500
	MMIOSize   = (numRegs + 1) * 2
)

// VBE is the DISPI register file. Its zero value is not usable: use
// NewVBE. Methods are safe for concurrent use.
type VBE struct {
	mu       sync.Mutex
	index    uint16
	regs     [numRegs]uint16
	vramSize uint32
	bankMask uint16

	lineOffset uint32 // bytes per scanline of the enabled mode
	startAddr  uint32 // first displayed byte
	bankOffset uint32 // 64 KiB window at 0xa0000 (BANK << 16)
	dac8       bool

	// clear zeroes the first n bytes of VRAM on a mode set without
	// NoClearMem (nil: nothing to clear).
	clear func(n uint32)
}

// NewVBE returns the registers in their reset state for vramSize bytes of
// VRAM (a multiple of 64 KiB); clear, if not nil, zeroes VRAM on mode sets.
func NewVBE(vramSize uint32, clear func(n uint32)) *VBE {
	v := &VBE{vramSize: vramSize, clear: clear}
	v.Reset()
	return v
}

// Reset implements devices.Resetter (QEMU vga_common_reset: registers
// zero, ID = ID5, index 0).
func (v *VBE) Reset() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.index = 0
	v.regs = [numRegs]uint16{}
	v.regs[IndexID] = ID5
	v.bankMask = uint16(v.vramSize>>16) - 1
	v.lineOffset, v.startAddr, v.bankOffset, v.dac8 = 0, 0, 0, false
}

// Mode is the linear framebuffer mode the registers describe.
type Mode struct {
	Enabled         bool
	XRes, YRes, BPP int
	LineLength      uint32 // bytes per scanline
	Start           uint32 // VRAM offset of the first displayed pixel
	DAC8Bit, LFB    bool
	BankOffset      uint32

	// shadow is the Cirrus hardware cursor shown: QEMU then draws the
	// picture itself (force_shadow) and the cursor over it.
	shadow bool
}

// Mode returns the current mode.
func (v *VBE) Mode() Mode {
	v.mu.Lock()
	defer v.mu.Unlock()
	return Mode{Enabled: v.enabled(), XRes: int(v.regs[IndexXRes]), YRes: int(v.regs[IndexYRes]),
		BPP: int(v.regs[IndexBPP]), LineLength: v.lineOffset, Start: v.startAddr * 4,
		DAC8Bit: v.dac8, LFB: v.regs[IndexEnable]&LFBEnabled != 0, BankOffset: v.bankOffset}
}

func (v *VBE) enabled() bool { return v.regs[IndexEnable]&Enabled != 0 }

// ReadIndex returns the index register.
func (v *VBE) ReadIndex() uint16 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.index
}

// WriteIndex sets the index register.
func (v *VBE) WriteIndex(i uint16) {
	v.mu.Lock()
	v.index = i
	v.mu.Unlock()
}

// ReadData reads the indexed register: with GetCaps set, XRES/YRES/BPP
// read as the maxima; index 0xa is the VRAM size in 64 KiB; others 0.
func (v *VBE) ReadData() uint16 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.readLocked(v.index)
}

func (v *VBE) readLocked(i uint16) uint16 {
	switch {
	case i < numRegs:
		if v.regs[IndexEnable]&GetCaps != 0 {
			switch i {
			case IndexXRes:
				return MaxXRes
			case IndexYRes:
				return MaxYRes
			case IndexBPP:
				return MaxBPP
			}
		}
		return v.regs[i]
	case i == IndexVideoMem64K:
		return uint16(v.vramSize >> 16)
	}
	return 0
}

// WriteData writes the indexed register.
func (v *VBE) WriteData(val uint16) {
	v.mu.Lock()
	n := v.writeLocked(v.index, val)
	clear := v.clear
	v.mu.Unlock()
	if n > 0 && clear != nil {
		clear(n)
	}
}

// writeLocked returns how many bytes of VRAM a mode set clears.
func (v *VBE) writeLocked(i, val uint16) uint32 {
	switch i {
	case IndexID:
		if val >= ID0 && val <= ID5 {
			v.regs[i] = val
		}
	case IndexXRes, IndexYRes, IndexBPP, IndexVirtWidth, IndexXOffset, IndexYOffset:
		v.regs[i] = val
		v.fixup()
	case IndexBank:
		val &= v.bankMask
		v.regs[i] = val
		v.bankOffset = uint32(val) << 16
	case IndexEnable:
		var cleared uint32
		if val&Enabled != 0 && !v.enabled() {
			v.regs[IndexVirtWidth], v.regs[IndexXOffset], v.regs[IndexYOffset] = 0, 0, 0
			v.regs[IndexEnable] |= Enabled
			v.fixup()
			if val&NoClearMem == 0 {
				cleared = uint32(v.regs[IndexYRes]) * v.lineOffset
			}
		} else {
			v.bankOffset = 0
		}
		v.dac8 = val&DAC8Bit != 0
		v.regs[i] = val
		return cleared
	}
	return 0
}

// fixup brings an enabled mode's registers to the closest valid values,
// as QEMU's vbe_fixup_regs: the DISPI interface has no way to report an
// error, and every later use of the mode (scanout, dirty tracking) relies
// on it fitting in VRAM.
func (v *VBE) fixup() {
	if !v.enabled() {
		return
	}
	r := &v.regs
	var bits uint32
	switch r[IndexBPP] {
	case 4, 8, 16, 24, 32:
		bits = uint32(r[IndexBPP])
	case 15:
		bits = 16
	default:
		r[IndexBPP] = 8
		bits = 8
	}
	r[IndexXRes] &^= 7
	if r[IndexXRes] == 0 {
		r[IndexXRes] = 8
	}
	r[IndexXRes] = min(r[IndexXRes], MaxXRes)
	r[IndexVirtWidth] &^= 7
	r[IndexVirtWidth] = min(r[IndexVirtWidth], MaxXRes)
	r[IndexVirtWidth] = max(r[IndexVirtWidth], r[IndexXRes])

	line := uint32(r[IndexVirtWidth]) * bits / 8
	maxy := v.vramSize / line
	if r[IndexYRes] == 0 {
		r[IndexYRes] = 1
	}
	r[IndexYRes] = min(r[IndexYRes], MaxYRes)
	if uint32(r[IndexYRes]) > maxy {
		r[IndexYRes] = uint16(maxy)
	}
	r[IndexXOffset] = min(r[IndexXOffset], MaxXRes)
	r[IndexYOffset] = min(r[IndexYOffset], MaxYRes)
	off := uint32(r[IndexXOffset])*bits/8 + uint32(r[IndexYOffset])*line
	if off+uint32(r[IndexYRes])*line > v.vramSize {
		r[IndexYOffset] = 0
		off = uint32(r[IndexXOffset]) * bits / 8
		if off+uint32(r[IndexYRes])*line > v.vramSize {
			r[IndexXOffset] = 0
			off = 0
		}
	}
	r[IndexVirtHeight] = uint16(maxy) // QEMU stores it in 16 bits too
	v.lineOffset = line
	v.startAddr = off / 4
}

// Ports is the index/data port pair as a devices.Handler (register it for
// PortIndex, two ports).
type Ports struct{ V *VBE }

// Read implements devices.Handler.
func (p Ports) Read(a devices.Access) uint64 {
	if a.Addr == PortIndex {
		return uint64(p.V.ReadIndex())
	}
	return uint64(p.V.ReadData())
}

// Write implements devices.Handler.
func (p Ports) Write(a devices.Access, val uint64) {
	if a.Addr == PortIndex {
		p.V.WriteIndex(uint16(val))
		return
	}
	p.V.WriteData(uint16(val))
}

// ReadMMIO reads the register at byte offset off of the BAR's DISPI
// window: QEMU's pci_vga_bochs_read sets the index register to off/2 and
// reads the data port, so the index changes as a side effect.
func (v *VBE) ReadMMIO(off uint64) uint16 {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.index = uint16(off / 2)
	return v.readLocked(v.index)
}

// WriteMMIO writes the register at byte offset off of the DISPI window
// (the index register becomes off/2, as in QEMU).
func (v *VBE) WriteMMIO(off uint64, val uint16) {
	v.mu.Lock()
	v.index = uint16(off / 2)
	n := v.writeLocked(v.index, val)
	clear := v.clear
	v.mu.Unlock()
	if n > 0 && clear != nil {
		clear(n)
	}
}

// save writes the registers; load restores them, the derived mode
// brought back into VRAM by the same fixup a guest's writes get.
func (v *VBE) save(w *savestate.Writer) {
	v.mu.Lock()
	defer v.mu.Unlock()
	w.U16(v.index)
	for _, r := range v.regs {
		w.U16(r)
	}
	w.U32(v.bankOffset)
	w.Bool(v.dac8)
}

func (v *VBE) load(r *savestate.Reader) {
	index := r.U16()
	var regs [numRegs]uint16
	for i := range regs {
		regs[i] = r.U16()
	}
	bank := r.U32()
	dac8 := r.Bool()
	if r.Err() != nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.index, v.regs, v.dac8 = index, regs, dac8
	v.regs[IndexBank] &= v.bankMask
	v.bankOffset = min(bank, uint32(v.bankMask)<<16) &^ 0xffff
	v.lineOffset, v.startAddr = 0, 0
	v.fixup()
}
