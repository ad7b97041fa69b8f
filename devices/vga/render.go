package vga

import (
	"bytes"
	"encoding/binary"

	"godm/display"
)

// The picture, as QEMU 7.2's vga_update_display draws it: blank when the
// attribute controller's palette-address-source bit (0x20 in the index)
// is clear outside VBE modes; text mode (vga_draw_text) when GR06 bit 0
// is clear; otherwise the graphics modes (vga_draw_graphic): planar 16
// colours, CGA 4 colours, 256 colours (mode 13h doubled, VBE 8 bpp), and
// the VBE true-colour modes through the Scanout. Everything is read from
// VRAM: the font is in plane 2, where the VGA BIOS loads it.
//
// Not drawn: the cursor's and characters' blinking (the cursor is always
// on, as QEMU's is while its virtual clock stands still, e.g. under
// qtest), horizontal panning, the overscan border.

// screen is the VGA's display.Source.
type screen struct {
	c *Core

	// Guarded by c.mu.
	key      screenKey // what the current mode was derived from
	mode     display.Mode
	fb, prev []byte // the last legacy frame (XRGB8888), and the one collected
	fbGen    uint64 // Core.gen when fb was drawn
	fbMode   display.Mode
	prevGen  uint64 // Core.gen when prev was collected
	lastW    int
	lastH    int
	pal      [256]uint32
}

// screenKey identifies a picture geometry; a change is a new Mode.Serial.
type screenKey struct {
	scan          bool   // the VBE true-colour Scanout shows
	scanSerial    uint64 // its serial then
	width, height int
}

const (
	textMaxCells = 160 * 100 // QEMU CH_ATTR_SIZE
	defaultW     = 640
	defaultH     = 480
)

// Source returns the VGA's picture as a display.Source.
func (c *Core) Source() display.Source { return c.src }

// c6to8 widens a 6-bit DAC value (QEMU c6_to_8).
func c6to8(v byte) uint32 {
	v &= 0x3f
	b := uint32(v & 1)
	return uint32(v)<<2 | b<<1 | b
}

func (c *Core) rgb6(i int) uint32 {
	p := c.r.palette[3*i:]
	return c6to8(p[0])<<16 | c6to8(p[1])<<8 | c6to8(p[2])
}

// palette16Locked fills pal[0..15] through the attribute controller's
// palette registers and colour select (QEMU update_palette16).
func (s *screen) palette16Locked() {
	r := &s.c.r
	for i := range 16 {
		v := int(r.ar[i])
		if r.ar[atcMode]&0x80 != 0 {
			v = int(r.ar[atcColorPage]&0xf)<<4 | v&0xf
		} else {
			v = int(r.ar[atcColorPage]&0xc)<<4 | v&0x3f
		}
		s.pal[i] = s.c.rgb6(v)
	}
}

// palette256Locked fills pal from the DAC (QEMU update_palette256): 6-bit
// values, or 8-bit ones with VBE's DAC8 bit.
func (s *screen) palette256Locked(dac8 bool) {
	for i := range 256 {
		if dac8 {
			p := s.c.r.palette[3*i:]
			s.pal[i] = uint32(p[0])<<16 | uint32(p[1])<<8 | uint32(p[2])
		} else {
			s.pal[i] = s.c.rgb6(i)
		}
	}
}

// geometryLocked decides what is shown and its size.
func (s *screen) geometryLocked() screenKey {
	c := s.c
	vm := c.VBE.Mode()
	if vm.Enabled && (vm.BPP == 15 || vm.BPP == 16 || vm.BPP == 24 || vm.BPP == 32) ||
		c.cl != nil && c.clScanMode().Enabled {
		m := c.scan.modeLocked()
		return screenKey{scan: true, scanSerial: m.Serial, width: m.Width, height: m.Height}
	}
	w, h, ok := s.sizeLocked(vm)
	if !ok {
		w, h = s.lastW, s.lastH
		if w == 0 {
			w, h = defaultW, defaultH
		}
	}
	return screenKey{width: w, height: h}
}

// sizeLocked is the legacy picture's size, false when nothing is drawn
// (blank, or a transient impossible text geometry).
func (s *screen) sizeLocked(vm Mode) (w, h int, ok bool) {
	r := &s.c.r
	if r.arIndex&0x20 == 0 && !vm.Enabled {
		return 0, 0, false
	}
	if r.gr[gfxMisc]&1 == 0 {
		cols, rows, cw, ch := s.textGeometryLocked()
		if rows == 0 || cols*rows > textMaxCells || cols*rows <= 1 {
			return 0, 0, false
		}
		return cols * cw, rows * ch, true
	}
	w, h = s.graphicSizeLocked(vm)
	if w <= 0 || h <= 0 || w > display.MaxSide || h > display.MaxSide {
		return 0, 0, false
	}
	return w, h, true
}

func (s *screen) textGeometryLocked() (cols, rows, cw, ch int) {
	c := s.c
	r := &c.r
	cw = 8
	if c.seq(seqClockMode)&0x01 == 0 {
		cw = 9
	}
	if c.seq(seqClockMode)&0x08 != 0 {
		cw = 16
	}
	ch = int(r.cr[crMaxScan]&0x1f) + 1
	cols = int(r.cr[crHDisp]) + 1
	if r.cr[0x06] == 100 { // QEMU's CGA 160x100x16 special case
		rows = 100
	} else {
		rows = (s.vdispLocked() + 1) / ch
	}
	return
}

func (s *screen) vdispLocked() int {
	r := &s.c.r
	return int(r.cr[crVDispEnd]) | int(r.cr[crOverflow]&0x02)<<7 | int(r.cr[crOverflow]&0x40)<<3
}

func (s *screen) graphicSizeLocked(vm Mode) (w, h int) {
	c := s.c
	r := &c.r
	if vm.Enabled {
		w, h = vm.XRes, vm.YRes
	} else {
		w = (int(r.cr[crHDisp]) + 1) * 8
		h = s.vdispLocked() + 1
		if c.cl != nil && r.cr[0x1a]&1 != 0 {
			h *= 2 // Cirrus interlace (QEMU cirrus_get_resolution)
		}
	}
	if shift := (r.gr[gfxMode] >> 5) & 3; shift <= 1 && c.seq(seqClockMode)&0x08 != 0 {
		w <<= 1
	}
	return
}

// modeLocked returns the current Mode, a new serial for a new geometry.
func (s *screen) modeLocked() display.Mode {
	k := s.geometryLocked()
	if k == s.key && s.mode.Serial != 0 {
		return s.mode
	}
	s.key = k
	serial := s.mode.Serial + 1
	if k.scan {
		s.mode = s.c.scan.modeLocked()
	} else {
		s.mode = display.Mode{Width: k.width, Height: k.height, Stride: k.width * 4, Format: display.XRGB8888}
		s.lastW, s.lastH = k.width, k.height
	}
	s.mode.Serial = serial
	return s.mode
}

func (s *screen) Mode() display.Mode {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.modeLocked()
}

func (s *screen) Read(dst []byte, m display.Mode, r display.Rect) bool {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if s.modeLocked() != m || r.Empty() || r.Intersect(m.Bounds()) != r {
		return false
	}
	if s.key.scan {
		s.c.scan.readLocked(dst, r)
		return true
	}
	s.renderLocked()
	row := r.W * 4
	for y := 0; y < r.H; y++ {
		off := (r.Y+y)*m.Stride + r.X*4
		copy(dst[y*row:(y+1)*row], s.fb[off:off+row])
	}
	return true
}

func (s *screen) CollectDirty(t *display.Tiles) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	m := s.modeLocked()
	if s.key.scan {
		s.c.scan.collectLocked(t)
		return
	}
	cols, rows := t.Size()
	if wc, wr := (m.Width+display.TileSize-1)/display.TileSize, (m.Height+display.TileSize-1)/display.TileSize; wc != cols || wr != rows {
		t.MarkAll()
		return
	}
	if s.prevGen == s.c.gen && len(s.prev) == m.Width*m.Height*4 && s.fbMode == m {
		return // nothing written since the last collection (text blink is not drawn)
	}
	s.renderLocked()
	s.prevGen = s.c.gen
	if len(s.prev) != len(s.fb) {
		t.MarkAll()
		s.prev = append(s.prev[:0], s.fb...)
		return
	}
	for cy := range rows {
		for cx := range cols {
			r := display.Rect{X: cx * display.TileSize, Y: cy * display.TileSize, W: display.TileSize, H: display.TileSize}.Intersect(m.Bounds())
			for y := r.Y; y < r.Y+r.H; y++ {
				a, b := y*m.Stride+r.X*4, y*m.Stride+(r.X+r.W)*4
				if !bytes.Equal(s.fb[a:b], s.prev[a:b]) {
					t.Set(cx, cy)
					break
				}
			}
		}
	}
	copy(s.prev, s.fb)
}

// renderLocked draws the legacy picture of the current mode into fb.
func (s *screen) renderLocked() {
	m := s.mode
	if s.fbGen == s.c.gen && s.fbMode == m && len(s.fb) == m.Width*m.Height*4 {
		return
	}
	s.fbGen, s.fbMode = s.c.gen, m
	n := m.Width * m.Height * 4
	if cap(s.fb) < n {
		s.fb = make([]byte, n)
	}
	s.fb = s.fb[:n]
	vm := s.c.VBE.Mode()
	w, h, ok := s.sizeLocked(vm)
	if !ok || w != m.Width || h != m.Height {
		clear(s.fb)
		return
	}
	if s.c.r.gr[gfxMisc]&1 == 0 {
		s.textLocked()
		return
	}
	s.graphicLocked(vm)
}

func (s *screen) put(x, y int, v uint32) {
	binary.LittleEndian.PutUint32(s.fb[(y*s.mode.Width+x)*4:], v)
}

// textLocked draws text mode (QEMU vga_draw_text): character and
// attribute in planes 0 and 1 of each dword from the start address,
// glyph rows in plane 2 at 128 bytes per character, 32 rows each.
func (s *screen) textLocked() {
	c := s.c
	r := &c.r
	vram := c.vram
	cols, rows, cw, ch := s.textGeometryLocked()
	s.palette16Locked()
	v := int(c.seq(seqCharMap))
	fonts := [2]int{
		((v>>4)&1|(v<<1)&6)*8192*4 + 2,
		((v>>5)&1|(v>>1)&6)*8192*4 + 2,
	}
	lineOff, start, _ := c.offsetsLocked()
	cursor := int(r.cr[crCursorLo]) | int(r.cr[crCursorHi])<<8
	curStart, curLast := int(r.cr[crCursorStart]&0x1f), min(int(r.cr[crCursorEnd]&0x1f), ch-1)
	showCursor := r.cr[crCursorStart]&0x20 == 0 && curLast >= curStart && curStart < ch
	mask := len(vram) - 1
	line := start * 4
	for cy := range rows {
		src := line
		for cx := range cols {
			a := src & mask
			chr, attr := int(vram[a]), vram[(a+1)&mask]
			fg, bg := s.pal[attr&0xf], s.pal[attr>>4]
			font := fonts[(attr>>3)&1] + chr*32*4
			dup9 := chr >= 0xb0 && chr <= 0xdf && r.ar[atcMode]&0x04 != 0
			isCursor := showCursor && src == cursor*4
			for y := range ch {
				bits := vram[(font+y*4)&mask]
				if isCursor && y >= curStart && y <= curLast {
					bits = 0xff
				}
				py := cy*ch + y
				px := cx * cw
				for x := range 8 {
					col := bg
					if bits&(0x80>>x) != 0 {
						col = fg
					}
					if cw == 16 {
						s.put(px+2*x, py, col)
						s.put(px+2*x+1, py, col)
					} else {
						s.put(px+x, py, col)
					}
				}
				if cw == 9 {
					col := bg
					if (dup9 || (isCursor && y >= curStart && y <= curLast)) && bits&1 != 0 {
						col = fg
					}
					s.put(px+8, py, col)
				}
			}
			src += 4
		}
		line += lineOff
	}
}

// graphicLocked draws the graphics modes line by line (QEMU
// vga_draw_graphic): start address and line offset, CGA and Hercules
// addressing (CR17 bits 0-1), scan-line repetition (CR09), line compare.
func (s *screen) graphicLocked(vm Mode) {
	c := s.c
	r := &c.r
	shift := (r.gr[gfxMode] >> 5) & 3
	doubleScan := int(r.cr[crMaxScan] >> 7)
	multiScan := doubleScan
	if shift != 1 {
		multiScan = ((int(r.cr[crMaxScan]&0x1f) + 1) << doubleScan) - 1
	}
	var width int
	if vm.Enabled {
		width = vm.XRes
	} else {
		width = (int(r.cr[crHDisp]) + 1) * 8
	}
	half := c.seq(seqClockMode)&0x08 != 0
	var draw func(y, addr, width int)
	switch {
	case shift == 0:
		s.palette16Locked()
		draw = func(y, addr, width int) { s.line4(y, addr, width, half) }
	case shift == 1:
		s.palette16Locked()
		draw = func(y, addr, width int) { s.line2(y, addr, width, half) }
	case vm.Enabled && vm.BPP == 8, c.cl != nil && c.clBPP() == 8:
		s.palette256Locked(vm.DAC8Bit)
		draw = func(y, addr, width int) { s.line8(y, addr, width, false) }
	default:
		s.palette256Locked(vm.Enabled && vm.DAC8Bit)
		draw = func(y, addr, width int) { s.line8(y, addr, width, true) }
	}
	lineOff, addr1, lineCompare := c.offsetsLocked()
	addr1 *= 4
	if vm.Enabled {
		lineOff = int(vm.LineLength)
		addr1 = int(vm.Start)
		lineCompare = 65535
	}
	y1, run := 0, multiScan
	for y := 0; y < s.mode.Height; y++ {
		addr := addr1
		if r.cr[crMode]&1 == 0 {
			sh := 14 + int(r.cr[crMode]>>6&1)
			addr = addr&^(1<<sh) | (y1&1)<<sh
		}
		if r.cr[crMode]&2 == 0 {
			addr = addr&^0x8000 | (y1&2)<<14
		}
		draw(y, addr, width)
		if c.cl != nil {
			w := s.mode.Width
			c.clCursorRowLocked(s.fb[y*w*4:(y+1)*w*4], y, 0, w)
		}
		if run == 0 {
			if mask := int(r.cr[crMode]&3) ^ 3; y1&mask == mask {
				addr1 += lineOff
			}
			y1++
			run = multiScan
		} else {
			run--
		}
		if y == lineCompare {
			addr1 = 0
		}
	}
}

func (s *screen) dword(addr int) uint32 {
	v := s.c.vram
	m := len(v) - 1
	return uint32(v[addr&m]) | uint32(v[(addr+1)&m])<<8 | uint32(v[(addr+2)&m])<<16 | uint32(v[(addr+3)&m])<<24
}

// line4 draws a planar 16-colour line: 8 pixels per dword, bit 7 first,
// colour bit p from plane p (planes masked by AR12); half doubles pixels.
func (s *screen) line4(y, addr, width int, half bool) {
	pm := mask16[s.c.r.ar[atcPlaneEnable]&0xf]
	x := 0
	for range width >> 3 {
		d := s.dword(addr) & pm
		for b := 7; b >= 0; b-- {
			col := (d>>b)&1 | (d>>(8+b))&1<<1 | (d>>(16+b))&1<<2 | (d>>(24+b))&1<<3
			v := s.pal[col]
			s.putClip(x, y, v)
			x++
			if half {
				s.putClip(x, y, v)
				x++
			}
		}
		addr += 4
	}
}

// line2 draws a CGA 4-colour line: 2-bit pixels of plane 0 (and plane 2
// as the upper bits) for the first four, then planes 1 and 3.
func (s *screen) line2(y, addr, width int, half bool) {
	pm := mask16[s.c.r.ar[atcPlaneEnable]&0xf]
	x := 0
	for range width >> 3 {
		d := s.dword(addr) & pm
		for _, planes := range [2][2]int{{0, 2}, {1, 3}} {
			lo, hi := byte(d>>(8*planes[0])), byte(d>>(8*planes[1]))
			for sh := 6; sh >= 0; sh -= 2 {
				v := s.pal[(lo>>sh)&3|((hi>>sh)&3)<<2]
				s.putClip(x, y, v)
				x++
				if half {
					s.putClip(x, y, v)
					x++
				}
			}
		}
		addr += 4
	}
}

// line8 draws a 256-colour line from consecutive bytes; doubled is mode
// 13h's (QEMU VGA_DRAW_LINE8D2: width/2 bytes, each two pixels).
func (s *screen) line8(y, addr, width int, doubled bool) {
	v := s.c.vram
	m := len(v) - 1
	if doubled {
		for x := 0; x+1 < width; x += 2 {
			col := s.pal[v[addr&m]]
			s.putClip(x, y, col)
			s.putClip(x+1, y, col)
			addr++
		}
		return
	}
	for x := range width {
		s.putClip(x, y, s.pal[v[(addr+x)&m]])
	}
}

func (s *screen) putClip(x, y int, v uint32) {
	if x < s.mode.Width {
		s.put(x, y, v)
	}
}
