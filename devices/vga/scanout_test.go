package vga

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"godm/devices"
	"godm/display"
	"godm/display/vnc"
)

// colour is the test picture, computed independently of any pixel format.
func colour(x, y int) (r, g, b uint8) {
	switch {
	case x < 40:
		return 0xff, 0, 0
	case y < 30:
		return 0, 0xff, 0
	case (x/8+y/8)%2 == 0:
		return 0, 0, 0xff
	default:
		return uint8(x * 4), uint8(y * 8), 0x80
	}
}

// modeSet programs a linear mode through the DISPI ports and draws the
// picture into VRAM as a guest driver would for that depth. It returns
// the expected RGB (after the depth's precision loss).
func modeSet(t *testing.T, v *VBE, s *Scanout, w, h, bpp int) []byte {
	p := Ports{V: v}
	set := func(i, val uint16) {
		p.Write(devices.Access{Addr: PortIndex, Size: 2}, uint64(i))
		p.Write(devices.Access{Addr: PortData, Size: 2}, uint64(val))
	}
	set(IndexEnable, 0)
	set(IndexXRes, uint16(w))
	set(IndexYRes, uint16(h))
	set(IndexBPP, uint16(bpp))
	set(IndexEnable, Enabled|LFBEnabled)
	m := v.Mode()
	want := make([]byte, 0, w*h*3)
	for y := 0; y < h; y++ {
		var row []byte
		for x := 0; x < w; x++ {
			r, g, b := colour(x, y)
			switch bpp {
			case 32:
				row = append(row, b, g, r, 0)
			case 24:
				row = append(row, b, g, r)
			case 16:
				v := uint16(r>>3)<<11 | uint16(g>>2)<<5 | uint16(b>>3)
				row = append(row, byte(v), byte(v>>8))
				r, g, b = expand(r>>3, 31), expand(g>>2, 63), expand(b>>3, 31)
			case 15:
				v := uint16(r>>3)<<10 | uint16(g>>3)<<5 | uint16(b>>3)
				row = append(row, byte(v), byte(v>>8))
				r, g, b = expand(r>>3, 31), expand(g>>3, 31), expand(b>>3, 31)
			}
			want = append(want, r, g, b)
		}
		s.WriteVRAM(int(m.Start)+y*int(m.LineLength), row)
	}
	return want
}

// expand scales a channel of maximum max to 0..255 with rounding.
func expand(c uint8, max int) uint8 { return uint8((int(c)*255 + max/2) / max) }

func decodeCompare(t *testing.T, img image.Image, want []byte, w, h int) {
	t.Helper()
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		t.Fatalf("picture %v, want %dx%d", b, w, h)
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			i := 3 * (y*w + x)
			if uint8(r>>8) != want[i] || uint8(g>>8) != want[i+1] || uint8(b>>8) != want[i+2] {
				t.Fatalf("(%d,%d) = %02x%02x%02x, want % x", x, y, r>>8, g>>8, b>>8, want[i:i+3])
			}
		}
	}
}

// A guest's VBE mode set and drawing, seen through screendump (PNG).
func TestScanoutScreendump(t *testing.T) {
	v := NewVBE(16<<20, nil)
	s := NewScanout(v, make([]byte, 16<<20))
	for _, bpp := range []int{32, 24, 16, 15} {
		want := modeSet(t, v, s, 200, 96, bpp)
		var buf bytes.Buffer
		if err := display.WritePNG(&buf, s); err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(&buf)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(strconv.Itoa(bpp), func(t *testing.T) { decodeCompare(t, img, want, 200, 96) })
	}
}

// Hash comparison finds exactly the tiles a write touched.
func TestScanoutDirty(t *testing.T) {
	v := NewVBE(16<<20, nil)
	s := NewScanout(v, make([]byte, 16<<20))
	modeSet(t, v, s, 256, 128, 32)
	m := s.Mode()
	tl := display.NewTiles(m.Width, m.Height)
	s.CollectDirty(tl)
	if tl.Count() != 8 {
		t.Fatalf("first collection: %d of 8 tiles", tl.Count())
	}
	tl.Reset(m.Width, m.Height)
	s.CollectDirty(tl)
	if !tl.Empty() {
		t.Fatal("unchanged VRAM reported dirty")
	}
	s.WriteVRAM(70*1024+130*4, []byte{1, 2, 3, 4}) // pixel (130, 70)
	s.CollectDirty(tl)
	if tl.Count() != 1 || !tl.Get(2, 1) {
		t.Fatalf("after one pixel: %d tiles", tl.Count())
	}
	modeSet(t, v, s, 320, 200, 16)
	if s.Mode().Serial == m.Serial {
		t.Fatal("a mode set kept the serial")
	}
}

// The whole path a guest's picture takes to an admin: VBE mode set and
// VRAM writes, the VNC server, and gvnccapture's PNG (a real client).
func TestScanoutOverVNC(t *testing.T) {
	bin, err := exec.LookPath("gvnccapture")
	if err != nil {
		t.Skip("gvnccapture not installed (Debian gvncviewer, scripts/test-packages.txt):", err)
	}
	v := NewVBE(16<<20, nil)
	s := NewScanout(v, make([]byte, 16<<20))
	srv, err := vnc.New(vnc.Config{Source: s})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, err := vnc.Options{Enabled: true, Host: "127.0.0.1", Display: 50, To: 99}.Listen()
	if err != nil {
		t.Skip("no free loopback VNC port:", err)
	}
	go srv.Serve(ln)
	disp := ln.Addr().(*net.TCPAddr).Port - vnc.BasePort
	for _, bpp := range []int{32, 24, 16} {
		want := modeSet(t, v, s, 320, 200, bpp)
		out := filepath.Join(t.TempDir(), "cap.png")
		cmd := exec.Command(bin, fmt.Sprintf("127.0.0.1:%d", disp), out)
		var log bytes.Buffer
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("gvnccapture: %v\n%s", err, log.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("gvnccapture hung\n%s", log.String())
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Run(strconv.Itoa(bpp), func(t *testing.T) { decodeCompare(t, img, want, 320, 200) })
	}
}
