package display_test

import (
	"bufio"
	"bytes"
	"fmt"
	"image/png"
	"strings"
	"testing"

	"godm/devices"
	"godm/devices/i8042"
	"godm/display"
)

func TestTiles(t *testing.T) {
	tl := display.NewTiles(130, 65) // 3×2 tiles
	if c, r := tl.Size(); c != 3 || r != 2 || !tl.Empty() {
		t.Fatalf("size %d×%d empty=%v", c, r, tl.Empty())
	}
	tl.MarkRect(display.Rect{X: 63, Y: 63, W: 2, H: 2})
	if tl.Count() != 4 || !tl.Get(0, 0) || !tl.Get(1, 1) || tl.Get(2, 0) {
		t.Fatalf("MarkRect across a corner: %d tiles", tl.Count())
	}
	tl.MarkRect(display.Rect{X: -10, Y: 500, W: 5000, H: 5}) // outside: nothing
	if tl.Count() != 4 {
		t.Fatal("a rectangle outside marked tiles")
	}
	tl.MarkAll()
	if tl.Count() != 6 {
		t.Fatalf("MarkAll marked %d of 6", tl.Count())
	}
	tl.Reset(64, 64)
	tl.MarkRows(10, 11)
	if tl.Count() != 1 {
		t.Fatal("MarkRows")
	}
	o := display.NewTiles(200, 200)
	if tl.Or(o) {
		t.Fatal("Or of another geometry accepted")
	}
}

func TestPixelFormat(t *testing.T) {
	bad := []display.PixelFormat{
		{BPP: 32, Depth: 24, TrueColour: false, RedMax: 255, GreenMax: 255, BlueMax: 255},
		{BPP: 24, Depth: 24, TrueColour: true, RedMax: 255, GreenMax: 255, BlueMax: 255},
		{BPP: 8, Depth: 8, TrueColour: true, RedMax: 7, GreenMax: 7, BlueMax: 3, RedShift: 6, GreenShift: 3},
		{BPP: 16, Depth: 16, TrueColour: true, RedMax: 31, GreenMax: 63, BlueMax: 0},
		{BPP: 32, Depth: 24, TrueColour: true, RedMax: 255, GreenMax: 255, BlueMax: 255, RedShift: 40},
	}
	for _, f := range bad {
		if f.Validate() == nil {
			t.Errorf("%+v accepted", f)
		}
	}
	for _, f := range []display.PixelFormat{display.XRGB8888, display.RGB565} {
		if err := f.Validate(); err != nil {
			t.Error(err)
		}
	}
	// 565 → 8888 → 565 keeps every value; extremes map to extremes.
	c := display.NewConverter(display.RGB565, display.XRGB8888)
	back := display.NewConverter(display.XRGB8888, display.RGB565)
	for v := uint32(0); v < 1<<16; v++ {
		if got := back.Value(c.Value(v)); got != v {
			t.Fatalf("565 %#x round trip %#x", v, got)
		}
	}
	if got := c.Value(0xffff); got != 0xffffff {
		t.Errorf("white → %#x", got)
	}
	be := display.PixelFormat{BPP: 16, Depth: 16, BigEndian: true, TrueColour: true, RedMax: 31, GreenMax: 63, BlueMax: 31, RedShift: 11, GreenShift: 5}
	b := make([]byte, 2)
	be.Store(b, 0xf800)
	if b[0] != 0xf8 || b[1] != 0 || be.Load(b) != 0xf800 {
		t.Errorf("big-endian store % x", b)
	}
}

func pattern(t *testing.T) *display.Buffer {
	b, err := display.NewBuffer(7, 5, display.RGB565)
	if err != nil {
		t.Fatal(err)
	}
	for y := range 5 {
		for x := range 7 {
			b.SetPixel(x, y, uint8(x*36), uint8(y*60), 0xff)
		}
	}
	return b
}

func TestScreendump(t *testing.T) {
	b := pattern(t)
	var ppm bytes.Buffer
	if err := display.WritePPM(&ppm, b); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(&ppm)
	var w, h, maxv int
	if _, err := fmt.Fscanf(r, "P6\n%d %d\n%d\n", &w, &h, &maxv); err != nil || w != 7 || h != 5 || maxv != 255 {
		t.Fatalf("PPM header %d %d %d %v", w, h, maxv, err)
	}
	rgb := make([]byte, 7*5*3)
	if n, _ := r.Read(rgb); n != len(rgb) {
		t.Fatalf("PPM body %d bytes", n)
	}
	var pngb bytes.Buffer
	if err := display.WritePNG(&pngb, b); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&pngb)
	if err != nil {
		t.Fatal(err)
	}
	f := display.RGB565
	for y := range 5 {
		for x := range 7 {
			wr, wg, wb := f.RGB(f.Pixel(uint8(x*36), uint8(y*60), 0xff))
			i := 3 * (y*7 + x)
			if rgb[i] != wr || rgb[i+1] != wg || rgb[i+2] != wb {
				t.Fatalf("PPM (%d,%d) = % x, want %x %x %x", x, y, rgb[i:i+3], wr, wg, wb)
			}
			pr, pg, pb, _ := img.At(x, y).RGBA()
			if uint8(pr>>8) != wr || uint8(pg>>8) != wg || uint8(pb>>8) != wb {
				t.Fatalf("PNG (%d,%d) differs", x, y)
			}
		}
	}
}

func TestBufferRead(t *testing.T) {
	b := pattern(t)
	m := b.Mode()
	dst := make([]byte, 4)
	if !b.Read(dst, m, display.Rect{X: 5, Y: 4, W: 2, H: 1}) {
		t.Fatal("Read of the last two pixels failed")
	}
	for _, r := range []display.Rect{{X: 6, Y: 4, W: 2, H: 1}, {X: -1, W: 1, H: 1}, {}} {
		if b.Read(dst, m, r) {
			t.Errorf("Read %v outside the framebuffer succeeded", r)
		}
	}
	old := m
	if err := b.Resize(8, 8, display.XRGB8888); err != nil {
		t.Fatal(err)
	}
	if b.Read(dst, old, display.Rect{W: 1, H: 1}) {
		t.Error("Read with a stale mode succeeded")
	}
	for _, sz := range [][2]int{{0, 1}, {1, display.MaxSide + 1}} {
		if err := b.Resize(sz[0], sz[1], display.XRGB8888); err == nil {
			t.Errorf("Resize %v accepted", sz)
		}
	}
	tl := display.NewTiles(8, 8)
	b.CollectDirty(tl)
	if tl.Count() != 1 {
		t.Fatal("a resized buffer is not all dirty")
	}
	tl.Reset(8, 8)
	b.CollectDirty(tl)
	if !tl.Empty() {
		t.Fatal("CollectDirty did not forget")
	}
}

func TestKeymap(t *testing.T) {
	km, err := display.LookupKeymap("en-us")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := display.LookupKeymap("de"); err == nil || !strings.Contains(err.Error(), `"de"`) {
		t.Fatalf("keymap de: %v", err)
	}
	for sym, want := range map[uint32]display.Key{'a': 0x1e, 'A': 0x1e, '1': 0x02, '!': 0x02, '~': 0x29,
		'|': 0x2b, ' ': 0x39, 0xff0d: 0x1c, 0xffbe: 0x3b, 0xffc9: 0x58, 0xff51: 0x14b, 0xffff: 0x153, 0x20ac: 0} {
		if got := km.Key(sym); got != want {
			t.Errorf("keysym %#x → %#x, want %#x", sym, got, want)
		}
	}
}

// Every key's set-2 bytes, sent through the i8042 with translation on,
// come out as its set-1 bytes: the two tables agree with the
// controller's own translation table.
func TestSet2TranslatesToSet1(t *testing.T) {
	c := i8042.New(i8042.Config{})
	out := func(port uint64, v uint8) { c.Write(devices.Access{Addr: port, Size: 1}, uint64(v)) }
	in := func(port uint64) uint8 { return uint8(c.Read(devices.Access{Addr: port, Size: 1})) }
	out(i8042.StatusPort, 0x60)
	out(i8042.DataPort, 0x43) // command byte: translation on
	var keys []display.Key
	for k := display.Key(1); k < 0x200; k++ {
		if display.Set2(nil, k, true) != nil {
			keys = append(keys, k)
		}
	}
	keys = append(keys, display.KeyPause)
	if len(keys) < 100 {
		t.Fatalf("only %d keys have set-2 codes", len(keys))
	}
	for _, k := range keys {
		for _, down := range []bool{true, false} {
			c.PutScancodes(display.Set2(nil, k, down))
			var got []byte
			for in(i8042.StatusPort)&1 != 0 {
				got = append(got, in(i8042.DataPort))
			}
			if want := display.Set1(nil, k, down); !bytes.Equal(got, want) {
				t.Errorf("key %#x down=%v: translated % x, set 1 % x", k, down, got, want)
			}
		}
	}
}

// Keys and pointer events through PS2Input into a real i8042 model.
func TestPS2Input(t *testing.T) {
	c := i8042.New(i8042.Config{})
	out := func(port uint64, v uint8) { c.Write(devices.Access{Addr: port, Size: 1}, uint64(v)) }
	in := func(port uint64) uint8 { return uint8(c.Read(devices.Access{Addr: port, Size: 1})) }
	drain := func() []byte {
		var b []byte
		for in(i8042.StatusPort)&1 != 0 {
			b = append(b, in(i8042.DataPort))
		}
		return b
	}
	p := &display.PS2Input{Keyboard: c, Mouse: c}
	km, _ := display.LookupKeymap("en-us")
	p.KeyEvent(km.Key('a'), true)
	p.KeyEvent(km.Key('a'), false)
	p.KeyEvent(km.Key(0xff52), true) // Up
	if got, want := drain(), []byte{0x1c, 0xf0, 0x1c, 0xe0, 0x75}; !bytes.Equal(got, want) {
		t.Errorf("keyboard bytes % x, want % x", got, want)
	}
	out(i8042.StatusPort, 0xd4)
	out(i8042.DataPort, 0xf4) // mouse: enable reporting
	drain()
	p.PointerEvent(100, 100, 640, 480, 0) // origin
	p.PointerEvent(103, 98, 640, 480, 1)  // right 3, up 2, left button
	p.PointerEvent(103, 98, 640, 480, 4)  // right button (RFB bit 2)
	got := drain()
	// The first event moves nothing: a packet with no motion and no button.
	want := []byte{0x08, 0, 0, 0x09, 0x03, 0x02, 0x0a, 0, 0} // up is positive in PS/2
	if !bytes.Equal(got, want) {
		t.Errorf("mouse packets % x, want % x", got, want)
	}
}
