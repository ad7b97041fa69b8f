package vga

import (
	"encoding/binary"
	"sync"

	"godm/devices"
)

// Legacy VGA register indices and bits used here (QEMU
// include/hw/display/vga_regs.h names, the IBM VGA reference's meaning).
const (
	seqClockMode = 0x01 // SR01: bit 0 8-dot characters, bit 3 dot clock / 2
	seqPlaneMask = 0x02 // SR02: map mask (planes written)
	seqCharMap   = 0x03 // SR03: character map select
	seqMemMode   = 0x04 // SR04: bit 3 chain 4

	gfxSRValue  = 0x00
	gfxSREnable = 0x01
	gfxCompare  = 0x02
	gfxRotate   = 0x03 // bits 0-2 rotate count, 3-4 function
	gfxReadMap  = 0x04
	gfxMode     = 0x05 // bits 0-1 write mode, 3 read mode, 4 odd/even, 5-6 shift
	gfxMisc     = 0x06 // bit 0 graphics, bits 2-3 memory map
	gfxDontCare = 0x07
	gfxBitMask  = 0x08

	atcMode        = 0x10
	atcPlaneEnable = 0x12
	atcColorPage   = 0x14
	atcCount       = 0x15 // ar[] holds 21 registers

	crHDisp       = 0x01
	crOverflow    = 0x07
	crMaxScan     = 0x09
	crCursorStart = 0x0a
	crCursorEnd   = 0x0b
	crStartHi     = 0x0c
	crStartLo     = 0x0d
	crCursorHi    = 0x0e
	crCursorLo    = 0x0f
	crVSyncEnd    = 0x11 // bit 7 locks CR0-CR7
	crVDispEnd    = 0x12
	crOffset      = 0x13
	crMode        = 0x17
	crLineCompare = 0x18

	st01VRetrace = 0x08
	st01DispOn   = 0x01
)

// Register write masks (QEMU hw/display/vga.c sr_mask and gr_mask).
var (
	srMask = [8]byte{0x03, 0x3d, 0x0f, 0x3f, 0x0e, 0x00, 0x00, 0xff}
	grMask = [16]byte{0x0f, 0x0f, 0x0f, 0x1f, 0x03, 0x7b, 0x0f, 0x0f, 0xff}
)

// mask16[i] expands the 4 bits of i to one byte per plane (plane p is
// byte p of a little-endian dword).
var mask16 = func() (m [16]uint32) {
	for i := range m {
		for p := range 4 {
			if i&(1<<p) != 0 {
				m[i] |= 0xff << (8 * p)
			}
		}
	}
	return
}()

// Legacy ports (QEMU vga_init_io's port list, base 0x3b0): the monochrome
// CRTC and status, the 0x3c0 block, the colour CRTC and status.
var legacyPorts = []struct{ Base, Size uint64 }{
	{0x3b4, 2}, {0x3ba, 1}, {0x3c0, 16}, {0x3d4, 2}, {0x3da, 1},
}

// Legacy memory window.
const (
	WindowBase = 0xa0000
	WindowSize = 0x20000
)

// regs is the legacy register file (QEMU VGACommonState's registers).
type regs struct {
	latch     uint32
	srIndex   byte
	sr        [8]byte
	srVBE     [8]byte // sr as VBE modes force it (QEMU's sr_vbe)
	grIndex   byte
	gr        [16]byte
	arIndex   byte
	ar        [atcCount]byte
	arFlip    bool
	crIndex   byte
	cr        [256]byte
	msr, fcr  byte
	st00      byte
	st01      byte
	dacState  byte
	dacSub    byte
	dacRead   byte
	dacWrite  byte
	dacCache  [3]byte
	palette   [768]byte
	vbeActive bool // VBE enabled when the registers were last forced
}

// Core is the standard VGA's state: the legacy registers, VRAM and the
// Bochs VBE registers, with the port, memory-window and MMIO handlers of
// QEMU 7.2's hw/display/vga.c. Methods are safe for concurrent use.
type Core struct {
	mu   sync.Mutex // guards r and every VRAM access
	r    regs
	gen  uint64 // counts writes to r and VRAM: the picture may have changed
	vram []byte
	VBE  *VBE
	scan *Scanout
	src  *screen
	cl   *cirrus // the CL-GD5446 extensions, nil for the standard VGA

	// p2m, when set, backs vram with guest frames (see P2M); lfbIn says
	// the LFB BAR is mapped onto them; dirtyBits is track_dirty_vram's
	// bitmap, one bit per VRAM page.
	p2m       P2M
	lfbIn     bool
	dirtyBits []byte
	// Cirrus: where its LFB BAR decodes (lfbDecode) and the gen its
	// device-side writes were last reported at.
	lfbBase   uint64
	lfbDecode bool
	p2mGen    uint64
	// drop releases restored frames when VRAM is not in the p2m here
	// (Config.Drop).
	drop func(gfn uint64) error
}

// NewCore returns a VGA with vramSize bytes of VRAM (a power of two of at
// least 256 KiB), in its reset state.
func NewCore(vramSize uint32) *Core {
	c := &Core{vram: make([]byte, vramSize)}
	c.VBE = NewVBE(vramSize, c.clearVRAM)
	c.scan = &Scanout{vbe: c.VBE, vram: c.vram, mu: &c.mu}
	c.scan.init()
	c.src = &screen{c: c}
	return c
}

// VRAM returns the video memory (tests and snapshots; hold no reference
// across guest accesses).
func (c *Core) VRAM() []byte { return c.vram }

func (c *Core) clearVRAM(n uint32) {
	c.mu.Lock()
	c.gen++
	clear(c.vram[:min(int(n), len(c.vram))])
	c.wroteLocked(0, uint64(min(int(n), len(c.vram))))
	c.mu.Unlock()
}

// Reset implements devices.Resetter (QEMU vga_common_reset: every
// register and the palette zero; VRAM kept).
func (c *Core) Reset() {
	c.VBE.Reset()
	c.mu.Lock()
	c.r = regs{}
	if c.cl != nil {
		c.clResetLocked()
		c.clSyncP2MLocked()
	}
	c.gen++
	c.mu.Unlock()
}

// vbeUpdateLocked forces the VGA registers an enabled VBE mode implies
// (QEMU vbe_update_vgaregs): graphics mode at 0xa0000/64K, no CGA
// addressing, the line offset, width and height, line compare off,
// chain 4 for 8+ bpp.
func (c *Core) vbeUpdateLocked() {
	c.gen++
	r := &c.r
	r.srVBE = r.sr
	m := c.VBE.Mode()
	r.vbeActive = m.Enabled
	if !m.Enabled {
		return
	}
	r.gr[gfxMisc] = r.gr[gfxMisc]&^0x0c | 0x04 | 0x01
	r.cr[crMode] |= 3
	r.cr[crOffset] = byte(m.LineLength >> 3)
	r.cr[crHDisp] = byte(m.XRes>>3 - 1)
	h := m.YRes - 1
	r.cr[crVDispEnd] = byte(h)
	r.cr[crOverflow] = r.cr[crOverflow]&^0x42 | byte(h>>7)&0x02 | byte(h>>3)&0x40
	r.cr[crLineCompare] = 0xff
	r.cr[crOverflow] |= 0x10
	r.cr[crMaxScan] |= 0x40
	shift := byte(2)
	if m.BPP == 4 {
		shift = 0
		r.srVBE[seqClockMode] &^= 8
	} else {
		r.srVBE[seqMemMode] |= 0x08
		r.srVBE[seqPlaneMask] |= 0x0f
	}
	r.gr[gfxMode] = r.gr[gfxMode]&^0x60 | shift<<5
	r.cr[crMaxScan] &^= 0x9f
}

// seq reads a sequencer register as memory access and display see it.
func (c *Core) seq(i int) byte {
	if c.r.vbeActive {
		return c.r.srVBE[i]
	}
	return c.r.sr[i]
}

// invalidPort reports a CRTC/status port of the other (mono/colour)
// emulation than the misc output register selects (QEMU
// vga_ioport_invalid): it reads 0xff and ignores writes.
func (c *Core) invalidPort(p uint64) bool {
	if c.r.msr&1 != 0 {
		return p >= 0x3b0 && p <= 0x3bf
	}
	return p >= 0x3d0 && p <= 0x3df
}

// ReadPort reads one legacy port byte (QEMU vga_ioport_read).
func (c *Core) ReadPort(p uint64) byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readPortLocked(p)
}

func (c *Core) readPortLocked(p uint64) byte {
	r := &c.r
	if c.invalidPort(p) {
		return 0xff
	}
	if c.cl != nil {
		if v, ok := c.clReadPortLocked(p); ok {
			return v
		}
	}
	switch p {
	case 0x3c0:
		if !r.arFlip {
			return r.arIndex
		}
		return 0
	case 0x3c1:
		if i := r.arIndex & 0x1f; i < atcCount {
			return r.ar[i]
		}
		return 0
	case 0x3c2:
		return r.st00
	case 0x3c4:
		return r.srIndex
	case 0x3c5:
		return r.sr[r.srIndex]
	case 0x3c7:
		return r.dacState
	case 0x3c8:
		return r.dacWrite
	case 0x3c9:
		v := r.palette[int(r.dacRead)*3+int(r.dacSub)]
		if r.dacSub++; r.dacSub == 3 {
			r.dacSub = 0
			r.dacRead++
		}
		return v
	case 0x3ca:
		return r.fcr
	case 0x3cc:
		return r.msr
	case 0x3ce:
		return r.grIndex
	case 0x3cf:
		return r.gr[r.grIndex]
	case 0x3b4, 0x3d4:
		return r.crIndex
	case 0x3b5, 0x3d5:
		return r.cr[r.crIndex]
	case 0x3ba, 0x3da:
		// QEMU's default ("dumb") retrace: vertical retrace and display
		// enable toggle on every read, so polling loops end; the read
		// also resets the attribute flip-flop.
		r.st01 ^= st01VRetrace | st01DispOn
		r.arFlip = false
		return r.st01
	}
	return 0
}

// WritePort writes one legacy port byte (QEMU vga_ioport_write).
func (c *Core) WritePort(p uint64, v byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writePortLocked(p, v)
}

func (c *Core) writePortLocked(p uint64, v byte) {
	c.gen++
	r := &c.r
	if c.invalidPort(p) {
		return
	}
	if c.cl != nil && c.clWritePortLocked(p, v) {
		return
	}
	switch p {
	case 0x3c0:
		if !r.arFlip {
			r.arIndex = v & 0x3f
		} else {
			switch i := r.arIndex & 0x1f; {
			case i < 0x10:
				r.ar[i] = v & 0x3f
			case i == atcMode:
				r.ar[i] = v &^ 0x10
			case i == 0x11:
				r.ar[i] = v
			case i == atcPlaneEnable:
				r.ar[i] = v &^ 0xc0
			case i == 0x13, i == atcColorPage:
				r.ar[i] = v &^ 0xf0
			}
		}
		r.arFlip = !r.arFlip
	case 0x3c2:
		r.msr = v &^ 0x10
	case 0x3c4:
		r.srIndex = v & 7
	case 0x3c5:
		r.sr[r.srIndex] = v & srMask[r.srIndex]
		c.vbeUpdateLocked()
	case 0x3c7:
		r.dacRead, r.dacSub, r.dacState = v, 0, 3
	case 0x3c8:
		r.dacWrite, r.dacSub, r.dacState = v, 0, 0
	case 0x3c9:
		r.dacCache[r.dacSub] = v
		if r.dacSub++; r.dacSub == 3 {
			copy(r.palette[int(r.dacWrite)*3:], r.dacCache[:])
			r.dacSub = 0
			r.dacWrite++
		}
	case 0x3ce:
		r.grIndex = v & 0x0f
	case 0x3cf:
		r.gr[r.grIndex] = v & grMask[r.grIndex]
		c.vbeUpdateLocked()
	case 0x3b4, 0x3d4:
		r.crIndex = v
	case 0x3b5, 0x3d5:
		// CR11 bit 7 write-protects CR0-CR7, except CR7 bit 4.
		if r.cr[crVSyncEnd]&0x80 != 0 && r.crIndex <= crOverflow {
			if r.crIndex == crOverflow {
				r.cr[crOverflow] = r.cr[crOverflow]&^0x10 | v&0x10
				c.vbeUpdateLocked()
			}
			return
		}
		r.cr[r.crIndex] = v
		c.vbeUpdateLocked()
	case 0x3ba, 0x3da:
		r.fcr = v & 0x10
	}
}

// window translates a legacy window offset (0..0x1ffff) to a VRAM
// address by the graphics controller's memory map (GR06 bits 2-3), or
// false outside the selected window.
func (c *Core) window(off uint64) (uint64, bool) {
	off &= 0x1ffff
	switch (c.r.gr[gfxMisc] >> 2) & 3 {
	case 0:
	case 1:
		if off >= 0x10000 {
			return 0, false
		}
		off += uint64(c.VBE.Mode().BankOffset)
	case 2:
		if off < 0x10000 || off >= 0x18000 {
			return 0, false
		}
		off -= 0x10000
	default:
		if off < 0x18000 {
			return 0, false
		}
		off -= 0x18000
	}
	return off, true
}

// ReadWindow reads one byte of the legacy window at offset off from
// 0xa0000 (QEMU vga_mem_readb).
func (c *Core) ReadWindow(off uint64) byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readWindowLocked(off)
}

func (c *Core) readWindowLocked(off uint64) byte {
	if c.cl != nil && c.cl.svga() {
		return c.clReadWindowLocked(off)
	}
	r := &c.r
	a, ok := c.window(off)
	if !ok {
		return 0xff
	}
	switch {
	case c.seq(seqMemMode)&0x08 != 0: // chain 4: bytes as they are
		if a >= uint64(len(c.vram)) {
			return 0xff
		}
		return c.vram[a]
	case r.gr[gfxMode]&0x10 != 0: // odd/even (text mode)
		plane := uint64(r.gr[gfxReadMap]&2) | a&1
		a = (a&^1)<<1 | plane
		if a >= uint64(len(c.vram)) {
			return 0xff
		}
		return c.vram[a]
	}
	// Planar: the read loads the latches.
	if a*4 >= uint64(len(c.vram)) {
		return 0xff
	}
	r.latch = binary.LittleEndian.Uint32(c.vram[a*4:])
	if r.gr[gfxMode]&0x08 == 0 { // read mode 0: one plane
		return byte(r.latch >> (8 * (r.gr[gfxReadMap] & 3)))
	}
	// Read mode 1: colour compare; a set bit where every cared-for plane
	// matches.
	v := (r.latch ^ mask16[r.gr[gfxCompare]&0xf]) & mask16[r.gr[gfxDontCare]&0xf]
	v |= v >> 16
	v |= v >> 8
	return ^byte(v)
}

// WriteWindow writes one byte of the legacy window (QEMU vga_mem_writeb):
// chain 4, odd/even, or the four planar write modes through the latches,
// the rotate, set/reset, logical function, bit mask and map mask.
func (c *Core) WriteWindow(off uint64, v byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writeWindowLocked(off, v)
}

func (c *Core) writeWindowLocked(off uint64, val byte) {
	c.gen++
	if c.p2m != nil {
		// Whichever of chain 4, odd/even or planar addressing applies,
		// the byte lands at a, 2a or 4a..4a+3.
		if a, ok := c.window(off); ok {
			c.p2m.Wrote(a, 1)
			c.p2m.Wrote(2*a, 2)
			c.p2m.Wrote(4*a, 4)
		}
	}
	if c.cl != nil && c.cl.svga() {
		c.clWriteWindowLocked(off, val)
		return
	}
	r := &c.r
	a, ok := c.window(off)
	if !ok {
		return
	}
	switch {
	case c.seq(seqMemMode)&0x08 != 0:
		if c.seq(seqPlaneMask)&(1<<(a&3)) != 0 && a < uint64(len(c.vram)) {
			c.vram[a] = val
		}
		return
	case r.gr[gfxMode]&0x10 != 0:
		plane := uint64(r.gr[gfxReadMap]&2) | a&1
		if c.seq(seqPlaneMask)&(1<<plane) != 0 {
			a = (a&^1)<<1 | plane
			if a < uint64(len(c.vram)) {
				c.vram[a] = val
			}
		}
		return
	}
	var v, bitMask uint32
	rot := r.gr[gfxRotate] & 7
	switch r.gr[gfxMode] & 3 {
	case 0:
		b := uint32(val>>rot | val<<(8-rot))
		v = b * 0x01010101
		set := mask16[r.gr[gfxSREnable]&0xf]
		v = v&^set | mask16[r.gr[gfxSRValue]&0xf]&set
		bitMask = uint32(r.gr[gfxBitMask])
	case 1:
		v = r.latch
		goto store
	case 2:
		v = mask16[val&0xf]
		bitMask = uint32(r.gr[gfxBitMask])
	case 3:
		b := val>>rot | val<<(8-rot)
		bitMask = uint32(r.gr[gfxBitMask] & b)
		v = mask16[r.gr[gfxSRValue]&0xf]
	}
	switch r.gr[gfxRotate] >> 3 & 3 {
	case 1:
		v &= r.latch
	case 2:
		v |= r.latch
	case 3:
		v ^= r.latch
	}
	bitMask *= 0x01010101
	v = v&bitMask | r.latch&^bitMask
store:
	wm := mask16[c.seq(seqPlaneMask)&0xf]
	if a*4 >= uint64(len(c.vram)) {
		return
	}
	old := binary.LittleEndian.Uint32(c.vram[a*4:])
	binary.LittleEndian.PutUint32(c.vram[a*4:], old&^wm|v&wm)
}

// readVRAM reads size bytes of VRAM at off (little-endian; all-ones
// outside VRAM): the linear framebuffer BAR.
func (c *Core) readVRAM(off uint64, size uint8) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var v uint64
	for i := uint64(0); i < uint64(size); i++ {
		b := byte(0xff)
		if off+i < uint64(len(c.vram)) {
			b = c.vram[off+i]
		}
		v |= uint64(b) << (8 * i)
	}
	return v
}

func (c *Core) writeVRAM(off uint64, size uint8, v uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for i := uint64(0); i < uint64(size); i++ {
		if off+i < uint64(len(c.vram)) {
			c.vram[off+i] = byte(v >> (8 * i))
		}
	}
	c.wroteLocked(off, uint64(size))
}

// Ports is the legacy port block as a devices.Handler: register it for
// every range of LegacyPorts. Wider accesses are split into bytes at
// consecutive ports, as QEMU's one-byte port list does.
func (c *Core) Ports() devices.Handler { return legacyHandler{c} }

// LegacyPorts lists the legacy port ranges (base, size).
func LegacyPorts() []struct{ Base, Size uint64 } { return legacyPorts }

type legacyHandler struct{ c *Core }

// isLegacyPort reports whether p is one of the VGA's ports; the bytes of
// a wide access beyond them read as all-ones (nothing answers there).
func isLegacyPort(p uint64) bool {
	for _, r := range legacyPorts {
		if p >= r.Base && p < r.Base+r.Size {
			return true
		}
	}
	return false
}

func (h legacyHandler) Read(a devices.Access) uint64 {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	var v uint64
	for i := range uint64(a.Size) {
		b := byte(0xff)
		if isLegacyPort(a.Addr + i) {
			b = h.c.readPortLocked(a.Addr + i)
		}
		v |= uint64(b) << (8 * i)
	}
	return v
}

func (h legacyHandler) Write(a devices.Access, v uint64) {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	for i := range uint64(a.Size) {
		if isLegacyPort(a.Addr + i) {
			h.c.writePortLocked(a.Addr+i, byte(v>>(8*i)))
		}
	}
}

// Window is the legacy memory window as a devices.Handler (register it
// at WindowBase for WindowSize bytes); wider accesses are bytes in
// ascending address order.
func (c *Core) Window() devices.Handler { return windowHandler{c} }

type windowHandler struct{ c *Core }

func (h windowHandler) Read(a devices.Access) uint64 {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	var v uint64
	for i := range uint64(a.Size) {
		v |= uint64(h.c.readWindowLocked(a.Offset+i)) << (8 * i)
	}
	return v
}

func (h windowHandler) Write(a devices.Access, v uint64) {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	for i := range uint64(a.Size) {
		h.c.writeWindowLocked(a.Offset+i, byte(v>>(8*i)))
	}
	h.c.clSyncP2MLocked()
}

// DISPI is the Bochs VBE index/data port pair (PortIndex, two ports)
// as a devices.Handler that also forces the VGA registers a mode implies.
func (c *Core) DISPI() devices.Handler { return dispiHandler{c} }

type dispiHandler struct{ c *Core }

// Read and Write take 16-bit accesses only (DISPIPorts); others read
// all-ones and are dropped, as QEMU's.
func (h dispiHandler) Read(a devices.Access) uint64 {
	if a.Size != 2 {
		return devices.SizeMask(a.Size)
	}
	return Ports{V: h.c.VBE}.Read(a)
}

func (h dispiHandler) Write(a devices.Access, v uint64) {
	if a.Size != 2 {
		return
	}
	Ports{V: h.c.VBE}.Write(a, v)
	if a.Addr != PortIndex {
		h.c.mu.Lock()
		h.c.vbeUpdateLocked()
		h.c.mu.Unlock()
	}
}
