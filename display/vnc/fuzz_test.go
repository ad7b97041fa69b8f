package vnc

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"godm/display"
)

// fakeConn feeds a script of client bytes and discards what the server
// writes.
type fakeConn struct {
	r      *bytes.Reader
	mu     sync.Mutex
	closed bool
	wrote  int
}

func (f *fakeConn) Read(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, net.ErrClosed
	}
	return f.r.Read(b)
}

func (f *fakeConn) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, net.ErrClosed
	}
	f.wrote += len(b)
	return len(b), nil
}

func (f *fakeConn) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return nil
}

func (f *fakeConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5900} }
func (f *fakeConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (f *fakeConn) SetDeadline(time.Time) error      { return nil }
func (f *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (f *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzClientMessages runs a whole connection — handshake, then the fuzzed
// client messages — against a server: it must end (the script runs out)
// without a panic, and a request must never make the writer emit more
// than a bounded update.
func FuzzClientMessages(f *testing.F) {
	fmtMsg := make([]byte, 20)
	putFormat(fmtMsg[4:], display.RGB565)
	f.Add(append(fmtMsg, 3, 0, 0, 0, 0, 0, 0, 100, 0, 100))
	f.Add([]byte{2, 0, 0, 2, 0, 0, 0, 16, 0xff, 0xff, 0xff, 0x21, 3, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{4, 1, 0, 0, 0, 0, 0xff, 0x0d, 5, 7, 0, 1, 0, 2})
	f.Add([]byte{6, 0, 0, 0, 0, 0, 0, 3, 'a', 'b', 'c', 42})
	f.Add([]byte{6, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{2, 0, 0, 1, 0xff, 0xff, 0xfe, 0xfe, 255, 0, 0, 1, 0, 0, 0, 'a', 0, 0, 0, 0xcd, 255, 1})
	src, err := display.NewBuffer(130, 70, display.XRGB8888)
	if err != nil {
		f.Fatal(err)
	}
	drawPattern(src)
	f.Fuzz(func(t *testing.T, msgs []byte) {
		s, err := New(Config{Source: src, Input: &recorder{}})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		script := append([]byte("RFB 003.008\n\x01\x01"), msgs...)
		fc := &fakeConn{r: bytes.NewReader(script)}
		c := newConn(s, fc, 1)
		s.mu.Lock()
		s.clients[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		c.run()
		fc.mu.Lock()
		wrote := fc.wrote
		fc.mu.Unlock()
		// Every request is for at most the 130×70 screen; each
		// update is bounded by its raw size plus headers, and by the
		// number of requests in the script.
		limit := 4096 + (len(msgs)/10+1)*(130*70*4+4+12*8+64)
		if wrote > limit {
			t.Fatalf("server wrote %d bytes for a %d-byte script", wrote, len(msgs))
		}
	})
}

// FuzzZRLE encodes fuzzed pixels in a fuzzed client format and decodes
// them with the test client's decoder: the picture must survive.
func FuzzZRLE(f *testing.F) {
	f.Add(uint8(0), uint16(70), uint16(65), []byte{1, 2, 3, 4, 5, 6, 7})
	f.Add(uint8(3), uint16(64), uint16(64), []byte{0})
	f.Add(uint8(5), uint16(1), uint16(200), []byte{9, 9, 9, 1})
	names := []string{"xrgb8888-le", "bgrx8888-be", "rgb888-be", "rgb565-le", "rgb555-be", "bgr233", "rgb-30bit"}
	f.Fuzz(func(t *testing.T, fi uint8, w, h uint16, seed []byte) {
		fm := formats[names[int(fi)%len(names)]]
		W, H := int(w)%100+1, int(h)%100+1 // up to 2×2 tiles: enough for edges, cheap enough for the smoke run
		src, err := display.NewBuffer(W, H, display.XRGB8888)
		if err != nil {
			t.Fatal(err)
		}
		if len(seed) == 0 {
			seed = []byte{0}
		}
		src.Update(src.Mode().Bounds(), func(pix []byte, m display.Mode) {
			for i := 0; i < W*H; i++ {
				// few distinct values, long and short runs
				v := seed[(i/(int(seed[i%len(seed)])%7+1))%len(seed)]
				binary.LittleEndian.PutUint32(pix[4*i:], uint32(v)*0x010203)
			}
		})
		m := src.Mode()
		e := &encoder{}
		c := &rfbClient{t: t, w: W, h: H, format: fm, fb: make([]byte, W*H*3)}
		r := display.Rect{W: W, H: H}
		out := e.encode(src, m, r, fm, true)
		if n := int(binary.BigEndian.Uint32(out[12:])); n != len(out)-16 {
			t.Fatalf("ZRLE length %d, data %d", n, len(out)-16)
		}
		if err := decodeZRLE(c, r, out[16:]); err != nil {
			t.Fatal(err)
		}
		sameImage(t, c.fb, want(t, src, fm), W)
		// The stream continues across rectangles.
		out = e.encode(src, m, r, fm, true)
		if err := decodeZRLE(c, r, out[16:]); err != nil {
			t.Fatal("second rectangle:", err)
		}
		sameImage(t, c.fb, want(t, src, fm), W)
	})
}

func decodeZRLE(c *rfbClient, r display.Rect, data []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			if e, ok := p.(error); ok && (e == io.EOF || e == io.ErrUnexpectedEOF) {
				err = e
				return
			}
			panic(p)
		}
	}()
	return c.zrle(r, data)
}
