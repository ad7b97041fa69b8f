package main

import (
	"net"
	"testing"

	"godm/display"
	"godm/display/vnc"
)

// capture against godm's own VNC server, with and without a password:
// the picture comes back pixel for pixel.
func TestCapture(t *testing.T) {
	for _, auth := range []vnc.Auth{vnc.AuthNone, vnc.AuthVNC} {
		buf, err := display.NewBuffer(90, 48, display.XRGB8888)
		if err != nil {
			t.Fatal(err)
		}
		buf.Fill(display.Rect{X: 9, Y: 16, W: 9, H: 16}, 0xff, 0x80, 0x01)
		srv, err := vnc.New(vnc.Config{Source: buf, Auth: auth, Password: "pw"})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(ln)
		w, h, rgb, err := capture(ln.Addr().String(), "pw")
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		if w != 90 || h != 48 {
			t.Fatalf("%dx%d", w, h)
		}
		for y := range h {
			for x := range w {
				want := [3]byte{}
				if x >= 9 && x < 18 && y >= 16 && y < 32 {
					want = [3]byte{0xff, 0x80, 0x01}
				}
				if got := [3]byte(rgb[3*(y*w+x):]); got != want {
					t.Fatalf("auth %d: (%d,%d) = % x, want % x", auth, x, y, got, want)
				}
			}
		}
	}
}
