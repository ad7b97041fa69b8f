package vga

import (
	"testing"

	"godm/devices"
	"godm/display"
)

// textCore is a Core in mode 3 with a font and a full screen of text,
// programmed through its own ports and window.
func textCore(tb testing.TB) *Core {
	c := NewCore(16 << 20)
	p, w := c.Ports(), c.Window()
	out := func(port uint64, size uint8, v uint64) { p.Write(devices.Access{Addr: port, Size: size}, v) }
	out(0x3c2, 1, 0x67)
	for i, v := range []byte{0x03, 0x00, 0x03, 0x00, 0x02} {
		out(0x3c4, 2, uint64(i)|uint64(v)<<8)
	}
	for i, v := range []byte{0x5f, 0x4f, 0x50, 0x82, 0x55, 0x81, 0xbf, 0x1f, 0x00, 0x4f, 0x0d, 0x0e, 0x00, 0x00, 0x00, 0x00,
		0x9c, 0x8e, 0x8f, 0x28, 0x1f, 0x96, 0xb9, 0xa3, 0xff} {
		out(0x3d4, 2, uint64(i)|uint64(v)<<8)
	}
	for i, v := range []byte{0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0e, 0x00, 0xff} {
		out(0x3ce, 2, uint64(i)|uint64(v)<<8)
	}
	for i := range 16 {
		p.Read(devices.Access{Addr: 0x3da, Size: 1})
		out(0x3c0, 1, uint64(i))
		out(0x3c0, 1, uint64(i))
	}
	out(0x3c0, 1, 0x20)
	out(0x3c8, 1, 0)
	for i := range 64 { // the EGA colours, 6-bit
		out(0x3c9, 1, uint64((i>>2)&1*0x2a+(i>>5)&1*0x15))
		out(0x3c9, 1, uint64((i>>1)&1*0x2a+(i>>4)&1*0x15))
		out(0x3c9, 1, uint64(i&1*0x2a+(i>>3)&1*0x15))
	}
	for i := range 80 * 25 {
		w.Write(devices.Access{Offset: 0x18000 + uint64(2*i), Size: 2}, uint64(i%256)|0x1700)
	}
	return c
}

// The guest's accesses on the ioreq path allocate nothing.
func TestAccessesDoNotAllocate(t *testing.T) {
	d, err := New(Config{VRAMSize: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	p, w, v := d.Ports(), d.Window(), d.DISPI()
	m, l := mmioHandler{d.Core}, lfbHandler{d.Core}
	n := testing.AllocsPerRun(200, func() {
		p.Write(devices.Access{Addr: 0x3c4, Size: 2}, 0x0f02)
		p.Read(devices.Access{Addr: 0x3da, Size: 1})
		w.Write(devices.Access{Offset: 0x18000, Size: 2}, 0x0741)
		w.Read(devices.Access{Offset: 0x100, Size: 4})
		v.Write(devices.Access{Addr: PortIndex, Size: 2}, IndexBank)
		v.Write(devices.Access{Addr: PortData, Size: 2}, 1)
		m.Write(devices.Access{Offset: 0x400, Size: 1}, 0x20)
		m.Read(devices.Access{Offset: 0x502, Size: 2})
		l.Write(devices.Access{Offset: 0x1000, Size: 4}, 0x00ff00ff)
		l.Read(devices.Access{Offset: 0x1000, Size: 4})
	})
	if n != 0 {
		t.Errorf("%v allocations per round of accesses", n)
	}
}

// BenchmarkTextIdle is one refresh of a text screen nothing wrote to.
func BenchmarkTextIdle(b *testing.B) {
	c := textCore(b)
	src := c.Source()
	m := src.Mode()
	tl := display.NewTiles(m.Width, m.Height)
	src.CollectDirty(tl)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		tl.Reset(m.Width, m.Height)
		src.CollectDirty(tl)
		if !tl.Empty() {
			b.Fatal("an idle screen reported dirty")
		}
	}
}

// BenchmarkTextFrame is one refresh of an 80x25 text screen (720x400)
// with one character changed: render, compare, collect the dirty tile.
func BenchmarkTextFrame(b *testing.B) {
	c := textCore(b)
	src := c.Source()
	m := src.Mode()
	tl := display.NewTiles(m.Width, m.Height)
	src.CollectDirty(tl)
	w := c.Window()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		w.Write(devices.Access{Offset: 0x18000, Size: 2}, uint64(i%256)|0x1700)
		tl.Reset(m.Width, m.Height)
		src.CollectDirty(tl)
	}
}

// BenchmarkWindowWrite is one byte through the window in planar write
// mode 0 (the VGA BIOS's and boot loaders' path), per ioreq.
func BenchmarkWindowWrite(b *testing.B) {
	c := NewCore(16 << 20)
	p, w := c.Ports(), c.Window()
	p.Write(devices.Access{Addr: 0x3c4, Size: 2}, 0x0f02)
	p.Write(devices.Access{Addr: 0x3c4, Size: 2}, 0x0604)
	p.Write(devices.Access{Addr: 0x3ce, Size: 2}, 0x0506)
	p.Write(devices.Access{Addr: 0x3ce, Size: 2}, 0xff08)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		w.Write(devices.Access{Offset: uint64(i & 0xffff), Size: 1}, uint64(i))
	}
}

// A text screen reports nothing after a collection until a write, then
// exactly the tile of the changed character; a palette write redraws
// every tile showing that colour.
func TestTextDirty(t *testing.T) {
	c := textCore(t)
	src := c.Source()
	m := src.Mode()
	tl := display.NewTiles(m.Width, m.Height)
	src.CollectDirty(tl)
	tl.Reset(m.Width, m.Height)
	src.CollectDirty(tl)
	if !tl.Empty() {
		t.Fatalf("%d tiles dirty with nothing written", tl.Count())
	}
	// Font rows of character 0x41 are zero (no font loaded): give the
	// cell at column 10, row 5 a new attribute (background 4).
	c.Window().Write(devices.Access{Offset: 0x18000 + uint64(2*(5*80+10)), Size: 2}, 0x4741)
	src.CollectDirty(tl)
	if cx, cy := 10*9/display.TileSize, 5*16/display.TileSize; tl.Count() != 1 || !tl.Get(cx, cy) {
		t.Fatalf("after one character: %d tiles, tile (%d,%d) %v", tl.Count(), cx, cy, tl.Get(cx, cy))
	}
	tl.Reset(m.Width, m.Height)
	c.Ports().Write(devices.Access{Addr: 0x3c8, Size: 1}, 4)
	for range 3 {
		c.Ports().Write(devices.Access{Addr: 0x3c9, Size: 1}, 0x3f)
	}
	src.CollectDirty(tl)
	if tl.Count() != 1 {
		t.Fatalf("after DAC entry 4 changed: %d tiles, want the one cell's", tl.Count())
	}
}
