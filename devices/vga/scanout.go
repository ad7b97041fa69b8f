package vga

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"sync"

	"godm/display"
)

// Scanout presents the VBE linear framebuffer in vram as a display.Source.
// 32-, 16- and 15-bpp modes are shown in their own format, 24-bpp modes
// as XRGB8888 (converted on Read); palette modes (4/8 bpp) and the legacy
// VGA modes are not emulated yet and show black.
//
// CollectDirty finds changed tiles by comparing a hash of each tile with
// the previous call's (a full read of the visible frame per refresh),
// unless VRAM is in the p2m (P2M): then Xen's track_dirty_vram bitmap
// says which pages the guest wrote, and tiles are hashed only after the
// device itself wrote.
type Scanout struct {
	vbe  *VBE
	vram []byte
	// modeOf, when set, describes the mode instead of vbe (the Cirrus
	// true-colour modes); called with mu held.
	modeOf func() Mode
	// expand shows 15- and 16-bpp modes as XRGB8888 the way QEMU 7.2's
	// Cirrus screendumps widen them: 15 bpp by its own line drawing
	// (vga_draw_line15: low bits zero; its display shares no x1r5g5b5
	// surface), 16 bpp by pixman from the shared surface (high bits
	// replicated into the low ones).
	expand bool
	// overlay draws over a row of XRGB8888 pixels (screen line y, from
	// column x) what the mode's shadow bit asks for: the Cirrus cursor.
	overlay func(row []byte, y, x int)

	// track, when set, reports the VRAM pages the guest wrote through the
	// LFB in the p2m (Xen's track_dirty_vram); gen counts the device's
	// own writes (Core.gen): while it stands still, the bitmap alone says
	// what changed. Both called or read with mu held.
	track   func() ([]byte, bool)
	wrote   func(off, n uint64) // P2M.Wrote, for WriteVRAM
	gen     *uint64
	lastGen uint64

	mu     *sync.Mutex // shared with the VRAM's writers (Core.mu)
	mode   display.Mode
	vmode  Mode // the VBE mode mode was built from
	seed   maphash.Seed
	hashes []uint64 // per tile, for the mode in mode.Serial
	tile   []byte
}

// rgb555 is the 15-bpp Bochs VBE layout.
var rgb555 = display.PixelFormat{BPP: 16, Depth: 15, TrueColour: true,
	RedMax: 31, GreenMax: 31, BlueMax: 31, RedShift: 10, GreenShift: 5}

// NewScanout shows vram (the VGA's whole VRAM) as programmed through v.
func NewScanout(v *VBE, vram []byte) *Scanout {
	s := &Scanout{vbe: v, vram: vram, mu: &sync.Mutex{}}
	s.init()
	return s
}

func (s *Scanout) init() { s.seed = maphash.MakeSeed() }

// blank is what a disabled or palette mode shows.
const blankW, blankH = 640, 480

// Mode implements display.Source.
func (s *Scanout) Mode() display.Mode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.modeLocked()
}

func (s *Scanout) modeLocked() display.Mode {
	var vm Mode
	if s.modeOf != nil {
		vm = s.modeOf()
	} else {
		vm = s.vbe.Mode()
	}
	if vm == s.vmode && s.mode.Serial != 0 {
		return s.mode
	}
	s.vmode = vm
	m := display.Mode{Width: blankW, Height: blankH, Stride: blankW * 4, Format: display.XRGB8888}
	if vm.Enabled {
		switch vm.BPP {
		case 32, 24:
			m = display.Mode{Width: vm.XRes, Height: vm.YRes, Stride: vm.XRes * 4, Format: display.XRGB8888}
		case 16, 15:
			if s.expand {
				m = display.Mode{Width: vm.XRes, Height: vm.YRes, Stride: vm.XRes * 4, Format: display.XRGB8888}
				break
			}
			if vm.BPP == 15 {
				m = display.Mode{Width: vm.XRes, Height: vm.YRes, Stride: int(vm.LineLength), Format: rgb555}
				break
			}
			m = display.Mode{Width: vm.XRes, Height: vm.YRes, Stride: int(vm.LineLength), Format: display.RGB565}
		}
	}
	m.Serial = s.mode.Serial + 1
	s.mode = m
	s.hashes = nil
	return m
}

// Read implements display.Source.
func (s *Scanout) Read(dst []byte, m display.Mode, r display.Rect) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.modeLocked() != m || r.Empty() || r.Intersect(m.Bounds()) != r {
		return false
	}
	s.readLocked(dst, r)
	return true
}

// readLocked copies r of the current mode; bytes outside VRAM read as 0.
func (s *Scanout) readLocked(dst []byte, r display.Rect) {
	vm := s.vmode
	bpp := s.mode.Format.BytesPerPixel()
	row := r.W * bpp
	if !vm.Enabled || (vm.BPP != 32 && vm.BPP != 24 && vm.BPP != 16 && vm.BPP != 15) {
		clear(dst[:r.H*row])
		return
	}
	srcBpp := (vm.BPP + 1) / 8
	for y := 0; y < r.H; y++ {
		out := dst[y*row : (y+1)*row]
		off := uint64(vm.Start) + uint64(r.Y+y)*uint64(vm.LineLength) + uint64(r.X*srcBpp)
		end := off + uint64(r.W*srcBpp)
		if end > uint64(len(s.vram)) {
			clear(out)
			continue
		}
		src := s.vram[off:end]
		switch {
		case s.expand && (vm.BPP == 15 || vm.BPP == 16):
			for x := 0; x < r.W; x++ {
				v := uint32(binary.LittleEndian.Uint16(src[2*x:]))
				var rgb uint32
				if vm.BPP == 15 {
					rgb = (v>>7&0xf8)<<16 | (v>>2&0xf8)<<8 | v<<3&0xf8
				} else if vm.shadow { // QEMU's vga_draw_line16
					rgb = (v>>8&0xf8)<<16 | (v>>3&0xfc)<<8 | v<<3&0xf8
				} else {
					r, g, b := v>>11, v>>5&0x3f, v&0x1f
					rgb = (r<<3|r>>2)<<16 | (g<<2|g>>4)<<8 | b<<3 | b>>2
				}
				binary.LittleEndian.PutUint32(out[4*x:], rgb)
			}
		case vm.BPP != 24:
			copy(out, src)
		default:
			for x := 0; x < r.W; x++ { // B, G, R bytes → 0x00RRGGBB
				binary.LittleEndian.PutUint32(out[4*x:], uint32(src[3*x])|uint32(src[3*x+1])<<8|uint32(src[3*x+2])<<16)
			}
		}
		if vm.shadow && s.overlay != nil && s.mode.Format == display.XRGB8888 {
			s.overlay(out, r.Y+y, r.X)
		}
	}
}

// CollectDirty implements display.Source by comparing tile hashes.
func (s *Scanout) CollectDirty(t *display.Tiles) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.collectLocked(t)
}

func (s *Scanout) collectLocked(t *display.Tiles) {
	m := s.modeLocked()
	cols, rows := t.Size()
	if wc, wr := (m.Width+display.TileSize-1)/display.TileSize, (m.Height+display.TileSize-1)/display.TileSize; wc != cols || wr != rows {
		t.MarkAll()
		return
	}
	first := s.hashes == nil
	if s.trackedLocked(t) && !first {
		return
	}
	if first {
		s.hashes = make([]uint64, cols*rows)
	}
	bpp := m.Format.BytesPerPixel()
	for cy := range rows {
		for cx := range cols {
			r := display.Rect{X: cx * display.TileSize, Y: cy * display.TileSize, W: display.TileSize, H: display.TileSize}.Intersect(m.Bounds())
			n := r.W * r.H * bpp
			if cap(s.tile) < n {
				s.tile = make([]byte, display.TileSize*display.TileSize*4)
			}
			s.readLocked(s.tile[:n], r)
			h := maphash.Bytes(s.seed, s.tile[:n])
			if first || h != s.hashes[cy*cols+cx] {
				s.hashes[cy*cols+cx] = h
				t.Set(cx, cy)
			}
		}
	}
}

// trackedLocked marks the rows of the VRAM pages the guest wrote through
// the LFB in the p2m (each page a band of scanlines, Tiles.MarkRows). It
// reports whether that is the whole story: false when there is no
// tracking, Xen refused, or the device itself wrote VRAM or registers
// since the last call (the blitter, the window, a mode change): the
// caller then compares tile hashes as well.
func (s *Scanout) trackedLocked(t *display.Tiles) bool {
	if s.track == nil {
		return false
	}
	dirty, ok := s.track()
	if !ok {
		return false
	}
	vm := s.vmode
	if vm.Enabled && vm.LineLength > 0 {
		start, ll, h := uint64(vm.Start), uint64(vm.LineLength), uint64(vm.YRes)
		for i, b := range dirty {
			for ; b != 0; b &= b - 1 {
				page := uint64(i*8 + bits.TrailingZeros8(b))
				lo, hi := page*pageSize, (page+1)*pageSize
				if hi <= start {
					continue
				}
				y0 := uint64(0)
				if lo > start {
					y0 = (lo - start) / ll
				}
				y1 := min((hi-start+ll-1)/ll, h)
				if y0 < y1 {
					t.MarkRows(int(y0), int(y1))
				}
			}
		}
	}
	if *s.gen != s.lastGen {
		s.lastGen = *s.gen
		return false
	}
	return true
}

// WriteVRAM stores b at VRAM offset off (clipped to VRAM): the path of a
// device model's own writes (the legacy window, tests).
func (s *Scanout) WriteVRAM(off int, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if off < 0 || off >= len(s.vram) {
		return
	}
	n := copy(s.vram[off:], b)
	if s.gen != nil {
		*s.gen++
	}
	if s.wrote != nil {
		s.wrote(uint64(off), uint64(n))
	}
}

// Scanout returns the VBE scanout of the VGA (its device-side VRAM
// writes, for tests).
func (c *Core) Scanout() *Scanout { return c.scan }
