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

// drmCase is one guest display test: a VGA on godm, Linux's DRM driver
// for it, and the pattern the guest writes to its fbdev.
type drmCase struct {
	vga     board.Entry       // the display device (id "vga", at 00:03.0)
	modules []string          // DRM modules in load order
	args    map[string]string // insmod arguments by module
	driver  string            // the PCI driver's name
	fbName  string            // the fbdev's name
	bpp     int               // the fbdev's depth the pattern is for
	raw     []byte            // the pattern as the fbdev's bytes
	rgb     []byte            // the pattern as R, G, B
	tol     int               // per-channel tolerance (see the callers)
	ptrs    []ptr             // pointer events the RFB client cycles through
	events  int               // input events the guest reads
	// prepare is shell the guest runs before loading the modules.
	prepare string
}

// ptr is one RFB PointerEvent.
type ptr struct {
	x, y int
	mask uint8
}

// drmResult is what runGuestDRM saw.
type drmResult struct {
	con            string
	sent           int // pointer events sent
	initW, initH   int // the RFB client's ServerInit size
	capPNG         []byte
	capImg         image.Image
	capErr, ptrErr error
	srv            *vnc.Server
	dev            any // the display device
}

// runGuestDRM boots the guest with the case's display device at 00:03.0
// and godm's UHCI at 00:05.0 with a tablet, godm's VNC server on the
// display with the tablet as pointer (as cmd/godm sets it up for libxl's
// -vnc with usbdevice="tablet"). The guest loads the DRM modules, writes
// the pattern to /dev/fb0 and then reads input events; meanwhile the
// host waits until the display shows the pattern, captures it with
// gvnccapture and then sends pointer events over RFB until the guest is
// done (the events are also what lets the guest go on: the capture is of
// the running guest's display).
func runGuestDRM(t *testing.T, c drmCase) *drmResult {
	t.Helper()
	a, _ := guestAssets(t)
	capBin, err := exec.LookPath("gvnccapture")
	if err != nil {
		t.Skipf("gvnccapture not installed (Debian package gvncviewer in scripts/test-packages.txt): %v", err)
	}
	dir := os.Getenv("GODM_GUEST_DIR")
	files := map[string][]byte{"pattern.raw": c.raw}
	mods := append(append([]string{}, c.modules...), usbModules...)
	for _, ko := range mods {
		b, err := os.ReadFile(filepath.Join(dir, ko))
		if err != nil {
			t.Skipf("real-guest display test needs Debian's %s, which scripts/guest-assets.sh extracts: %v", ko, err)
		}
		files[ko] = b
	}
	m := newMachine(t, Config{Devices: []board.Entry{
		c.vga,
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
	r := &drmResult{dev: m.Device("vga").Dev}
	var src display.Source
	switch d := r.dev.(type) {
	case *vga.Device:
		src = d.Source()
	case *vga.Cirrus:
		src = d.Source()
	default:
		t.Fatalf("display device %T", d)
	}
	tab := m.Device("tablet").Dev.(*board.USBTablet)

	r.srv, err = vnc.New(vnc.Config{Source: src, Input: display.SplitInput{Pointer: tab}, Name: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.srv.Close()
	ln, err := vnc.Options{Enabled: true, Host: "127.0.0.1", Display: 50, To: 99}.Listen()
	if err != nil {
		t.Skip("no free loopback VNC port:", err)
	}
	r.srv.Go(ln)
	vncAddr := ln.Addr().String()
	_, port, _ := strings.Cut(vncAddr, ":")
	var disp int
	fmt.Sscan(port, &disp)
	disp -= vnc.BasePort

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if !waitPattern(src, c.rgb, c.tol, stop) {
			r.capErr = errors.New("the display never showed the pattern")
			return
		}
		r.capPNG, r.capImg, r.capErr = gvnccapture(capBin, disp)
		if r.capErr != nil {
			return
		}
		rc, err := dialRFB(vncAddr)
		if err != nil {
			r.ptrErr = err
			return
		}
		defer rc.Close()
		r.initW, r.initH = rc.w, rc.h
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			p := c.ptrs[i%len(c.ptrs)]
			if err := rc.pointer(p.x, p.y, p.mask); err != nil {
				r.ptrErr = err
				return
			}
			r.sent++
		}
	}()

	var load strings.Builder
	for i, ko := range mods {
		arg := ""
		if c.args[ko] != "" {
			arg = " " + c.args[ko]
		}
		fmt.Fprintf(&load, "insmod /%s%s || exit %d\n", ko, arg, 10+i)
	}
	// Page-sized writes: Debian 6.1's fbdev emulation flushes its shadow
	// buffer to VRAM for the rectangle a write covers, and a write of
	// exactly one scanline came out as an empty rectangle (nothing ever
	// reached VRAM with bs=2560; every write of 4096 bytes spans two
	// lines or more).
	script := c.prepare + load.String() + `
for i in $(seq 1 100); do [ -e /dev/fb0 ] && break; sleep 0.2; done
echo "DRMDRV $(basename $(readlink /sys/bus/pci/devices/0000:00:03.0/driver))"
f=/sys/class/graphics/fb0
echo "MODES $(cat /sys/class/drm/card0-*/modes | tr '\n' ' ')"
echo "FB $(cat $f/name) $(cat $f/virtual_size) $(cat $f/bits_per_pixel) $(cat $f/stride)"
for v in /sys/class/vtconsole/vtcon*; do grep -q 'frame buffer' $v/name && echo 0 > $v/bind && echo "FBCON unbound"; done
dd if=/pattern.raw of=/dev/fb0 bs=4096 2>/dev/null && echo PATTERN-WRITTEN
` + tabletScript(c.events, 120)
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
	r.con = res.Console
	for _, want := range []string{
		"DRMDRV " + c.driver,
		fmt.Sprintf("FB %s %d,%d %d %d", c.fbName, patW, patH, c.bpp, patW*c.bpp/8),
		"FBCON unbound",
		"PATTERN-WRITTEN",
		"HCD uhci_hcd",
		"EVDEV event",
	} {
		if !strings.Contains(r.con, want) {
			t.Errorf("console lacks %q", want)
		}
	}

	// The display: the real client's picture is the pattern.
	if r.capErr != nil {
		t.Errorf("capture: %v", r.capErr)
		explainPicture(t, src, c.raw, c.rgb, func() []byte {
			if d, ok := r.dev.(interface{ VRAM() []byte }); ok {
				return d.VRAM()
			}
			return nil
		}())
	} else {
		if worst, err := sameImage(r.capImg, c.rgb, patW, patH, c.tol); err != nil {
			t.Errorf("gvnccapture's picture: %v", err)
		} else {
			t.Logf("gvnccapture's %dx%d capture equals the guest's %d-bpp pattern (largest channel difference %d, tolerance %d; %d bytes of PNG)",
				patW, patH, c.bpp, worst, c.tol, len(r.capPNG))
		}
		if st := r.srv.Stats(); st.RectsZRLE == 0 {
			t.Errorf("gvnccapture took no ZRLE rectangle: %+v", st)
		}
	}
	if r.ptrErr != nil {
		t.Errorf("RFB pointer client: %v", r.ptrErr)
	}
	if r.initW != patW || r.initH != patH {
		t.Errorf("RFB ServerInit gave %dx%d, want the guest's %dx%d", r.initW, r.initH, patW, patH)
	}
	return r
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
	raw, rgb := bochsPattern()
	// The positions the RFB client sends, cycled with RFB button masks:
	// none, left, right, wheel up (a press of bit 3). The corners check
	// the scale's ends.
	ptrs := []ptr{{40, 30, 0}, {280, 210, 1}, {patW - 1, patH - 1, 4}, {0, 0, 8}}
	r := runGuestDRM(t, drmCase{
		// 4 MiB of VRAM, the least bochs takes: drm_vram_helper takes
		// modes whose framebuffer fits half of it, so bochs's default
		// 1024×768 is out (it would cost the guest minutes of clearing
		// VRAM through the proxy).
		vga:     board.Entry{Driver: "VGA", Props: map[string]string{"id": "vga", "addr": "03.0", "romfile": "", "vgamem_mb": "4"}},
		modules: bochsModules,
		args:    map[string]string{"bochs.ko": fmt.Sprintf("defx=%d defy=%d", patW, patH)},
		driver:  "bochs-drm", fbName: "bochs-drmdrmfb", bpp: 32,
		raw: raw, rgb: rgb,
		ptrs: ptrs, events: 48,
	})
	if r.capErr == nil {
		if p := os.Getenv("GODM_BOCHS_PNG"); p != "" {
			// docs/guest-bochs-drm.png is written this way.
			if err := os.WriteFile(p, r.capPNG, 0o644); err != nil {
				t.Error(err)
			}
		}
	}

	// The tablet: what the RFB client sent is what evdev gave.
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
	ev := checkTabletEvents(t, r.con, want)
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
		t.Logf("console:\n%s", r.con)
		return
	}
	t.Logf("RFB client sent %d pointer events; guest read %d distinct ABS values, BTN_LEFT %d, BTN_RIGHT %d, REL_WHEEL %d",
		r.sent, len(ev.abs), ev.keys[btnLeft], ev.keys[btnRight], len(ev.wheel))
}

// cirrusModules are Debian 6.1's DRM modules for the cirrus driver in
// load order (modinfo: cirrus depends on drm, drm_kms_helper and
// drm_shmem_helper; drm_shmem_helper on drm).
var cirrusModules = []string{"drm.ko", "drm_kms_helper.ko", "drm_shmem_helper.ko", "cirrus.ko"}

// cirrusPattern is a 16-bpp (RGB565) picture: red is x's low 5 bits,
// green y's low 6, blue changes from one 32×64 block to the next, so a
// shifted row, column or channel shows. rgb widens each channel by
// replicating its top bits.
func cirrusPattern() (raw, rgb []byte) {
	raw = make([]byte, 0, patW*patH*2)
	rgb = make([]byte, 0, patW*patH*3)
	for y := range patH {
		for x := range patW {
			r, g, b := x&31, y&63, (x>>5*3+y>>6*7)&31
			v := uint16(r<<11 | g<<5 | b)
			raw = append(raw, byte(v), byte(v>>8))
			rgb = append(rgb, byte(r<<3|r>>2), byte(g<<2|g>>4), byte(b<<3|b>>2))
		}
	}
	return raw, rgb
}

// TestGuestCirrusDRM: Linux's cirrus DRM driver binds godm's Cirrus
// CL-GD5446 (1013:00b8 with QEMU's subsystem IDs) through the proxy,
// setting the mode through the VGA and extended registers in the MMIO
// BAR and drawing into the linear framebuffer; its fbdev emulation is
// 16 bpp (RGB565). The guest writes a pattern into /dev/fb0 and
// gvnccapture sees it over godm's VNC server. RGB565 has no one widening
// to 8 bits per channel (shifting or replicating the top bits: up to 7
// apart), so each channel may differ by 7; the pattern's neighbours
// differ by 8 or more in red or green.
//
// The driver's mode set ends with one legacy port write, outb(0x20,
// 0x3c0): the attribute controller's palette address source bit, without
// which the VGA shows nothing (QEMU's vga.c blanks the picture as godm
// does). x-pci-proxy-dev forwards no legacy ports (under Xen the write
// reaches godm as an ioreq), so the guest makes that write beforehand
// through the MMIO BAR's alias of 0x3c0 (offset 0; the flip-flop is in
// its index state after reset, and the driver writes no AR register).
// It also writes the miscellaneous output register (0x3c2, offset 2) as
// the VGA BIOS's mode 3 leaves it, 0x67: under Xen SeaBIOS runs the
// Cirrus option ROM before Linux, the harness boots the kernel directly,
// and without the colour bit the driver's CRTC writes at 0x3d4/0x3d5 go
// to the wrong address (QEMU's vga_ioport_invalid, godm's too).
func TestGuestCirrusDRM(t *testing.T) {
	raw, rgb := cirrusPattern()
	r := runGuestDRM(t, drmCase{
		vga:     board.Entry{Driver: "cirrus-vga", Props: map[string]string{"id": "vga", "addr": "03.0", "romfile": ""}},
		modules: cirrusModules,
		driver:  "cirrus", fbName: "cirrusdrmfb", bpp: 16,
		raw: raw, rgb: rgb, tol: 7,
		ptrs: []ptr{{1, 1, 0}}, events: 3,
		prepare: `d=/sys/bus/pci/devices/0000:00:03.0
echo 1 > $d/enable
b1=$(($(awk 'NR==2{print $1}' $d/resource)))
devmem $((b1 + 2)) 8 0x67 && devmem $b1 8 0x20 && echo "AR index 0x20"
`,
	})
	if !strings.Contains(r.con, "AR index 0x20") {
		t.Error("the guest could not set the AR index through the MMIO BAR")
	}
	if t.Failed() {
		t.Logf("console:\n%s", r.con)
	}
}

// waitPattern polls the display until it shows want (the picture as
// R, G, B, each channel within tol) or stop closes.
func waitPattern(src display.Source, want []byte, tol int, stop <-chan struct{}) bool {
	for {
		if md, rgb, err := display.Snapshot(src); err == nil && md.Width == patW && md.Height == patH && near(rgb, want, tol) == 0 {
			return true
		}
		select {
		case <-stop:
			return false
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// near returns how many of a's R, G, B pixels differ from b's by more
// than tol in a channel (all of them if the lengths differ).
func near(a, b []byte, tol int) int {
	if len(a) != len(b) {
		return len(b) / 3
	}
	bad := 0
	for i := 0; i < len(a); i += 3 {
		for c := range 3 {
			if d := int(a[i+c]) - int(b[i+c]); d > tol || d < -tol {
				bad++
				break
			}
		}
	}
	return bad
}

// explainPicture logs how the display's picture differs from the
// pattern and where the pattern's first row lies in VRAM (the guest has
// stopped).
func explainPicture(t *testing.T, src display.Source, raw, rgb, vram []byte) {
	t.Helper()
	md, got, err := display.Snapshot(src)
	if err != nil {
		t.Logf("picture: %v", err)
		return
	}
	t.Logf("picture %dx%d %+v", md.Width, md.Height, md.Format)
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
	for _, n := range []int{patW * 2, 64} {
		if off := bytes.Index(vram, raw[:n]); off >= 0 {
			t.Logf("the pattern's first %d bytes are at VRAM offset %#x", n, off)
			break
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

// sameImage compares a decoded picture with w×h pixels as R, G, B, each
// channel within tol, and returns the largest channel difference.
func sameImage(img image.Image, rgb []byte, w, h, tol int) (int, error) {
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		return 0, fmt.Errorf("%v, want %dx%d", b, w, h)
	}
	bad, worst, first := 0, 0, ""
	for y := range h {
		for x := range w {
			r, g, b, _ := img.At(x, y).RGBA()
			i := 3 * (y*w + x)
			got := [3]byte{byte(r >> 8), byte(g >> 8), byte(b >> 8)}
			for c := range 3 {
				worst = max(worst, int(got[c])-int(rgb[i+c]), int(rgb[i+c])-int(got[c]))
			}
			if near(got[:], rgb[i:i+3], tol) != 0 {
				if bad == 0 {
					first = fmt.Sprintf("(%d,%d) = % x, want % x", x, y, got, rgb[i:i+3])
				}
				bad++
			}
		}
	}
	if bad > 0 {
		return worst, fmt.Errorf("%d pixels differ by more than %d, first %s", bad, tol, first)
	}
	return worst, nil
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
