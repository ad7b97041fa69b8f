package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"godm/devices/usb/hid"
	"godm/devices/vga"
	"godm/display"
	"godm/display/vnc"
	"godm/internal/board"
	"godm/internal/guest"
)

// bochsModules are Debian 6.1's DRM modules for the bochs driver in load
// order (each one's modinfo depends= is loaded before it: drm_kms_helper
// and ttm need drm, drm_ttm_helper drm and ttm, drm_vram_helper all four,
// bochs drm, drm_kms_helper, drm_vram_helper and drm_ttm_helper).
var bochsModules = []string{"drm.ko", "drm_kms_helper.ko", "ttm.ko", "drm_ttm_helper.ko", "drm_vram_helper.ko", "bochs.ko"}

// The mode the guest's kernel command line asks for (video=), and the
// pattern it writes at 32 bpp.
const (
	patW, patH = 640, 480
)

// bochsPattern is the picture the guest draws: every pixel distinct (red
// is x's low byte, green y's, blue x's and y's high bits over an 80×60
// checkerboard), so a shifted row, column or channel shows. raw is
// the framebuffer bytes (XRGB8888 little-endian: B, G, R, X), rgb the
// same pixels as R, G, B.
func bochsPattern() (raw, rgb []byte) {
	raw = make([]byte, 0, patW*patH*4)
	rgb = make([]byte, 0, patW*patH*3)
	for y := range patH {
		for x := range patW {
			r, g, b := uint8(x), uint8(y), uint8(x>>8<<6|y>>8<<5)
			if (x/80+y/60)%2 == 1 {
				b |= 0x1f
			}
			raw = append(raw, b, g, r, 0)
			rgb = append(rgb, r, g, b)
		}
	}
	return raw, rgb
}

// TestGuestBochsDRM: Linux's bochs DRM driver binds godm's standard VGA
// (1234:1111 at 00:03.0) through x-pci-proxy-dev, programming the mode
// through DISPI in the MMIO BAR, and its fbdev emulation gives /dev/fb0;
// the guest writes a known pattern into it with busybox dd. A real VNC
// client (gvnccapture) then captures godm's VNC server serving the VGA
// while the guest runs, and the capture equals the pattern pixel for
// pixel. In the same guest, usbhid reads the tablet on godm's UHCI, and
// pointer events an RFB client sends to the VNC server come out of evdev
// as the absolute positions the HID report defines (0..0x7fff over the
// guest's 640×480 mode), with the buttons and the wheel as RFB's mask.
func TestGuestBochsDRM(t *testing.T) {
	a, _ := guestAssets(t)
	capBin, err := exec.LookPath("gvnccapture")
	if err != nil {
		t.Skipf("gvnccapture not installed (Debian package gvncviewer in scripts/test-packages.txt): %v", err)
	}
	dir := os.Getenv("GODM_GUEST_DIR")
	raw, rgb := bochsPattern()
	files := map[string][]byte{"pattern.raw": raw}
	for _, ko := range append(append([]string{}, bochsModules...), usbModules...) {
		b, err := os.ReadFile(filepath.Join(dir, ko))
		if err != nil {
			t.Skipf("real-guest display test needs Debian's %s, which scripts/guest-assets.sh extracts: %v", ko, err)
		}
		files[ko] = b
	}
	m := newMachine(t, Config{Devices: []board.Entry{
		// 4 MiB of VRAM, the least bochs takes: drm_vram_helper takes
		// modes whose framebuffer fits half of it, so bochs's default
		// 1024×768 is out (it would cost the guest minutes of clearing
		// VRAM through the proxy).
		{Driver: "VGA", Props: map[string]string{"id": "vga", "addr": "03.0", "romfile": "", "vgamem_mb": "4"}},
		{Driver: board.UHCIDriver, Props: map[string]string{"id": "usb", "addr": "05.0"}},
		{Driver: board.TabletDriver, Props: map[string]string{"id": "tablet", "bus": "usb.0"}},
	}})
	vgaPx, err := m.ProxyDevice("vga")
	if err != nil {
		t.Fatal(err)
	}
	usbPx, err := m.ProxyDevice("usb")
	if err != nil {
		t.Fatal(err)
	}
	src := m.Device("vga").Dev.(*vga.Device).Source()
	tab := m.Device("tablet").Dev.(*board.USBTablet)

	// godm's VNC server on the VGA's picture with the tablet as pointer,
	// as cmd/godm sets it up for libxl's -vnc with usbdevice="tablet".
	srv, err := vnc.New(vnc.Config{Source: src, Input: display.SplitInput{Pointer: tab}, Name: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, err := vnc.Options{Enabled: true, Host: "127.0.0.1", Display: 50, To: 99}.Listen()
	if err != nil {
		t.Skip("no free loopback VNC port:", err)
	}
	srv.Go(ln)
	vncAddr := ln.Addr().String()
	_, port, _ := strings.Cut(vncAddr, ":")
	var disp int
	fmt.Sscan(port, &disp)
	disp -= vnc.BasePort

	// The positions an RFB client sends, cycled with RFB button masks:
	// none, left, right, wheel up (a press of bit 3). The corners check
	// the scale's ends.
	type ptr struct {
		x, y int
		mask uint8
	}
	ptrs := []ptr{{40, 30, 0}, {280, 210, 1}, {patW - 1, patH - 1, 4}, {0, 0, 8}}

	// The host's side runs while the guest does: wait until the VGA
	// shows the pattern, capture it with gvnccapture, then send pointer
	// events over RFB until the guest is done.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var capErr, ptrErr error
	var capImg image.Image
	var capPNG []byte
	var sent int
	var initW, initH int
	wg.Add(1)
	go func() {
		defer wg.Done()
		if !waitPattern(src, rgb, stop) {
			capErr = errors.New("the VGA never showed the pattern")
			return
		}
		capPNG, capImg, capErr = gvnccapture(capBin, disp)
		if capErr != nil {
			return
		}
		c, err := dialRFB(vncAddr)
		if err != nil {
			ptrErr = err
			return
		}
		defer c.Close()
		initW, initH = c.w, c.h
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			p := ptrs[i%len(ptrs)]
			if err := c.pointer(p.x, p.y, p.mask); err != nil {
				ptrErr = err
				return
			}
			sent++
		}
	}()

	var load strings.Builder
	for i, ko := range append(append([]string{}, bochsModules...), usbModules...) {
		args := ""
		if ko == "bochs.ko" {
			args = fmt.Sprintf(" defx=%d defy=%d", patW, patH)
		}
		fmt.Fprintf(&load, "insmod /%s%s || exit %d\n", ko, args, 10+i)
	}
	// Page-sized writes: Debian 6.1's fbdev emulation flushes its shadow
	// buffer to VRAM for the rectangle a write covers, and a write of
	// exactly one scanline came out as an empty rectangle (nothing ever
	// reached VRAM with bs=2560; every write of 4096 bytes spans two
	// lines or more).
	script := load.String() + `
for i in $(seq 1 100); do [ -e /dev/fb0 ] && break; sleep 0.2; done
echo "DRMDRV $(basename $(readlink /sys/bus/pci/devices/0000:00:03.0/driver))"
f=/sys/class/graphics/fb0
echo "MODES $(cat /sys/class/drm/card0-*/modes | tr '\n' ' ')"
echo "FB $(cat $f/name) $(cat $f/virtual_size) $(cat $f/bits_per_pixel) $(cat $f/stride)"
for v in /sys/class/vtconsole/vtcon*; do grep -q 'frame buffer' $v/name && echo 0 > $v/bind && echo "FBCON unbound"; done
dd if=/pattern.raw of=/dev/fb0 bs=4096 2>/dev/null && echo PATTERN-WRITTEN
` + tabletScript(48, 120)
	res, err := m.Run(context.Background(), guest.Config{
		Assets:  a,
		Script:  script,
		Files:   files,
		Proxies: []guest.Proxy{vgaPx, usbPx},
		Append:  fmt.Sprintf("video=%dx%d", patW, patH),
		Timeout: 480 * time.Second,
		WorkDir: t.TempDir(),
	})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("guest: %v\nconsole:\n%s", err, res.Console)
	}
	for _, e := range m.Errors() {
		t.Errorf("data path: %v", e)
	}
	con := res.Console
	for _, want := range []string{
		"DRMDRV bochs-drm",
		fmt.Sprintf("FB bochs-drmdrmfb %d,%d 32 %d", patW, patH, patW*4),
		"FBCON unbound",
		"PATTERN-WRITTEN",
		"HCD uhci_hcd",
		"EVDEV event",
	} {
		if !strings.Contains(con, want) {
			t.Errorf("console lacks %q", want)
		}
	}

	// The display: the real client's picture is the pattern.
	if capErr != nil {
		t.Errorf("capture: %v", capErr)
		explainPicture(t, m.Device("vga").Dev.(*vga.Device), raw, rgb)
	} else {
		if err := sameImage(capImg, rgb, patW, patH); err != nil {
			t.Errorf("gvnccapture's picture: %v", err)
		} else {
			t.Logf("gvnccapture's %dx%d capture equals the guest's pattern pixel for pixel (%d bytes of PNG)", patW, patH, len(capPNG))
		}
		if p := os.Getenv("GODM_BOCHS_PNG"); p != "" {
			// The screenshot in docs/ is written this way (see docs/).
			if err := os.WriteFile(p, capPNG, 0o644); err != nil {
				t.Error(err)
			}
		}
		if st := srv.Stats(); st.RectsZRLE == 0 {
			t.Errorf("gvnccapture took no ZRLE rectangle: %+v", st)
		}
	}

	// The tablet: what the RFB client sent is what evdev gave.
	if ptrErr != nil {
		t.Errorf("RFB pointer client: %v", ptrErr)
	}
	if initW != patW || initH != patH {
		t.Errorf("RFB ServerInit gave %dx%d, want the guest's %dx%d", initW, initH, patW, patH)
	}
	if hid.AbsMax != 0x7fff {
		t.Fatalf("hid.AbsMax = %#x; the tablet's report descriptor says 0x7fff", hid.AbsMax)
	}
	want := map[[2]uint16]bool{}
	for _, p := range ptrs {
		// The report's logical range 0..0x7fff spans the picture's
		// first to last pixel (QEMU's qemu_input_scale_axis).
		want[[2]uint16{0, uint16(p.x * 0x7fff / (patW - 1))}] = true
		want[[2]uint16{1, uint16(p.y * 0x7fff / (patH - 1))}] = true
	}
	ev := checkTabletEvents(t, con, want)
	if ev.keys[btnLeft] == 0 || ev.keys[btnRight] == 0 {
		t.Errorf("guest read BTN_LEFT %d and BTN_RIGHT %d times, want both", ev.keys[btnLeft], ev.keys[btnRight])
	}
	if len(ev.wheel) == 0 {
		t.Error("guest read no REL_WHEEL event")
	}
	for _, v := range ev.wheel {
		if v != 1 {
			t.Errorf("guest read REL_WHEEL %d, want 1 (one step up per press of RFB's button 4)", v)
		}
	}
	if t.Failed() {
		t.Logf("console:\n%s", con)
		return
	}
	t.Logf("RFB client sent %d pointer events; guest read %d distinct ABS values, BTN_LEFT %d, BTN_RIGHT %d, REL_WHEEL %d",
		sent, len(ev.abs), ev.keys[btnLeft], ev.keys[btnRight], len(ev.wheel))
}

// waitPattern polls the display until it shows want (the picture as
// R, G, B) or stop closes.
func waitPattern(src display.Source, want []byte, stop <-chan struct{}) bool {
	for {
		if md, rgb, err := display.Snapshot(src); err == nil && md.Width == patW && md.Height == patH && bytes.Equal(rgb, want) {
			return true
		}
		select {
		case <-stop:
			return false
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// explainPicture logs how the VGA's picture differs from the pattern and
// where the pattern's first row lies in VRAM (the guest has stopped).
func explainPicture(t *testing.T, d *vga.Device, raw, rgb []byte) {
	t.Helper()
	md, got, err := display.Snapshot(d.Source())
	if err != nil {
		t.Logf("picture: %v", err)
		return
	}
	t.Logf("picture %dx%d %+v; VBE %+v", md.Width, md.Height, md.Format, d.Scanout().Mode())
	if len(got) == len(rgb) {
		bad := 0
		for i := 0; i < len(rgb); i += 3 {
			if !bytes.Equal(got[i:i+3], rgb[i:i+3]) {
				if bad == 0 {
					t.Logf("first differing pixel (%d,%d): % x, want % x", i/3%patW, i/3/patW, got[i:i+3], rgb[i:i+3])
				}
				bad++
			}
		}
		t.Logf("%d pixels differ", bad)
	}
	vram := d.VRAM()
	for _, n := range []int{patW * 4, 64} {
		if off := bytes.Index(vram, raw[:n]); off >= 0 {
			t.Logf("the pattern's first %d bytes are at VRAM offset %#x", n, off)
			break
		}
	}
	if p := os.Getenv("GODM_BOCHS_PNG"); p != "" {
		var b bytes.Buffer
		if display.WritePNG(&b, d.Source()) == nil {
			os.WriteFile(p+".got.png", b.Bytes(), 0o644)
		}
	}
}

// gvnccapture runs gtk-vnc's capture client on display disp and returns
// its PNG and the decoded picture.
func gvnccapture(bin string, disp int) ([]byte, image.Image, error) {
	out := filepath.Join(os.TempDir(), fmt.Sprintf("godm-e2e-cap-%d-%d.png", os.Getpid(), disp))
	defer os.Remove(out)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, bin, fmt.Sprintf("127.0.0.1:%d", disp), out).CombinedOutput()
	if err != nil {
		return nil, nil, fmt.Errorf("gvnccapture: %v\n%s", err, b)
	}
	p, err := os.ReadFile(out)
	if err != nil {
		return nil, nil, err
	}
	img, err := png.Decode(bytes.NewReader(p))
	return p, img, err
}

// sameImage compares a decoded picture with w×h pixels as R, G, B.
func sameImage(img image.Image, rgb []byte, w, h int) error {
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		return fmt.Errorf("%v, want %dx%d", b, w, h)
	}
	bad, first := 0, ""
	for y := range h {
		for x := range w {
			r, g, b, _ := img.At(x, y).RGBA()
			i := 3 * (y*w + x)
			if got := [3]byte{byte(r >> 8), byte(g >> 8), byte(b >> 8)}; got != [3]byte(rgb[i:i+3]) {
				if bad == 0 {
					first = fmt.Sprintf("(%d,%d) = % x, want % x", x, y, got, rgb[i:i+3])
				}
				bad++
			}
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d pixels differ, first %s", bad, first)
	}
	return nil
}

// rfbClient is the smallest RFB 3.8 client that sends pointer events
// (RFC 6143): no security, a shared session, and no update requests, so
// the server sends nothing after ServerInit.
type rfbClient struct {
	net.Conn
	w, h int
}

func dialRFB(addr string) (*rfbClient, error) {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c := &rfbClient{Conn: nc}
	if err := c.handshake(); err != nil {
		nc.Close()
		return nil, fmt.Errorf("RFB handshake: %w", err)
	}
	return c, nil
}

func (c *rfbClient) handshake() error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	ver := make([]byte, 12)
	if _, err := io.ReadFull(c, ver); err != nil {
		return err
	}
	if string(ver) != "RFB 003.008\n" {
		return fmt.Errorf("server version %q", ver)
	}
	if _, err := c.Write(ver); err != nil {
		return err
	}
	var n [1]byte
	if _, err := io.ReadFull(c, n[:]); err != nil || n[0] == 0 {
		return fmt.Errorf("security types: %d, %v", n[0], err)
	}
	types := make([]byte, n[0])
	if _, err := io.ReadFull(c, types); err != nil {
		return err
	}
	if !bytes.Contains(types, []byte{1}) {
		return fmt.Errorf("no None security among %v", types)
	}
	var res [4]byte
	if _, err := c.Write([]byte{1}); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, res[:]); err != nil || binary.BigEndian.Uint32(res[:]) != 0 {
		return fmt.Errorf("security result % x, %v", res, err)
	}
	if _, err := c.Write([]byte{1}); err != nil { // ClientInit: shared
		return err
	}
	// ServerInit: width, height, 16 bytes of pixel format, name.
	init := make([]byte, 24)
	if _, err := io.ReadFull(c, init); err != nil {
		return err
	}
	c.w, c.h = int(binary.BigEndian.Uint16(init)), int(binary.BigEndian.Uint16(init[2:]))
	_, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(init[20:])))
	return err
}

// pointer sends a PointerEvent (message type 5).
func (c *rfbClient) pointer(x, y int, mask uint8) error {
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Write([]byte{5, mask, byte(x >> 8), byte(x), byte(y >> 8), byte(y)})
	return err
}
