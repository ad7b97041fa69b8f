package vga

import "encoding/binary"

// The CL-GD5446 BitBLT engine as QEMU 7.2 runs it (hw/display/
// cirrus_vga.c cirrus_bitblt_start and cirrus_vga_rop*.h): screen to
// screen copies forwards and backwards with the 16 raster operations,
// 8/16-bit transparency, 8x8 pattern fills, colour expansion (plain,
// transparent, patterned), solid fills, and system-to-screen blits fed
// through the window or the LFB.
//
// Every blit is checked before it runs as QEMU's blit_is_unsafe does
// (the fix set of CVE-2014-8106, CVE-2016-9921/9922, CVE-2017-2615,
// CVE-2017-2620, CVE-2017-7980): a zero pitch, or a first or last line
// outside the allocated VRAM, refuses the blit. Independently of that,
// every single VRAM access masks its address to the chip's 4 MiB and
// every source-buffer access to the buffer, so no register value can
// reach outside either.

// GR30 (mode), GR31 (control), GR33 (mode extension) bits.
const (
	bltBackwards   = 0x01
	bltMemSysDest  = 0x02
	bltMemSysSrc   = 0x04
	bltTransparent = 0x08
	bltPattern     = 0x40
	bltColorExpand = 0x80

	bltBusy      = 0x01
	bltStart     = 0x02
	bltReset     = 0x04
	bltFIFOUsed  = 0x10
	bltAutoStart = 0x80

	bltExtSolidFill = 0x04
	bltExtInvert    = 0x02
	bltExtDWord     = 0x01

	// bltBufSize is the system-to-screen line buffer (CIRRUS_BLTBUFSIZE).
	bltBufSize = 2048 * 4
)

// ropIndex maps GR32's raster operation codes to the 16 functions;
// every other code does nothing (QEMU rop_to_index).
var ropIndex = func() (t [256]byte) {
	for i := range t {
		t[i] = ropNop
	}
	for i, code := range []byte{0x00, 0x05, 0x06, 0x09, 0x0b, 0x0d, 0x0e, 0x50, 0x59, 0x6d, 0x90, 0x95, 0xad, 0xd0, 0xd6, 0xda} {
		t[code] = byte(i)
	}
	return
}()

const ropNop = 2

// rop applies raster operation i (an index of ropIndex) to destination d
// and source s.
func rop(i byte, d, s uint32) uint32 {
	switch i {
	case 0:
		return 0
	case 1:
		return s & d
	case 3:
		return s &^ d
	case 4:
		return ^d
	case 5:
		return s
	case 6:
		return ^uint32(0)
	case 7:
		return ^s & d
	case 8:
		return s ^ d
	case 9:
		return s | d
	case 10:
		return ^s | ^d
	case 11:
		return ^(s ^ d)
	case 12:
		return s | ^d
	case 13:
		return ^s
	case 14:
		return ^s | d
	case 15:
		return ^s & ^d
	}
	return d
}

// Blit kinds (which of QEMU's rop function tables was chosen).
const (
	kindFwd = iota
	kindBkwd
	kindFwdTransp
	kindBkwdTransp
	kindPattern
	kindExpandTransp
	kindExpand
	kindExpandPatternTransp
	kindExpandPattern
)

// blitter is the engine's state between a start and the data a
// system-to-screen blit waits for.
type blitter struct {
	width, height      int
	dstPitch, srcPitch int
	dst, src           uint32
	mode, modeExt      byte
	ropIdx             byte
	pw                 int // bytes per pixel
	fg, bg             uint32
	kind               int

	buf      [bltBufSize]byte
	ptr, end int    // the line being received: buf[ptr:end] still to come
	counter  uint32 // bytes of source data still expected
}

// feeding reports a system-to-screen blit waiting for data.
func (b *blitter) feeding() bool { return b.ptr != b.end }

// reset stops the engine (QEMU cirrus_bitblt_reset).
func (b *blitter) reset(c *Core) {
	c.cl.gr[0x31] &^= bltStart | bltBusy | bltFIFOUsed
	b.ptr, b.end, b.counter = 0, 0, 0
}

// writeControl is a GR31 write: clearing the reset bit resets, setting
// the start bit starts.
func (b *blitter) writeControl(c *Core, v byte) {
	g := &c.cl.gr
	old := g[0x31]
	g[0x31] = v
	switch {
	case old&bltReset != 0 && v&bltReset == 0:
		b.reset(c)
	case old&bltStart == 0 && v&bltStart != 0:
		b.start(c)
	}
}

func (c *Core) clColour(pw int, lo byte, regs [3]byte) uint32 {
	g := &c.cl.gr
	v := uint32(lo)
	for i := 1; i < pw; i++ {
		v |= uint32(g[regs[i-1]]) << (8 * i)
	}
	return v
}

func (b *blitter) fgColour(c *Core) {
	b.fg = c.clColour(b.pw, c.cl.shadowGR[1], [3]byte{0x11, 0x13, 0x15})
}
func (b *blitter) bgColour(c *Core) {
	b.bg = c.clColour(b.pw, c.cl.shadowGR[0], [3]byte{0x10, 0x12, 0x14})
}

// start runs (or, system-to-screen, arms) the blit the registers
// describe (QEMU cirrus_bitblt_start).
func (b *blitter) start(c *Core) {
	g := &c.cl.gr
	g[0x31] |= bltBusy
	b.width = (int(g[0x20]) | int(g[0x21])<<8) + 1
	b.height = (int(g[0x22]) | int(g[0x23])<<8) + 1
	b.dstPitch = int(g[0x24]) | int(g[0x25])<<8
	b.srcPitch = int(g[0x26]) | int(g[0x27])<<8
	b.dst = (uint32(g[0x28]) | uint32(g[0x29])<<8 | uint32(g[0x2a])<<16) & clAddrMask
	b.src = (uint32(g[0x2c]) | uint32(g[0x2d])<<8 | uint32(g[0x2e])<<16) & clAddrMask
	b.mode, b.modeExt = g[0x30], g[0x33]
	rp := g[0x32]
	b.pw = int(b.mode>>4&3) + 1
	b.mode &^= 0x30
	b.ropIdx = ropIndex[rp]

	if b.mode&(bltMemSysSrc|bltMemSysDest) == bltMemSysSrc|bltMemSysDest {
		b.reset(c)
		return
	}
	if b.modeExt&bltExtSolidFill != 0 &&
		b.mode&(bltMemSysDest|bltTransparent|bltPattern|bltColorExpand) == bltPattern|bltColorExpand {
		b.fgColour(c)
		// An unsafe fill is dropped without a reset: GR31 stays busy,
		// as QEMU leaves it.
		if !b.unsafe(c, true) {
			b.run(c, -1, b.dst, 0, b.dstPitch, 0, b.height)
			b.reset(c)
		}
		return
	}
	switch {
	case b.mode&(bltColorExpand|bltPattern) == bltColorExpand:
		if b.mode&bltTransparent != 0 {
			if b.modeExt&bltExtInvert != 0 {
				b.bgColour(c)
			} else {
				b.fgColour(c)
			}
			b.kind = kindExpandTransp
		} else {
			b.fgColour(c)
			b.bgColour(c)
			b.kind = kindExpand
		}
	case b.mode&bltPattern != 0:
		switch {
		case b.mode&bltColorExpand == 0:
			b.kind = kindPattern
		case b.mode&bltTransparent != 0:
			if b.modeExt&bltExtInvert != 0 {
				b.bgColour(c)
			} else {
				b.fgColour(c)
			}
			b.kind = kindExpandPatternTransp
		default:
			b.fgColour(c)
			b.bgColour(c)
			b.kind = kindExpandPattern
		}
	default:
		transp := b.mode&bltTransparent != 0
		if transp && b.pw > 2 {
			b.reset(c) // transparency without expansion is 8/16 bpp only
			return
		}
		b.kind = kindFwd
		if b.mode&bltBackwards != 0 {
			b.dstPitch, b.srcPitch = -b.dstPitch, -b.srcPitch
			b.kind = kindBkwd
		}
		if transp {
			b.kind += kindFwdTransp - kindFwd
		}
	}
	switch {
	case b.mode&bltMemSysSrc != 0:
		if !b.toScreen(c) {
			b.reset(c)
		}
	case b.mode&bltMemSysDest != 0: // screen to system: not emulated (QEMU neither)
		b.reset(c)
	default:
		// Refused or done, the engine is idle again.
		if b.mode&bltPattern != 0 {
			b.patternCopy(c, true)
		} else if !b.unsafe(c, false) {
			b.run(c, b.kind, b.dst, b.src, b.dstPitch, b.srcPitch, b.height)
		}
		b.reset(c)
	}
}

// regionUnsafe is QEMU blit_region_is_unsafe: the lines from addr
// stepping by pitch must lie in VRAM.
func (b *blitter) regionUnsafe(c *Core, pitch int, addr uint32) bool {
	if pitch == 0 {
		return true
	}
	size := int64(len(c.vram))
	if pitch < 0 {
		lo := int64(addr) + int64(b.height-1)*int64(pitch) - int64(b.width)
		return lo < -1 || int64(addr) >= size
	}
	return int64(addr)+int64(b.height-1)*int64(pitch)+int64(b.width) > size
}

func (b *blitter) unsafe(c *Core, dstOnly bool) bool {
	if b.width > bltBufSize || b.regionUnsafe(c, b.dstPitch, b.dst) {
		return true
	}
	return !dstOnly && b.regionUnsafe(c, b.srcPitch, b.src)
}

// patternCopy runs a pattern blit from VRAM (the pattern aligned to its
// size, 8x8 pixels) or from the received buffer.
func (b *blitter) patternCopy(c *Core, video bool) bool {
	var src uint32
	if video {
		size := uint32(256)
		switch c.clBPP() {
		case 8:
			size = 64
		case 15, 16:
			size = 128
		}
		b.src &^= size - 1
		if uint64(b.src)+uint64(size) > uint64(len(c.vram)) {
			return false
		}
		src = b.src
	}
	if b.unsafe(c, true) {
		return false
	}
	b.run(c, b.kind, b.dst, src, b.dstPitch, 0, b.height)
	return true
}

// toScreen arms a system-to-screen blit (QEMU cirrus_bitblt_cputovideo):
// the source arrives a line (or the whole pattern) at a time.
func (b *blitter) toScreen(c *Core) bool {
	if b.unsafe(c, true) {
		return false
	}
	b.mode &^= bltMemSysSrc
	switch {
	case b.mode&bltPattern != 0:
		b.srcPitch = 8 * 8 * b.pw
		if b.mode&bltColorExpand != 0 {
			b.srcPitch = 8
		}
		b.counter = uint32(b.srcPitch)
	default:
		switch {
		case b.mode&bltColorExpand == 0:
			b.srcPitch = (b.width + 3) &^ 3 // lines arrive in dwords
		case b.modeExt&bltExtDWord != 0:
			b.srcPitch = (b.width/b.pw + 31) >> 5 // as QEMU computes it
		default:
			b.srcPitch = (b.width/b.pw + 7) >> 3
		}
		b.counter = uint32(b.srcPitch) * uint32(b.height)
	}
	b.ptr, b.end = 0, b.srcPitch
	return true
}

// feed takes one byte of a system-to-screen blit's source.
func (b *blitter) feed(c *Core, v byte) {
	b.buf[b.ptr] = v
	if b.ptr++; b.ptr >= b.end {
		b.next(c)
	}
}

// next draws what a full buffer holds (QEMU cirrus_bitblt_cputovideo_next).
func (b *blitter) next(c *Core) {
	if b.counter == 0 {
		return
	}
	if b.mode&bltPattern != 0 {
		b.patternCopy(c, false)
		b.reset(c)
		return
	}
	for {
		// A blit started while this one was receiving (QEMU lets it)
		// may have changed the pitch under the buffer: stop rather than
		// index past the line.
		if b.srcPitch <= 0 || b.srcPitch > b.end || b.counter < uint32(b.srcPitch) {
			b.reset(c)
			return
		}
		b.run(c, b.kind, b.dst, 0, 0, 0, 1) // the line received
		b.dst += uint32(b.dstPitch)
		if b.counter -= uint32(b.srcPitch); b.counter == 0 {
			b.reset(c)
			return
		}
		n := copy(b.buf[:], b.buf[b.srcPitch:b.end])
		b.ptr, b.end = n, b.srcPitch
		if b.ptr < b.end {
			return
		}
	}
}

// Source and destination accesses: every address masked.

func (b *blitter) src8(c *Core, a uint32) uint32 {
	if b.counter != 0 {
		return uint32(b.buf[a&(bltBufSize-1)])
	}
	return uint32(c.vram[a&clAddrMask])
}

func (b *blitter) src16(c *Core, a uint32) uint32 {
	if b.counter != 0 {
		return uint32(binary.LittleEndian.Uint16(b.buf[a&(bltBufSize-1)&^1:]))
	}
	return uint32(binary.LittleEndian.Uint16(c.vram[a&clAddrMask&^1:]))
}

func (b *blitter) src32(c *Core, a uint32) uint32 {
	if b.counter != 0 {
		return binary.LittleEndian.Uint32(b.buf[a&(bltBufSize-1)&^3:])
	}
	return binary.LittleEndian.Uint32(c.vram[a&clAddrMask&^3:])
}

func (b *blitter) put8(c *Core, a, s uint32) {
	p := &c.vram[a&clAddrMask]
	*p = byte(rop(b.ropIdx, uint32(*p), s))
}

func (b *blitter) putPixel(c *Core, a, col uint32) {
	switch b.pw {
	case 1:
		b.put8(c, a, col)
	case 2:
		p := c.vram[a&clAddrMask&^1:]
		binary.LittleEndian.PutUint16(p, uint16(rop(b.ropIdx, uint32(binary.LittleEndian.Uint16(p)), col)))
	case 3:
		b.put8(c, a, col)
		b.put8(c, a+1, col>>8)
		b.put8(c, a+2, col>>16)
	default:
		p := c.vram[a&clAddrMask&^3:]
		binary.LittleEndian.PutUint32(p, rop(b.ropIdx, binary.LittleEndian.Uint32(p), col))
	}
}

// run draws h lines of a blit of kind (-1: solid fill) with the given
// addresses and pitches, the width the registers'.
func (b *blitter) run(c *Core, kind int, dst, src uint32, dstPitch, srcPitch, h int) {
	if b.ropIdx == ropNop {
		return
	}
	w := b.width
	pw := b.pw
	gr2f := int(c.cl.gr[0x2f])
	switch kind {
	case -1:
		for range h {
			if b.fillRow(c, dst, w) {
				dst += uint32(dstPitch)
				continue
			}
			a := dst
			for x := 0; x < w; x += pw {
				b.putPixel(c, a, b.fg)
				a += uint32(pw)
			}
			dst += uint32(dstPitch)
		}
	case kindFwd, kindFwdTransp:
		dp, sp := dstPitch-w, srcPitch-w
		if h > 1 && (dp < 0 || sp < 0) {
			return
		}
		step := 1
		if kind == kindFwdTransp && pw == 2 {
			step = 2
		}
		for range h {
			if kind == kindFwd && b.fastRow(c, dst, src, w) {
				dst += uint32(dstPitch)
				src += uint32(srcPitch)
				continue
			}
			for x := 0; x < w; x += step {
				b.copyPixel(c, kind == kindFwdTransp, step, dst, src)
				dst += uint32(step)
				src += uint32(step)
			}
			dst += uint32(dp)
			src += uint32(sp)
		}
	case kindBkwd, kindBkwdTransp:
		dp, sp := dstPitch+w, srcPitch+w
		step := 1
		if kind == kindBkwdTransp && pw == 2 {
			step = 2
		}
		for range h {
			if kind == kindBkwd && b.fastRow(c, dst-uint32(w-1), src-uint32(w-1), w) {
				dst += uint32(dstPitch)
				src += uint32(srcPitch)
				continue
			}
			for x := 0; x < w; x += step {
				if step == 2 {
					b.copyPixel(c, true, 2, dst-1, src-1)
				} else {
					b.copyPixel(c, kind == kindBkwdTransp, 1, dst, src)
				}
				dst -= uint32(step)
				src -= uint32(step)
			}
			dst += uint32(dp)
			src += uint32(sp)
		}
	case kindPattern:
		skip := (gr2f & 7) * pw
		pitch := uint32(32)
		switch pw {
		case 1:
			pitch = 8
		case 2:
			pitch = 16
		case 3:
			skip = gr2f & 0x1f
		}
		py := b.src & 7
		for range h {
			px := uint32(skip)
			a := dst + uint32(skip)
			row := src + py*pitch
			for x := skip; x < w; x += pw {
				var col uint32
				switch pw {
				case 1:
					col = b.src8(c, row+px)
					px = (px + 1) & 7
				case 2:
					col = b.src16(c, row+px)
					px = (px + 2) & 15
				case 3:
					p := row + px*3
					col = b.src8(c, p) | b.src8(c, p+1)<<8 | b.src8(c, p+2)<<16
					px = (px + 1) & 7
				default:
					col = b.src32(c, row+px)
					px = (px + 4) & 31
				}
				b.putPixel(c, a, col)
				a += uint32(pw)
			}
			py = (py + 1) & 7
			dst += uint32(dstPitch)
		}
	case kindExpandTransp, kindExpand, kindExpandPatternTransp, kindExpandPattern:
		transp := kind == kindExpandTransp || kind == kindExpandPatternTransp
		sskip := gr2f & 7
		dskip := sskip * pw
		if transp && pw == 3 {
			dskip = gr2f & 0x1f
			sskip = dskip / 3
		}
		var xor, col uint32
		if transp {
			col = b.fg
			if b.modeExt&bltExtInvert != 0 {
				xor, col = 0xff, b.bg
			}
		}
		pattern := kind == kindExpandPatternTransp || kind == kindExpandPattern
		py := b.src & 7
		for range h {
			a := dst + uint32(dskip)
			var bits, mask uint32
			bitpos := 7 - sskip
			if pattern {
				bits = b.src8(c, src+py) ^ xor
			} else {
				mask = 0x80 >> uint(sskip)
				bits = b.src8(c, src) ^ xor
				src++
			}
			for x := dskip; x < w; x += pw {
				var set bool
				if pattern {
					// A skip past the byte shifts by a negative count in
					// QEMU; x86 takes it modulo 32.
					set = (bits>>(uint(bitpos)&31))&1 != 0
					bitpos = (bitpos - 1) & 7
				} else {
					if mask&0xff == 0 {
						mask = 0x80
						bits = b.src8(c, src) ^ xor
						src++
					}
					set = bits&mask != 0
					mask >>= 1
				}
				switch {
				case !transp && set:
					b.putPixel(c, a, b.fg)
				case !transp:
					b.putPixel(c, a, b.bg)
				case set:
					b.putPixel(c, a, col)
				}
				a += uint32(pw)
			}
			py = (py + 1) & 7
			dst += uint32(dstPitch)
		}
	}
}

// fastRow copies one row of a plain screen-to-screen copy at once when
// that gives what the byte loop gives: the ROP is the plain source,
// the blit reads VRAM, neither range wraps at 4 MiB and they do not
// overlap. false leaves the row to the byte loop.
func (b *blitter) fastRow(c *Core, dst, src uint32, w int) bool {
	if b.ropIdx != 5 || b.counter != 0 || dst > clRealVRAM-uint32(w) || src > clRealVRAM-uint32(w) ||
		dst < src+uint32(w) && src < dst+uint32(w) {
		return false
	}
	copy(c.vram[dst:dst+uint32(w)], c.vram[src:src+uint32(w)])
	return true
}

// fillRow paints one row of a plain solid fill (the foreground colour
// with the source ROP) at once when that gives what the pixel loop
// gives: pixels aligned as the 16/32-bit writes align them, no wrap.
func (b *blitter) fillRow(c *Core, dst uint32, w int) bool {
	pw := uint32(b.pw)
	n := (uint32(w) + pw - 1) / pw * pw // the loop's last pixel may pass w
	if b.ropIdx != 5 || (pw == 2 || pw == 4) && dst%pw != 0 || dst > clRealVRAM-n {
		return false
	}
	row := c.vram[dst : dst+n]
	for i := range pw {
		row[i] = byte(b.fg >> (8 * i))
	}
	for done := pw; done < n; done *= 2 {
		copy(row[done:], row[:done])
	}
	return true
}

// copyPixel is one step of a screen-to-screen copy: a byte, or with
// transparency a byte or a 16-bit pixel that is written only when the
// result differs from GR34(/35).
func (b *blitter) copyPixel(c *Core, transp bool, size int, dst, src uint32) {
	if size == 2 {
		tr := uint32(c.cl.gr[0x34]) | uint32(c.cl.gr[0x35])<<8
		p := c.vram[dst&clAddrMask&^1:]
		if v := rop(b.ropIdx, uint32(binary.LittleEndian.Uint16(p)), b.src16(c, src)) & 0xffff; v != tr {
			binary.LittleEndian.PutUint16(p, uint16(v))
		}
		return
	}
	p := &c.vram[dst&clAddrMask]
	v := byte(rop(b.ropIdx, uint32(*p), b.src8(c, src)))
	if transp && v == c.cl.gr[0x34] {
		return
	}
	*p = v
}
