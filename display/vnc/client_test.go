package vnc

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"godm/display"
)

// rfbClient is a small RFB client for tests: enough of RFC 6143 to check
// the server's handshake and decode Raw and ZRLE into 8-bit RGB.
type rfbClient struct {
	t      testing.TB
	nc     net.Conn
	br     *bufio.Reader
	w, h   int
	format display.PixelFormat
	fb     []byte // RGB, 3 bytes a pixel
	zin    *bytes.Buffer
	zr     io.ReadCloser
	name   string
	rects  int // rectangles decoded in the last update
}

func startServer(t testing.TB, cfg Config) (*Server, string) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return s, ln.Addr().String()
}

// dialRFB connects and runs the handshake as version 3.minor with the
// given password ("" for None).
func dialRFB(t testing.TB, addr string, minor int, password string) (*rfbClient, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &rfbClient{t: t, nc: nc, br: bufio.NewReader(nc)}
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	if err := c.handshake(minor, password); err != nil {
		nc.Close()
		return nil, err
	}
	t.Cleanup(func() { nc.Close() })
	return c, nil
}

func (c *rfbClient) readN(n int) []byte {
	b := make([]byte, n)
	if _, err := io.ReadFull(c.br, b); err != nil {
		panic(err)
	}
	return b
}

func (c *rfbClient) u32() uint32 { return binary.BigEndian.Uint32(c.readN(4)) }

func (c *rfbClient) handshake(minor int, password string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handshake: %v", r)
		}
	}()
	if v := string(c.readN(12)); v != "RFB 003.008\n" {
		return fmt.Errorf("server version %q", v)
	}
	fmt.Fprintf(c.nc, "RFB 003.%03d\n", minor)
	var typ uint32
	if minor >= 7 {
		n := c.readN(1)[0]
		if n == 0 {
			return errors.New("no security types: " + string(c.readN(int(c.u32()))))
		}
		types := c.readN(int(n))
		typ = uint32(types[0])
		c.nc.Write([]byte{types[0]})
	} else {
		typ = c.u32()
	}
	if typ == uint32(AuthVNC) {
		ch := c.readN(16)
		c.nc.Write(vncAuthResponse(password, ch))
	}
	if typ == uint32(AuthVNC) || minor >= 8 {
		if r := c.u32(); r != 0 {
			if minor >= 8 {
				return errors.New("security failure: " + string(c.readN(int(c.u32()))))
			}
			return errors.New("security failure")
		}
	}
	c.nc.Write([]byte{1}) // shared
	si := c.readN(24)
	c.w, c.h = int(binary.BigEndian.Uint16(si)), int(binary.BigEndian.Uint16(si[2:]))
	c.format = getFormat(si[4:20])
	c.name = string(c.readN(int(binary.BigEndian.Uint32(si[20:]))))
	c.fb = make([]byte, c.w*c.h*3)
	return nil
}

func (c *rfbClient) setFormat(f display.PixelFormat) {
	b := make([]byte, 20)
	putFormat(b[4:], f)
	c.nc.Write(b)
	c.format = f
}

func (c *rfbClient) setEncodings(encs ...int32) {
	b := []byte{2, 0, 0, byte(len(encs))}
	for _, e := range encs {
		b = binary.BigEndian.AppendUint32(b, uint32(e))
	}
	c.nc.Write(b)
}

func (c *rfbClient) request(incremental bool, r display.Rect) {
	b := []byte{3, boolByte(incremental)}
	for _, v := range []int{r.X, r.Y, r.W, r.H} {
		b = binary.BigEndian.AppendUint16(b, uint16(v))
	}
	c.nc.Write(b)
}

// update reads one FramebufferUpdate into fb and returns its rectangles.
func (c *rfbClient) update() (rects []display.Rect, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("update: %v", r)
		}
	}()
	c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	hdr := c.readN(4)
	if hdr[0] != 0 {
		return nil, fmt.Errorf("message type %d", hdr[0])
	}
	n := int(binary.BigEndian.Uint16(hdr[2:]))
	for range n {
		rh := c.readN(12)
		r := display.Rect{X: int(binary.BigEndian.Uint16(rh)), Y: int(binary.BigEndian.Uint16(rh[2:])),
			W: int(binary.BigEndian.Uint16(rh[4:])), H: int(binary.BigEndian.Uint16(rh[6:]))}
		enc := int32(binary.BigEndian.Uint32(rh[8:]))
		switch enc {
		case encDesktopSize:
			c.w, c.h = r.W, r.H
			c.fb = make([]byte, c.w*c.h*3)
		case encRaw:
			bpp := c.format.BytesPerPixel()
			data := c.readN(r.W * r.H * bpp)
			for i := 0; i < r.W*r.H; i++ {
				c.put(r.X+i%r.W, r.Y+i/r.W, c.format.Load(data[i*bpp:]))
			}
		case encZRLE:
			if err := c.zrle(r, c.readN(int(c.u32()))); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("encoding %d", enc)
		}
		rects = append(rects, r)
	}
	return rects, nil
}

func (c *rfbClient) put(x, y int, v uint32) {
	if x >= c.w || y >= c.h {
		panic(fmt.Sprintf("pixel %d,%d outside %dx%d", x, y, c.w, c.h))
	}
	i := (y*c.w + x) * 3
	c.fb[i], c.fb[i+1], c.fb[i+2] = c.format.RGB(v)
}

// zrle decodes a ZRLE rectangle (RFC 6143 §7.7.6) from the connection's
// one zlib stream.
func (c *rfbClient) zrle(r display.Rect, data []byte) error {
	if c.zin == nil {
		c.zin = &bytes.Buffer{}
	}
	c.zin.Write(data)
	if c.zr == nil {
		zr, err := zlib.NewReader(c.zin)
		if err != nil {
			return err
		}
		c.zr = zr
	}
	z := c.zr
	rd := func(n int) []byte {
		b := make([]byte, n)
		if _, err := io.ReadFull(z, b); err != nil {
			panic(err)
		}
		return b
	}
	cp := newCPixel(c.format)
	cpix := func() uint32 {
		b := rd(cp.size)
		if cp.size == 3 {
			var v uint32
			if c.format.BigEndian {
				v = uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2])
			} else {
				v = uint32(b[2])<<16 | uint32(b[1])<<8 | uint32(b[0])
			}
			return v << cp.shift
		}
		return c.format.Load(b)
	}
	rl := func() int {
		n := 1
		for {
			b := rd(1)[0]
			n += int(b)
			if b != 255 {
				return n
			}
		}
	}
	for ty := 0; ty < r.H; ty += 64 {
		for tx := 0; tx < r.W; tx += 64 {
			tw, th := min(64, r.W-tx), min(64, r.H-ty)
			px := make([]uint32, 0, tw*th)
			sub := int(rd(1)[0])
			switch {
			case sub == 0:
				for range tw * th {
					px = append(px, cpix())
				}
			case sub == 1:
				v := cpix()
				for range tw * th {
					px = append(px, v)
				}
			case sub <= 16:
				pal := make([]uint32, sub)
				for i := range pal {
					pal[i] = cpix()
				}
				bits := 4
				if sub == 2 {
					bits = 1
				} else if sub <= 4 {
					bits = 2
				}
				for range th {
					row := rd((tw*bits + 7) / 8)
					for x := range tw {
						bit := x * bits
						i := (row[bit/8] >> (8 - bits - bit%8)) & (1<<bits - 1)
						px = append(px, pal[i])
					}
				}
			case sub == 128:
				for len(px) < tw*th {
					v := cpix()
					for range rl() {
						px = append(px, v)
					}
				}
			case sub >= 130:
				pal := make([]uint32, sub-128)
				for i := range pal {
					pal[i] = cpix()
				}
				for len(px) < tw*th {
					i := rd(1)[0]
					n := 1
					if i&128 != 0 {
						n = rl()
					}
					for range n {
						px = append(px, pal[i&127])
					}
				}
			default:
				return fmt.Errorf("zrle subencoding %d", sub)
			}
			if len(px) != tw*th {
				return fmt.Errorf("zrle tile decoded %d pixels, want %d", len(px), tw*th)
			}
			for i, v := range px {
				c.put(r.X+tx+i%tw, r.Y+ty+i/tw, v)
			}
		}
	}
	return nil
}

// expectClosed reports whether the server closed the connection (any
// pending data is drained first).
func (c *rfbClient) expectClosed() error {
	c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := io.Copy(io.Discard, c.br)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return errors.New("connection still open")
		}
	}
	return nil
}
