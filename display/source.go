package display

import (
	"errors"
	"math/bits"
	"sync"
)

// TileSize is the side of a dirty tile in pixels: ZRLE's tile size (RFC
// 6143 §7.7.6), so a dirty tile is one encoded tile.
const TileSize = 64

// MaxSide is the largest width or height a Source may have: RFB carries
// sizes in 16 bits, and a VGA's largest Bochs VBE mode is far below it.
const MaxSide = 16384

// Rect is a rectangle of pixels.
type Rect struct{ X, Y, W, H int }

// Empty reports whether r has no pixels.
func (r Rect) Empty() bool { return r.W <= 0 || r.H <= 0 }

// Intersect returns the part of r inside o.
func (r Rect) Intersect(o Rect) Rect {
	x0, y0 := max(r.X, o.X), max(r.Y, o.Y)
	x1, y1 := min(r.X+r.W, o.X+o.W), min(r.Y+r.H, o.Y+o.H)
	if x1 <= x0 || y1 <= y0 {
		return Rect{}
	}
	return Rect{x0, y0, x1 - x0, y1 - y0}
}

// Union returns the bounding box of r and o (an empty one is ignored).
func (r Rect) Union(o Rect) Rect {
	if r.Empty() {
		return o
	}
	if o.Empty() {
		return r
	}
	x0, y0 := min(r.X, o.X), min(r.Y, o.Y)
	x1, y1 := max(r.X+r.W, o.X+o.W), max(r.Y+r.H, o.Y+o.H)
	return Rect{x0, y0, x1 - x0, y1 - y0}
}

// Mode is a framebuffer's geometry. Serial changes whenever any other
// field does (and may change on its own: a front end then redraws all).
type Mode struct {
	Width, Height int
	Stride        int // bytes from one row to the next
	Format        PixelFormat
	Serial        uint64
}

// Bounds is the whole framebuffer.
func (m Mode) Bounds() Rect { return Rect{0, 0, m.Width, m.Height} }

// Source is a framebuffer as a front end sees it. Its methods may be called
// from several goroutines.
type Source interface {
	// Mode is the current geometry.
	Mode() Mode
	// CollectDirty ORs the tiles written since the previous call into t
	// and forgets them. t is sized for the current mode by the caller
	// (Tiles.Reset); a source whose mode changed since marks it all.
	CollectDirty(t *Tiles)
	// Read copies r (inside m's bounds) into dst, rows packed at
	// r.W*BytesPerPixel bytes, in m's format. It returns false, copying
	// nothing, when the current mode is no longer m.
	Read(dst []byte, m Mode, r Rect) bool
}

// Tiles is a bitmap of TileSize×TileSize tiles over a framebuffer.
type Tiles struct {
	cols, rows int
	words      []uint64
}

// NewTiles returns an all-clean bitmap for a w×h framebuffer.
func NewTiles(w, h int) *Tiles {
	t := &Tiles{}
	t.Reset(w, h)
	return t
}

// Reset sizes t for a w×h framebuffer, all clean.
func (t *Tiles) Reset(w, h int) {
	t.cols, t.rows = (w+TileSize-1)/TileSize, (h+TileSize-1)/TileSize
	n := (t.cols*t.rows + 63) / 64
	if cap(t.words) >= n {
		t.words = t.words[:n]
		clear(t.words)
	} else {
		t.words = make([]uint64, n)
	}
}

// Size is the bitmap's size in tiles.
func (t *Tiles) Size() (cols, rows int) { return t.cols, t.rows }

// Set marks tile (cx, cy); out-of-range tiles are ignored.
func (t *Tiles) Set(cx, cy int) {
	if cx < 0 || cy < 0 || cx >= t.cols || cy >= t.rows {
		return
	}
	i := cy*t.cols + cx
	t.words[i/64] |= 1 << (i % 64)
}

// Get reports whether tile (cx, cy) is dirty.
func (t *Tiles) Get(cx, cy int) bool {
	if cx < 0 || cy < 0 || cx >= t.cols || cy >= t.rows {
		return false
	}
	i := cy*t.cols + cx
	return t.words[i/64]&(1<<(i%64)) != 0
}

// Clear unmarks tile (cx, cy).
func (t *Tiles) Clear(cx, cy int) {
	if cx < 0 || cy < 0 || cx >= t.cols || cy >= t.rows {
		return
	}
	i := cy*t.cols + cx
	t.words[i/64] &^= 1 << (i % 64)
}

// MarkRect marks every tile r touches.
func (t *Tiles) MarkRect(r Rect) {
	r = r.Intersect(Rect{0, 0, t.cols * TileSize, t.rows * TileSize})
	if r.Empty() {
		return
	}
	for cy := r.Y / TileSize; cy <= (r.Y+r.H-1)/TileSize; cy++ {
		for cx := r.X / TileSize; cx <= (r.X+r.W-1)/TileSize; cx++ {
			t.Set(cx, cy)
		}
	}
}

// MarkRows marks every tile of rows [y0, y1): what a dirty VRAM page
// becomes when pages are scanline ranges.
func (t *Tiles) MarkRows(y0, y1 int) {
	t.MarkRect(Rect{0, y0, t.cols * TileSize, y1 - y0})
}

// MarkAll marks every tile.
func (t *Tiles) MarkAll() {
	for i := range t.words {
		t.words[i] = ^uint64(0)
	}
	if n := t.cols * t.rows % 64; n != 0 && len(t.words) > 0 {
		t.words[len(t.words)-1] = 1<<n - 1
	}
}

// Or adds o's tiles; a bitmap of another size is ignored (false).
func (t *Tiles) Or(o *Tiles) bool {
	if o.cols != t.cols || o.rows != t.rows {
		return false
	}
	for i, w := range o.words {
		t.words[i] |= w
	}
	return true
}

// Count is the number of dirty tiles.
func (t *Tiles) Count() int {
	n := 0
	for _, w := range t.words {
		n += bits.OnesCount64(w)
	}
	return n
}

// Empty reports whether no tile is dirty.
func (t *Tiles) Empty() bool {
	for _, w := range t.words {
		if w != 0 {
			return false
		}
	}
	return true
}

// Buffer is a Source in ordinary memory, safe for concurrent use.
type Buffer struct {
	mu    sync.Mutex
	mode  Mode
	pix   []byte
	dirty Tiles
}

// ErrGeometry is returned for a size outside 1..MaxSide or an invalid format.
var ErrGeometry = errors.New("display: bad framebuffer geometry")

// NewBuffer returns a black w×h framebuffer in format f, all dirty.
func NewBuffer(w, h int, f PixelFormat) (*Buffer, error) {
	b := &Buffer{}
	if err := b.Resize(w, h, f); err != nil {
		return nil, err
	}
	return b, nil
}

// Resize changes the geometry (contents become black, all dirty).
func (b *Buffer) Resize(w, h int, f PixelFormat) error {
	if w < 1 || h < 1 || w > MaxSide || h > MaxSide || f.Validate() != nil {
		return ErrGeometry
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	stride := w * f.BytesPerPixel()
	b.mode = Mode{Width: w, Height: h, Stride: stride, Format: f, Serial: b.mode.Serial + 1}
	b.pix = make([]byte, stride*h)
	b.dirty.Reset(w, h)
	b.dirty.MarkAll()
	return nil
}

// Mode implements Source.
func (b *Buffer) Mode() Mode {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mode
}

// CollectDirty implements Source.
func (b *Buffer) CollectDirty(t *Tiles) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !t.Or(&b.dirty) {
		t.MarkAll()
	}
	clear(b.dirty.words)
}

// Read implements Source.
func (b *Buffer) Read(dst []byte, m Mode, r Rect) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m != b.mode || r.Intersect(m.Bounds()) != r || r.Empty() {
		return false
	}
	bpp := m.Format.BytesPerPixel()
	rowLen := r.W * bpp
	for y := 0; y < r.H; y++ {
		off := (r.Y+y)*m.Stride + r.X*bpp
		copy(dst[y*rowLen:(y+1)*rowLen], b.pix[off:off+rowLen])
	}
	return true
}

// Update lets f change the pixels of r (clipped to the framebuffer) and
// marks r dirty. f gets the whole framebuffer and its mode.
func (b *Buffer) Update(r Rect, f func(pix []byte, m Mode)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b.pix, b.mode)
	b.dirty.MarkRect(r.Intersect(b.mode.Bounds()))
}

// Fill paints r with an 8-bit-per-channel colour.
func (b *Buffer) Fill(r Rect, red, green, blue uint8) {
	b.Update(r, func(pix []byte, m Mode) {
		r = r.Intersect(m.Bounds())
		v := m.Format.Pixel(red, green, blue)
		bpp := m.Format.BytesPerPixel()
		for y := r.Y; y < r.Y+r.H; y++ {
			for x := r.X; x < r.X+r.W; x++ {
				m.Format.Store(pix[y*m.Stride+x*bpp:], v)
			}
		}
	})
}

// SetPixel paints one pixel.
func (b *Buffer) SetPixel(x, y int, red, green, blue uint8) {
	b.Fill(Rect{x, y, 1, 1}, red, green, blue)
}
