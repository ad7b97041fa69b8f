package vnc

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"encoding/binary"

	"godm/display"
)

// maxRects bounds the rectangles of one update (the count is 16 bits); an
// update that would need more sends the bounding box instead.
const maxRects = 4096

// writer sends updates when a request waits and something in it changed.
func (c *conn) writer() {
	defer c.s.wg.Done()
	defer c.close()
	e := &encoder{}
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		if err := c.sendUpdate(e); err != nil {
			c.log.Debug("vnc update failed", "err", err)
			return
		}
	}
}

// plan takes what the next update sends out of the client's state: the
// rectangles (nil: nothing to send yet) and whether a DesktopSize comes
// first.
func (c *conn) plan(m display.Mode) (rects []display.Rect, resize bool, f display.PixelFormat, zrle bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.pending {
		return nil, false, f, false
	}
	if m.Serial != c.serial {
		c.serial = m.Serial
		c.dirty.Reset(m.Width, m.Height)
		c.dirty.MarkAll()
		if c.deskSize && (c.w != m.Width || c.h != m.Height) {
			c.resize = true
			c.w, c.h = min(m.Width, 65535), min(m.Height, 65535)
		}
	}
	bounds := display.Rect{W: min(c.w, m.Width), H: min(c.h, m.Height)}
	area := c.req.Intersect(bounds)
	if c.resize {
		area = bounds // a resize answers the request with the whole new screen
	}
	cols, rows := c.dirty.Size()
	for cy := 0; cy < rows; cy++ {
		for cx := 0; cx < cols; {
			if !c.dirty.Get(cx, cy) {
				cx++
				continue
			}
			start := cx
			for cx < cols && c.dirty.Get(cx, cy) {
				cx++
			}
			run := display.Rect{X: start * display.TileSize, Y: cy * display.TileSize,
				W: (cx - start) * display.TileSize, H: display.TileSize}
			part := run.Intersect(area)
			if part.Empty() {
				continue
			}
			rects = append(rects, part)
			for x := start; x < cx; x++ {
				tile := display.Rect{X: x * display.TileSize, Y: cy * display.TileSize, W: display.TileSize, H: display.TileSize}.Intersect(bounds)
				if tile.Intersect(area) == tile {
					c.dirty.Clear(x, cy)
				}
			}
		}
	}
	if len(rects) > maxRects {
		box := display.Rect{}
		for _, r := range rects {
			box = box.Union(r)
		}
		rects = append(rects[:0], box)
	}
	resize = c.resize
	if len(rects) == 0 && !resize && !c.force {
		return nil, false, f, false
	}
	if rects == nil {
		rects = []display.Rect{} // an empty update answers a non-incremental request
	}
	c.pending, c.resize, c.force = false, false, false
	return rects, resize, c.format, c.zrle
}

// sendUpdate writes one FramebufferUpdate if one is due (RFC 6143 §7.6.1),
// after the extended key event acknowledgement when one is owed: an
// update of its own, one pseudo-rectangle of encoding -258 and no data,
// sized as the client's framebuffer (QEMU ui/vnc.c send_ext_key_event_ack),
// which needs no FramebufferUpdateRequest.
func (c *conn) sendUpdate(e *encoder) error {
	src := c.s.cfg.Source
	m := src.Mode()
	c.mu.Lock()
	ack, w, h := c.extKeyAck, c.w, c.h
	c.extKeyAck = false
	c.mu.Unlock()
	if ack {
		c.bw.Write([]byte{0, 0, 0, 1})
		c.bw.Write(rectHeader(display.Rect{W: w, H: h}, encExtKey))
		c.s.extKeyAcks.Add(1)
		if err := c.flushDeadline(); err != nil {
			return err
		}
	}
	rects, resize, f, zrle := c.plan(m)
	if rects == nil && !resize {
		return nil
	}
	n := len(rects)
	if resize {
		n++
	}
	var hdr [4]byte
	binary.BigEndian.PutUint16(hdr[2:], uint16(n))
	c.bw.Write(hdr[:])
	if resize {
		c.bw.Write(rectHeader(display.Rect{W: min(m.Width, 65535), H: min(m.Height, 65535)}, encDesktopSize))
	}
	c.s.updates.Add(1)
	if zrle {
		c.s.rectsZRLE.Add(uint64(len(rects)))
	} else {
		c.s.rectsRaw.Add(uint64(len(rects)))
	}
	for _, r := range rects {
		out := e.encode(src, m, r, f, zrle)
		if _, err := c.bw.Write(out); err != nil {
			return err
		}
	}
	return c.flushDeadline()
}

func rectHeader(r display.Rect, enc int32) []byte {
	var b [12]byte
	binary.BigEndian.PutUint16(b[0:], uint16(r.X))
	binary.BigEndian.PutUint16(b[2:], uint16(r.Y))
	binary.BigEndian.PutUint16(b[4:], uint16(r.W))
	binary.BigEndian.PutUint16(b[6:], uint16(r.H))
	binary.BigEndian.PutUint32(b[8:], uint32(enc))
	return b[:]
}

// encoder holds one client's encoding buffers and its ZRLE zlib stream
// (one per connection, RFC 6143 §7.7.6). Its memory is bounded by the
// largest rectangle: a run of tiles, at most the width times 64 rows.
type encoder struct {
	raw  []byte   // source pixels
	vals []uint32 // client pixel values
	out  []byte   // the encoded rectangle
	tile []byte   // one ZRLE tile before compression
	conv *display.Converter
	cs   display.PixelFormat // conv's source and destination
	cd   display.PixelFormat
	zbuf bytes.Buffer
	zw   *zlib.Writer
	cpix cpixel
}

// pixels reads r from the source and converts it to client values. A read
// that loses a race with a mode change leaves the rectangle black (the
// new mode's full redraw follows).
func (e *encoder) pixels(src display.Source, m display.Mode, r display.Rect, f display.PixelFormat) []uint32 {
	n := r.W * r.H
	if cap(e.raw) < n*m.Format.BytesPerPixel() {
		e.raw = make([]byte, n*m.Format.BytesPerPixel())
	}
	raw := e.raw[:n*m.Format.BytesPerPixel()]
	if cap(e.vals) < n {
		e.vals = make([]uint32, n)
	}
	vals := e.vals[:n]
	if e.conv == nil || e.cs != m.Format || e.cd != f {
		e.conv, e.cs, e.cd = display.NewConverter(m.Format, f), m.Format, f
	}
	if !src.Read(raw, m, r) {
		clear(vals)
		return vals
	}
	e.conv.Values(vals, raw)
	return vals
}

// encode returns r's rectangle header and data in Raw or ZRLE.
func (e *encoder) encode(src display.Source, m display.Mode, r display.Rect, f display.PixelFormat, zrle bool) []byte {
	vals := e.pixels(src, m, r, f)
	e.out = e.out[:0]
	if !zrle {
		e.out = append(e.out, rectHeader(r, encRaw)...)
		e.out = e.conv.Pack(e.out, vals)
		return e.out
	}
	e.out = append(e.out, rectHeader(r, encZRLE)...)
	e.out = append(e.out, 0, 0, 0, 0)
	if e.zw == nil {
		e.zw, _ = zlib.NewWriterLevel(&e.zbuf, flate.BestSpeed)
	}
	e.cpix = newCPixel(f)
	for ty := 0; ty < r.H; ty += display.TileSize {
		for tx := 0; tx < r.W; tx += display.TileSize {
			tw, th := min(display.TileSize, r.W-tx), min(display.TileSize, r.H-ty)
			e.tile = e.zrleTile(e.tile[:0], vals, r.W, tx, ty, tw, th)
			e.zw.Write(e.tile)
		}
	}
	e.zw.Flush()
	binary.BigEndian.PutUint32(e.out[12:], uint32(e.zbuf.Len()))
	e.out = append(e.out, e.zbuf.Bytes()...)
	e.zbuf.Reset()
	return e.out
}

// cpixel is ZRLE's compressed pixel (RFC 6143 §7.7.6): three bytes when a
// 32-bpp true-colour format of depth ≤ 24 keeps its colours in the low or
// high three bytes, else the full pixel; bytes in the client's order.
type cpixel struct {
	f     display.PixelFormat
	size  int
	shift uint // 0: low three bytes, 8: high three bytes
}

func newCPixel(f display.PixelFormat) cpixel {
	c := cpixel{f: f, size: f.BytesPerPixel()}
	if f.BPP != 32 || f.Depth > 24 {
		return c
	}
	all := uint64(f.RedMax)<<f.RedShift | uint64(f.GreenMax)<<f.GreenShift | uint64(f.BlueMax)<<f.BlueShift
	switch {
	case all < 1<<24:
		c.size = 3
	case all&0xff == 0:
		c.size, c.shift = 3, 8
	}
	return c
}

func (c cpixel) put(dst []byte, v uint32) []byte {
	if c.size == 3 {
		v >>= c.shift
		if c.f.BigEndian {
			return append(dst, byte(v>>16), byte(v>>8), byte(v))
		}
		return append(dst, byte(v), byte(v>>8), byte(v>>16))
	}
	switch c.size {
	case 1:
		return append(dst, byte(v))
	case 2:
		if c.f.BigEndian {
			return append(dst, byte(v>>8), byte(v))
		}
		return append(dst, byte(v), byte(v>>8))
	}
	if c.f.BigEndian {
		return append(dst, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return append(dst, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

// runLen appends a ZRLE run length: length-1 as bytes of 255 and a last
// byte below 255.
func runLen(dst []byte, n int) []byte {
	n--
	for n >= 255 {
		dst = append(dst, 255)
		n -= 255
	}
	return append(dst, byte(n))
}

func runLenSize(n int) int { return (n-1)/255 + 1 }

// zrleTile appends one tile's subencoding: the smallest of raw, solid,
// packed palette, plain RLE and palette RLE.
func (e *encoder) zrleTile(dst []byte, vals []uint32, stride, x0, y0, tw, th int) []byte {
	var pal [16]uint32
	npal := 0
	tooMany := false
	runs, rleBytes, palRLEBytes := 0, 0, 0
	first := vals[y0*stride+x0]
	last, cur := first, 0
	index := func(v uint32) int {
		for i := 0; i < npal; i++ {
			if pal[i] == v {
				return i
			}
		}
		if npal < len(pal) {
			pal[npal] = v
			npal++
			return npal - 1
		}
		tooMany = true
		return -1
	}
	for y := 0; y < th; y++ {
		row := vals[(y0+y)*stride+x0 : (y0+y)*stride+x0+tw]
		for _, v := range row {
			if v == last && cur > 0 {
				cur++
				continue
			}
			if cur > 0 {
				runs++
				rleBytes += runLenSize(cur)
				palRLEBytes += 1
				if cur > 1 {
					palRLEBytes += runLenSize(cur)
				}
			}
			last, cur = v, 1
			if !tooMany {
				index(v)
			}
		}
	}
	runs++
	rleBytes += runLenSize(cur)
	palRLEBytes++
	if cur > 1 {
		palRLEBytes += runLenSize(cur)
	}
	cp := e.cpix.size
	if !tooMany && npal == 1 {
		return e.cpix.put(append(dst, 1), first)
	}
	best, kind := tw*th*cp, 0 // raw
	if n := runs*cp + rleBytes; n < best {
		best, kind = n, 128
	}
	var bitsPer int
	if !tooMany {
		switch {
		case npal == 2:
			bitsPer = 1
		case npal <= 4:
			bitsPer = 2
		default:
			bitsPer = 4
		}
		if n := npal*cp + th*((tw*bitsPer+7)/8); n < best {
			best, kind = n, npal
		}
		if n := npal*cp + palRLEBytes; n < best {
			best, kind = n, 128+npal
		}
	}
	_ = best
	switch {
	case kind == 0:
		dst = append(dst, 0)
		for y := 0; y < th; y++ {
			for _, v := range vals[(y0+y)*stride+x0 : (y0+y)*stride+x0+tw] {
				dst = e.cpix.put(dst, v)
			}
		}
	case kind == 128:
		dst = append(dst, 128)
		dst = e.rle(dst, vals, stride, x0, y0, tw, th, nil, 0)
	case kind < 128: // packed palette
		dst = append(dst, byte(npal))
		for _, v := range pal[:npal] {
			dst = e.cpix.put(dst, v)
		}
		for y := 0; y < th; y++ {
			var acc byte
			nb := 0
			for _, v := range vals[(y0+y)*stride+x0 : (y0+y)*stride+x0+tw] {
				i := palIndex(&pal, npal, v)
				acc = acc<<bitsPer | byte(i)
				nb += bitsPer
				if nb == 8 {
					dst = append(dst, acc)
					acc, nb = 0, 0
				}
			}
			if nb > 0 {
				dst = append(dst, acc<<(8-nb))
			}
		}
	default: // palette RLE
		dst = append(dst, byte(kind))
		for _, v := range pal[:npal] {
			dst = e.cpix.put(dst, v)
		}
		dst = e.rle(dst, vals, stride, x0, y0, tw, th, &pal, npal)
	}
	return dst
}

func palIndex(pal *[16]uint32, n int, v uint32) int {
	for i := 0; i < n; i++ {
		if pal[i] == v {
			return i
		}
	}
	return 0
}

// rle appends the runs of a tile: CPIXEL and length (plain), or palette
// index with bit 7 set and a length for runs longer than one (palette).
func (e *encoder) rle(dst []byte, vals []uint32, stride, x0, y0, tw, th int, pal *[16]uint32, npal int) []byte {
	emit := func(v uint32, n int) {
		if pal == nil {
			dst = runLen(e.cpix.put(dst, v), n)
			return
		}
		i := byte(palIndex(pal, npal, v))
		if n == 1 {
			dst = append(dst, i)
			return
		}
		dst = runLen(append(dst, i|128), n)
	}
	var last uint32
	cur := 0
	for y := 0; y < th; y++ {
		for _, v := range vals[(y0+y)*stride+x0 : (y0+y)*stride+x0+tw] {
			if cur > 0 && v == last {
				cur++
				continue
			}
			if cur > 0 {
				emit(last, cur)
			}
			last, cur = v, 1
		}
	}
	emit(last, cur)
	return dst
}
