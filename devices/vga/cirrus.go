package vga

import "encoding/binary"

// The Cirrus Logic CL-GD5446 extensions of QEMU 7.2's "-device
// cirrus-vga" (hw/display/cirrus_vga.c; facts from there and from
// VGADOC's CL-GD54xx chapter): extended sequencer, graphics controller
// and CRTC registers, the hidden DAC register and cursor palette, the
// banked 0xa0000 window, write modes 4 and 5, the linear framebuffer with
// its blitter registers at the top, and the BitBLT engine (blit.go). The
// standard VGA registers, memory modes and picture are the Core's.

// Cirrus register bits (QEMU cirrus_vga.c names).
const (
	clSR7SVGA    = 0x01 // SR07: extended (SVGA) modes, banked window
	clSR7BPPMask = 0x0e

	clCursorShow   = 0x01 // SR12
	clCursorHidden = 0x02 // SR12: DAC accesses reach the cursor palette
	clCursorLarge  = 0x04 // SR12: 64x64 instead of 32x32

	clMMIOEnable  = 0x04 // SR17
	clMMIOPCIAddr = 0x40 // SR17: MMIO at the LFB's top, not at 0xb8000

	clBankDual = 0x01 // GR0B
	clBank16K  = 0x20 // GR0B: 16 KiB bank granularity instead of 4 KiB

	// CLGD5446ID is CR27's part ID (CIRRUS_ID_CLGD5446).
	CLGD5446ID = 0x2e << 2

	// clRealVRAM is the VRAM the chip addresses: QEMU's CL-GD5446 has 4
	// MiB (real_vram_size) whatever vgamem_mb allocates; every address
	// the registers form is masked to it.
	clRealVRAM = 4 << 20
	clAddrMask = clRealVRAM - 1
	// clLinearMMIOMask selects the last 256 bytes of the LFB, where the
	// blitter registers show when SR17 enables MMIO at the PCI address.
	clLinearMMIOMask = clRealVRAM - 256
)

// cirrus is the extension state of a Core that is a CL-GD5446 (QEMU
// CirrusVGAState beyond VGACommonState). Guarded by Core.mu.
type cirrus struct {
	sr        [0x20]byte // SR05-SR1F (SR00-04 are the Core's)
	gr        [0x40]byte // GR09-GR39 (GR00-08 are the Core's)
	shadowGR  [2]byte    // GR00/GR01 as written (the blitter's colours)
	dacLock   byte       // hidden DAC access counter (QEMU lockindex)
	dacData   byte       // hidden DAC register (15/16-bpp select)
	cursorPal [48]byte   // the 16 cursor colours (SR12 bit 1)
	cursorX   uint16
	cursorY   uint16

	bankBase  [2]uint32
	bankLimit [2]uint32

	blt blitter
}

// clReset sets the registers QEMU's cirrus_reset gives a CL-GD5446 on
// top of the VGA's reset (4 MiB, 64-bit memory, PCI).
func (c *Core) clResetLocked() {
	cl := c.cl
	cl.sr = [0x20]byte{}
	cl.gr = [0x40]byte{}
	cl.sr[0x06] = 0x0f
	cl.sr[0x1f] = 0x2d
	cl.gr[0x18] = 0x0f
	cl.sr[0x0f] = 0x98
	cl.sr[0x17] = 0x20
	cl.sr[0x15] = 0x04
	c.r.cr[0x27] = CLGD5446ID
	cl.dacLock = 5
	cl.dacData = 0
	cl.blt.reset(c)
}

// svga reports SR07 bit 0: the banked window and the SVGA depths.
func (cl *cirrus) svga() bool { return cl.sr[0x07]&clSR7SVGA != 0 }

// mmioAtTop reports whether the blitter registers show in the LFB's last
// 256 bytes (SR17 bits 2 and 6).
func (cl *cirrus) mmioAtTop() bool { return cl.sr[0x17]&0x44 == 0x44 }

// mmioInWindow reports whether they show at 0xb8000 of the window.
func (cl *cirrus) mmioInWindow() bool { return cl.sr[0x17]&0x44 == 0x04 }

// readSRLocked reads SR[index] (QEMU cirrus_vga_read_sr): 0xff for
// indices the chip does not decode; the cursor position registers repeat
// every 0x20.
func (c *Core) clReadSRLocked() byte {
	i := c.r.srIndex
	cl := c.cl
	switch {
	case i <= 4:
		return c.r.sr[i]
	case i&0x1f == 0x10 || i&0x1f == 0x11:
		return cl.sr[i&0x1f]
	case i <= 0x1f:
		return cl.sr[i]
	}
	return 0xff
}

func (c *Core) clWriteSRLocked(v byte) {
	i := c.r.srIndex
	cl := c.cl
	switch {
	case i <= 4:
		c.r.sr[i] = v & srMask[i]
		c.vbeUpdateLocked()
	case i == 0x06: // extensions unlock: reads 0x12 when unlocked
		if v&0x17 == 0x12 {
			cl.sr[6] = 0x12
		} else {
			cl.sr[6] = 0x0f
		}
	case i&0x1f == 0x10: // cursor X, bits 0-2 from the index
		cl.sr[0x10] = v
		cl.cursorX = uint16(v)<<3 | uint16(i>>5)
	case i&0x1f == 0x11:
		cl.sr[0x11] = v
		cl.cursorY = uint16(v)<<3 | uint16(i>>5)
	case i == 0x17: // bits 3-5 are the read-only bus type
		cl.sr[0x17] = cl.sr[0x17]&0x38 | v&0xc7
	case i >= 0x07 && i <= 0x1f:
		cl.sr[i] = v
	}
	// SR05 and indices past 0x1f are not decoded.
}

// clReadGRLocked reads GR[i] (QEMU cirrus_vga_read_gr).
func (c *Core) clReadGRLocked(i byte) byte {
	cl := c.cl
	switch {
	case i <= 1:
		return cl.shadowGR[i]
	case i <= 8:
		return c.r.gr[i]
	case i < 0x3a:
		return cl.gr[i]
	}
	return 0xff
}

// clWriteGRLocked writes GR[i] (QEMU cirrus_vga_write_gr); the blitter
// starts from GR31 (or GR2A with auto-start).
func (c *Core) clWriteGRLocked(i, v byte) {
	cl := c.cl
	switch {
	case i <= 1:
		c.r.gr[i] = v & grMask[i]
		cl.shadowGR[i] = v
	case i == 5: // bits 0-2: write modes 0-5
		c.r.gr[5] = v & 0x7f
	case i <= 8:
		c.r.gr[i] = v & grMask[i]
	case i <= 0x0b:
		cl.gr[i] = v
		c.clUpdateBanksLocked()
	case i >= 0x10 && i <= 0x15, i == 0x20, i == 0x22, i == 0x24, i == 0x26, i == 0x28, i == 0x29,
		i == 0x2c, i == 0x2d, i == 0x2f, i == 0x30, i == 0x32, i == 0x33, i == 0x34, i == 0x35, i == 0x38, i == 0x39:
		cl.gr[i] = v
	case i == 0x21, i == 0x23, i == 0x25, i == 0x27:
		cl.gr[i] = v & 0x1f
	case i == 0x2a:
		cl.gr[i] = v & 0x3f
		if cl.gr[0x31]&bltAutoStart != 0 {
			cl.blt.start(c)
		}
	case i == 0x2e:
		cl.gr[i] = v & 0x3f
	case i == 0x31:
		cl.blt.writeControl(c, v)
	}
}

// clUpdateBanksLocked recomputes both window banks (QEMU
// cirrus_update_bank_ptr): GR09 (and GR0A in dual-bank mode) in 4 or 16
// KiB units; in single-bank mode the upper 32 KiB continue the first.
func (c *Core) clUpdateBanksLocked() {
	cl := c.cl
	for b := range 2 {
		off := uint32(cl.gr[0x09])
		if cl.gr[0x0b]&clBankDual != 0 {
			off = uint32(cl.gr[0x09+b])
		}
		if cl.gr[0x0b]&clBank16K != 0 {
			off <<= 14
		} else {
			off <<= 12
		}
		var limit uint32
		if off < clRealVRAM {
			limit = clRealVRAM - off
		}
		if cl.gr[0x0b]&clBankDual == 0 && b != 0 {
			if limit > 0x8000 {
				off += 0x8000
				limit -= 0x8000
			} else {
				limit = 0
			}
		}
		if limit == 0 {
			off = 0
		}
		cl.bankBase[b], cl.bankLimit[b] = off, limit
	}
}

// clReadCRLocked reads CR[index] (QEMU cirrus_vga_read_cr): the
// standard registers, the extended ones, the attribute controller's
// flip-flop and index readback; 0xff for the rest.
func (c *Core) clReadCRLocked() byte {
	r := &c.r
	switch i := r.crIndex; {
	case i <= 0x18, i >= 0x19 && i <= 0x1d, i == 0x22, i == 0x25, i == 0x27:
		return r.cr[i]
	case i == 0x24:
		if r.arFlip {
			return 0x80
		}
		return 0
	case i == 0x26:
		return r.arIndex & 0x3f
	}
	return 0xff
}

func (c *Core) clWriteCRLocked(v byte) {
	r := &c.r
	switch i := r.crIndex; {
	case i <= 0x18:
		if r.cr[crVSyncEnd]&0x80 != 0 && i <= crOverflow {
			if i == crOverflow {
				r.cr[crOverflow] = r.cr[crOverflow]&^0x10 | v&0x10
			}
			return
		}
		r.cr[i] = v
	case i >= 0x19 && i <= 0x1d:
		r.cr[i] = v
	}
}

// clReadPortLocked is QEMU cirrus_vga_ioport_read for the ports whose
// meaning the CL-GD5446 changes; ok false leaves p to the VGA.
func (c *Core) clReadPortLocked(p uint64) (byte, bool) {
	r := &c.r
	cl := c.cl
	switch p {
	case 0x3c5:
		return c.clReadSRLocked(), true
	case 0x3c6: // the hidden DAC register answers the fifth read in a row
		if cl.dacLock++; cl.dacLock == 5 {
			cl.dacLock = 0
			return cl.dacData, true
		}
		return 0xff, true
	case 0x3c8:
		cl.dacLock = 0
		return r.dacWrite, true
	case 0x3c9:
		var v byte
		if cl.sr[0x12]&clCursorHidden != 0 {
			v = cl.cursorPal[int(r.dacRead&0x0f)*3+int(r.dacSub)]
		} else {
			v = r.palette[int(r.dacRead)*3+int(r.dacSub)]
		}
		if r.dacSub++; r.dacSub == 3 {
			r.dacSub = 0
			r.dacRead++
		}
		return v, true
	case 0x3cf:
		return c.clReadGRLocked(r.grIndex), true
	case 0x3b5, 0x3d5:
		return c.clReadCRLocked(), true
	}
	return 0, false
}

func (c *Core) clWritePortLocked(p uint64, v byte) bool {
	r := &c.r
	cl := c.cl
	switch p {
	case 0x3c4:
		r.srIndex = v
	case 0x3c5:
		c.clWriteSRLocked(v)
	case 0x3c6:
		if cl.dacLock == 4 {
			cl.dacData = v
		}
		cl.dacLock = 0
	case 0x3c9:
		r.dacCache[r.dacSub] = v
		if r.dacSub++; r.dacSub == 3 {
			if cl.sr[0x12]&clCursorHidden != 0 {
				copy(cl.cursorPal[int(r.dacWrite&0x0f)*3:], r.dacCache[:])
			} else {
				copy(r.palette[int(r.dacWrite)*3:], r.dacCache[:])
			}
			r.dacSub = 0
			r.dacWrite++
		}
	case 0x3ce:
		r.grIndex = v
	case 0x3cf:
		c.clWriteGRLocked(r.grIndex, v)
	case 0x3b5, 0x3d5:
		c.clWriteCRLocked(v)
	default:
		return false
	}
	return true
}

// clShift is the address shift GR0B's extended write modes imply: 16
// (x16 addressing) or 8 (x8) bytes per address.
func (cl *cirrus) shift() uint {
	switch {
	case cl.gr[0x0b]&0x14 == 0x14:
		return 4
	case cl.gr[0x0b]&0x02 != 0:
		return 3
	}
	return 0
}

// mapped reports QEMU's fast path (cirrus_update_memory_access: VRAM
// mapped directly into the LFB and the window banks): no MMIO at the LFB
// top, no blit waiting for data, no address scaling, no write mode 4/5.
// The mapped LFB shows all of the allocated VRAM unmasked.
func (c *Core) clMapped() bool {
	cl := c.cl
	if cl.mmioAtTop() || cl.blt.feeding() || cl.shift() != 0 {
		return false
	}
	return !c.clMode45()
}

// clMode45 reports write modes 4/5 enabled (GR05 bits 0-2 and GR0B bit 2).
func (c *Core) clMode45() bool {
	m := c.r.gr[5] & 7
	return (m == 4 || m == 5) && c.cl.gr[0x0b]&0x04 != 0
}

// clWriteVRAMLocked stores a byte at a (masked) VRAM address in the
// current write mode (QEMU cirrus_mem_writeb_mode4and5_*): modes 4 and 5
// expand each bit to a pixel of the foreground (and, mode 5, background)
// colour, 8 or 16 bpp.
func (c *Core) clWriteVRAMLocked(a uint32, v byte) {
	a &= clAddrMask
	if !c.clMode45() {
		c.vram[a] = v
		return
	}
	cl := c.cl
	mode5 := c.r.gr[5]&7 == 5
	wide := cl.gr[0x0b]&0x14 == 0x14
	for x := range uint32(8) {
		bit := v&(0x80>>x) != 0
		if !bit && !mode5 {
			continue
		}
		if wide {
			lo, hi := cl.shadowGR[1], cl.gr[0x11]
			if !bit {
				lo, hi = cl.shadowGR[0], cl.gr[0x10]
			}
			c.vram[(a+2*x)&clAddrMask] = lo
			c.vram[(a+2*x+1)&clAddrMask] = hi
		} else {
			col := cl.shadowGR[1]
			if !bit {
				col = cl.shadowGR[0]
			}
			c.vram[(a+x)&clAddrMask] = col
		}
	}
}

// clReadWindowLocked is the window in SVGA mode (QEMU
// cirrus_vga_mem_read): two 32 KiB banks at 0xa0000, the blitter
// registers at 0xb8000 when SR17 says so.
func (c *Core) clReadWindowLocked(off uint64) byte {
	cl := c.cl
	off &= 0x1ffff
	switch {
	case off < 0x10000:
		b, bo := off>>15, uint32(off&0x7fff)
		if c.clMapped() {
			a := uint64(cl.bankBase[b]) + uint64(bo)
			if a < uint64(len(c.vram)) {
				return c.vram[a]
			}
			return 0xff
		}
		if bo >= cl.bankLimit[b] {
			return 0xff
		}
		a := (bo + cl.bankBase[b]) << cl.shift()
		return c.vram[a&clAddrMask]
	case off >= 0x18000 && off < 0x18100 && cl.mmioInWindow():
		return c.clReadBltLocked(off & 0xff)
	}
	return 0xff
}

func (c *Core) clWriteWindowLocked(off uint64, v byte) {
	cl := c.cl
	off &= 0x1ffff
	switch {
	case off < 0x10000:
		if cl.blt.feeding() {
			cl.blt.feed(c, v)
			return
		}
		b, bo := off>>15, uint32(off&0x7fff)
		if c.clMapped() {
			a := uint64(cl.bankBase[b]) + uint64(bo)
			if a < uint64(len(c.vram)) {
				c.vram[a] = v
			}
			return
		}
		if bo >= cl.bankLimit[b] {
			return
		}
		c.clWriteVRAMLocked((bo+cl.bankBase[b])<<cl.shift(), v)
	case off >= 0x18000 && off < 0x18100 && cl.mmioInWindow():
		c.clWriteBltLocked(off&0xff, v)
	}
}

// clReadLinearLocked reads a byte of the LFB (BAR 0 below 16 MiB; QEMU
// cirrus_linear_read, or the VRAM QEMU maps there on its fast path).
func (c *Core) clReadLinearLocked(off uint64) byte {
	cl := c.cl
	if off >= uint64(len(c.vram)) {
		return 0
	}
	if c.clMapped() {
		return c.vram[off]
	}
	a := uint32(off) & clAddrMask
	if cl.mmioAtTop() && a&clLinearMMIOMask == clLinearMMIOMask {
		return c.clReadBltLocked(uint64(a & 0xff))
	}
	return c.vram[(a<<cl.shift())&clAddrMask]
}

func (c *Core) clWriteLinearLocked(off uint64, v byte) {
	cl := c.cl
	if off >= uint64(len(c.vram)) {
		return
	}
	if c.clMapped() {
		c.vram[off] = v
		return
	}
	a := uint32(off) & clAddrMask
	switch {
	case cl.mmioAtTop() && a&clLinearMMIOMask == clLinearMMIOMask:
		c.clWriteBltLocked(uint64(a&0xff), v)
	case cl.blt.feeding():
		cl.blt.feed(c, v)
	default:
		c.clWriteVRAMLocked(a<<cl.shift(), v)
	}
}

// The blitter's memory-mapped registers (QEMU CIRRUS_MMIO_*): offset to
// GR index.
var bltMMIO = func() (m [0x41]byte) {
	for i := range m {
		m[i] = 0xff
	}
	for off, gr := range map[int]byte{
		0x00: 0x00, 0x01: 0x10, 0x02: 0x12, 0x03: 0x14, // background colour
		0x04: 0x01, 0x05: 0x11, 0x06: 0x13, 0x07: 0x15, // foreground colour
		0x08: 0x20, 0x09: 0x21, 0x0a: 0x22, 0x0b: 0x23, // width, height
		0x0c: 0x24, 0x0d: 0x25, 0x0e: 0x26, 0x0f: 0x27, // pitches
		0x10: 0x28, 0x11: 0x29, 0x12: 0x2a, // destination
		0x14: 0x2c, 0x15: 0x2d, 0x16: 0x2e, // source
		0x17: 0x2f, 0x18: 0x30, 0x1a: 0x32, 0x1b: 0x33,
		0x1c: 0x34, 0x1d: 0x35, 0x20: 0x38, 0x21: 0x39,
		0x40: 0x31, // status / start
	} {
		m[off] = gr
	}
	return
}()

func (c *Core) clReadBltLocked(off uint64) byte {
	if off < uint64(len(bltMMIO)) && bltMMIO[off] != 0xff {
		return c.clReadGRLocked(bltMMIO[off])
	}
	return 0xff
}

func (c *Core) clWriteBltLocked(off uint64, v byte) {
	if off < uint64(len(bltMMIO)) && bltMMIO[off] != 0xff {
		c.clWriteGRLocked(bltMMIO[off], v)
	}
}

// clBPP is QEMU cirrus_get_bpp: 0 in the VGA modes, else the SR07 depth
// (15 or 16 by the hidden DAC register).
func (c *Core) clBPP() int {
	cl := c.cl
	if !cl.svga() {
		return 0
	}
	switch cl.sr[0x07] & clSR7BPPMask {
	case 0x02, 0x06:
		if cl.dacData&0x0f == 1 {
			return 16
		}
		return 15
	case 0x04:
		return 24
	case 0x08:
		return 32
	}
	return 8
}

// offsetsLocked is QEMU's get_offsets: the line offset in bytes, the
// start address in dwords and the line compare; the Cirrus extends the
// first two with CR1B/CR1D bits.
func (c *Core) offsetsLocked() (lineOff, start, lineCompare int) {
	r := &c.r
	lineOff = int(r.cr[crOffset]) << 3
	start = int(r.cr[crStartLo]) | int(r.cr[crStartHi])<<8
	lineCompare = int(r.cr[crLineCompare]) | int(r.cr[crOverflow]&0x10)<<4 | int(r.cr[crMaxScan]&0x40)<<3
	if c.cl != nil {
		lineOff = (int(r.cr[crOffset]) | int(r.cr[0x1b]&0x10)<<4) << 3
		start |= int(r.cr[0x1b]&0x01)<<16 | int(r.cr[0x1b]&0x0c)<<15 | int(r.cr[0x1d]&0x80)<<12
	}
	return
}

// clScanMode describes a Cirrus true-colour picture (15/16/24/32 bpp,
// 256-colour shift mode, video on) for the Scanout; Enabled false for
// everything the legacy renderer draws.
func (c *Core) clScanMode() Mode {
	r := &c.r
	if r.arIndex&0x20 == 0 || r.gr[gfxMisc]&1 == 0 || (r.gr[gfxMode]>>5)&3 < 2 {
		return Mode{}
	}
	bpp := c.clBPP()
	if bpp < 15 {
		return Mode{}
	}
	w := (int(r.cr[crHDisp]) + 1) * 8
	h := c.src.vdispLocked() + 1
	if r.cr[0x1a]&1 != 0 {
		h *= 2
	}
	lineOff, start, _ := c.offsetsLocked()
	return Mode{Enabled: true, XRes: w, YRes: h, BPP: bpp, LineLength: uint32(lineOff), Start: uint32(start) * 4,
		shadow: c.cl.sr[0x12]&clCursorShow != 0}
}

// clCursorRowLocked draws the hardware cursor over row, the XRGB8888
// pixels of screen line y from column x0 on a screen scrW pixels wide
// (QEMU cirrus_cursor_draw_line): 32x32 or 64x64, two bit planes in the
// last 16 KiB of the chip's VRAM (SR13 selects the pattern); plane bits
// 01 invert the pixel, 10 and 11 paint cursor colours 0 and 15.
func (c *Core) clCursorRowLocked(row []byte, y, x0, scrW int) {
	cl := c.cl
	if cl.sr[0x12]&clCursorShow == 0 {
		return
	}
	size, cy, cx := 32, int(cl.cursorY), int(cl.cursorX)
	if cl.sr[0x12]&clCursorLarge != 0 {
		size = 64
	}
	if y < cy || y >= cy+size || cx >= scrW {
		return
	}
	src, plane := clRealVRAM-16*1024, 128
	if size == 64 {
		src += int(cl.sr[0x13]&0x3c)*256 + (y-cy)*16
		plane = 8
	} else {
		src += int(cl.sr[0x13]&0x3f)*256 + (y-cy)*4
	}
	colour := func(i int) uint32 {
		p := cl.cursorPal[3*i:]
		return c6to8(p[0])<<16 | c6to8(p[1])<<8 | c6to8(p[2])
	}
	c0, c1 := colour(0), colour(15)
	n := len(row) / 4
	for x := max(cx, x0); x < min(cx+size, scrW, x0+n); x++ {
		i := x - cx
		b0 := c.vram[src+i>>3] >> (7 - i&7) & 1
		b1 := c.vram[src+plane+i>>3] >> (7 - i&7) & 1
		p := row[4*(x-x0):]
		switch b0 | b1<<1 {
		case 1:
			binary.LittleEndian.PutUint32(p, binary.LittleEndian.Uint32(p)^0xffffff)
		case 2:
			binary.LittleEndian.PutUint32(p, c0)
		case 3:
			binary.LittleEndian.PutUint32(p, c1)
		}
	}
}
