package vnc

import (
	"encoding/binary"
	"io"
	"testing"
	"time"

	"godm/display"
)

// benchEncode encodes the rectangles a full (or partial) update of src
// sends, as the writer does: one rectangle per run of dirty tiles.
func benchEncode(b *testing.B, src *display.Buffer, area display.Rect, zrle bool) {
	m := src.Mode()
	tiles := display.NewTiles(m.Width, m.Height)
	tiles.MarkRect(area)
	var rects []display.Rect
	cols, rows := tiles.Size()
	for cy := 0; cy < rows; cy++ {
		for cx := 0; cx < cols; cx++ {
			if tiles.Get(cx, cy) {
				start := cx
				for cx < cols && tiles.Get(cx, cy) {
					cx++
				}
				rects = append(rects, display.Rect{X: start * 64, Y: cy * 64, W: (cx - start) * 64, H: 64}.Intersect(m.Bounds()))
			}
		}
	}
	e := &encoder{}
	bytes := 0
	for _, r := range rects { // warm the buffers and the zlib stream
		e.encode(src, m, r, display.XRGB8888, zrle)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		bytes = 4
		for _, r := range rects {
			bytes += len(e.encode(src, m, r, display.XRGB8888, zrle))
		}
	}
	b.ReportMetric(float64(bytes), "bytes/update")
	b.ReportMetric(float64(area.W*area.H*4), "fb-bytes")
}

// The figures of bench/README.md: a 1024×768 XRGB8888 screen, the whole
// of it or one 64×64 tile, with the test pattern (a quarter solid, a
// quarter checkerboard, a quarter stripes, a quarter gradient) and with a
// text-console-like screen (two colours).
func BenchmarkUpdate(b *testing.B) {
	pattern := newPattern(b, 1024, 768)
	text, err := display.NewBuffer(1024, 768, display.XRGB8888)
	if err != nil {
		b.Fatal(err)
	}
	text.Fill(text.Mode().Bounds(), 0, 0, 0xaa)
	for y := 8; y < 760; y += 16 {
		for x := 8; x < 1000; x += 9 {
			if (x*7+y*3)%5 != 0 {
				text.Fill(display.Rect{X: x, Y: y, W: 6, H: 10}, 0xaa, 0xaa, 0xaa)
			}
		}
	}
	full := display.Rect{W: 1024, H: 768}
	tile := display.Rect{X: 512, Y: 384, W: 64, H: 64}
	for _, c := range []struct {
		name string
		src  *display.Buffer
		area display.Rect
	}{{"pattern/full", pattern, full}, {"pattern/tile", pattern, tile}, {"text/full", text, full}, {"text/tile", text, tile}} {
		b.Run(c.name+"/raw", func(b *testing.B) { benchEncode(b, c.src, c.area, false) })
		b.Run(c.name+"/zrle", func(b *testing.B) { benchEncode(b, c.src, c.area, true) })
	}
}

// skipUpdate reads one FramebufferUpdate without decoding it and returns
// its size on the wire.
func (c *rfbClient) skipUpdate() (int, error) {
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(c.br, hdr); err != nil {
		return 0, err
	}
	n, size := int(binary.BigEndian.Uint16(hdr[2:])), 4
	rh := make([]byte, 12)
	for range n {
		if _, err := io.ReadFull(c.br, rh); err != nil {
			return 0, err
		}
		w, h := int(binary.BigEndian.Uint16(rh[4:])), int(binary.BigEndian.Uint16(rh[6:]))
		var body int64
		switch int32(binary.BigEndian.Uint32(rh[8:])) {
		case encRaw:
			body = int64(w * h * c.format.BytesPerPixel())
		case encZRLE:
			l := make([]byte, 4)
			if _, err := io.ReadFull(c.br, l); err != nil {
				return 0, err
			}
			body = int64(binary.BigEndian.Uint32(l))
			size += 4
		}
		if _, err := io.CopyN(io.Discard, c.br, body); err != nil {
			return 0, err
		}
		size += 12 + int(body)
	}
	return size, nil
}

// BenchmarkClientUpdate is the update rate a client on loopback sees:
// request, wait, read the whole update (not decoded), for a 1024×768
// screen's full redraw and for one changed tile.
func BenchmarkClientUpdate(b *testing.B) {
	src := newPattern(b, 1024, 768)
	s, addr := startServer(b, Config{Source: src})
	for _, enc := range []int32{encRaw, encZRLE} {
		name := map[int32]string{encRaw: "raw", encZRLE: "zrle"}[enc]
		c, err := dialRFB(b, addr, 8, "")
		if err != nil {
			b.Fatal(err)
		}
		c.nc.SetDeadline(time.Time{})
		c.setEncodings(enc)
		b.Run("full/"+name, func(b *testing.B) {
			size := 0
			b.ReportAllocs()
			for b.Loop() {
				c.request(false, display.Rect{W: 1024, H: 768})
				if size, err = c.skipUpdate(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(size), "bytes/update")
		})
		b.Run("tile/"+name, func(b *testing.B) {
			size, i := 0, 0
			b.ReportAllocs()
			for b.Loop() {
				i++
				src.Fill(display.Rect{X: 512, Y: 384, W: 64, H: 64}, uint8(i), uint8(i>>8), 0x40)
				s.Refresh()
				c.request(true, display.Rect{W: 1024, H: 768})
				if size, err = c.skipUpdate(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(size), "bytes/update")
		})
	}
}
