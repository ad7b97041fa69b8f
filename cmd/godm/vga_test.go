package main

import (
	"bytes"
	"context"
	"crypto/des"
	"encoding/binary"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"godm/hyp/xensim"
)

// stdvgaArgv is libxl's argv for vga="stdvga" vnc=1 (vnclisten 127.0.0.1,
// vncunused: to=99), with the VNC display from disp and extra appended to
// the -vnc argument (",password=on").
func stdvgaArgv(dom int, dir string, disp int, extra string) string {
	a := libxlArgv(dom, dir)
	a = strings.Replace(a, "-vnc none", fmt.Sprintf("-vnc 127.0.0.1:%d%s,to=99 -k en-us", disp, extra), 1)
	return a + " -device VGA,vgamem_mb=16"
}

// startStdVGA runs godm as libxl would for a stdvga+VNC domain and waits
// until it runs; it returns libxl's QMP connection.
func startStdVGA(t *testing.T, extra string) (*dmRig, *qmpClient) {
	t.Helper()
	return startVGA(t, func(dom int, dir string, disp int) string { return stdvgaArgv(dom, dir, disp, extra) })
}

// startVGA runs godm with the argv argv builds (for a VNC display
// number) and waits until it runs.
func startVGA(t *testing.T, argv func(dom int, dir string, disp int) string) (*dmRig, *qmpClient) {
	t.Helper()
	needPTY(t)
	r := newDMRig(t)
	dom := int(r.dom.ID())
	// A display number well away from a desktop's, free ones found by to=.
	r.start(t, argv(dom, r.dir, 40+dom%20), nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	statePath := fmt.Sprintf("/local/domain/0/device-model/%d/state", dom)
	waited := make(chan error, 1)
	go func() { waited <- r.xs.WaitValue(ctx, statePath, []byte("running")) }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("waiting for %s: %v (log: %s)", statePath, err, r.log.String())
		}
	case err := <-r.done:
		r.once.Do(func() { r.result = err })
		t.Fatalf("godm ended early: %v (log: %s)", err, r.log.String())
	}
	return r, qmpDial(t, filepath.Join(r.dir, fmt.Sprintf("qmp-libxl-%d", dom)))
}

// vncPort asks query-vnc, as libxl does to record console/vnc-port.
func vncPort(t *testing.T, q *qmpClient) int {
	t.Helper()
	ret, e := q.do("query-vnc", nil)
	if e != "" {
		t.Fatal(e)
	}
	m := ret.(map[string]any)
	if m["enabled"] != true || m["host"] != "127.0.0.1" {
		t.Fatalf("query-vnc %v", m)
	}
	port, err := strconv.Atoi(m["service"].(string))
	if err != nil || port < 5900 {
		t.Fatalf("query-vnc service %v", m["service"])
	}
	return port
}

// glyphOf is the test font: every character and row its own pattern.
func glyphOf(ch, row int) byte { return byte(ch*37 + row*11 + ch*row) }

// drawBanner is what a VGA BIOS and a boot loader do on a vCPU through
// Xen's ioreq path: mode 3 through the legacy ports, a font into plane 2
// and a line of text through the 0xb8000 window. It returns the text.
func drawBanner(t *testing.T, v *xensim.VCPU) string {
	t.Helper()
	out := func(port uint16, size int, val uint64) {
		if err := v.Out(port, size, val); err != nil {
			t.Fatal(err)
		}
	}
	mem := func(gpa uint64, size int, val uint64) {
		if err := v.MMIOWrite(gpa, size, val); err != nil {
			t.Fatal(err)
		}
	}
	out(0x3c2, 1, 0x67)
	for i, x := range []byte{0x03, 0x00, 0x03, 0x00, 0x02} {
		out(0x3c4, 2, uint64(i)|uint64(x)<<8)
	}
	out(0x3d4, 2, 0x0e11)
	// The cursor at the start of the second line (CR0E/0F = 80).
	for i, x := range []byte{0x5f, 0x4f, 0x50, 0x82, 0x55, 0x81, 0xbf, 0x1f, 0x00, 0x4f, 0x0d, 0x0e, 0x00, 0x00, 0x00, 0x50,
		0x9c, 0x8e, 0x8f, 0x28, 0x1f, 0x96, 0xb9, 0xa3, 0xff} {
		out(0x3d4, 2, uint64(i)|uint64(x)<<8)
	}
	for i, x := range []byte{0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0e, 0x00, 0xff} {
		out(0x3ce, 2, uint64(i)|uint64(x)<<8)
	}
	for i, x := range []byte{0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f,
		0x0c, 0x00, 0x0f, 0x08, 0x00} {
		if _, err := v.In(0x3da, 1); err != nil {
			t.Fatal(err)
		}
		out(0x3c0, 1, uint64(i))
		out(0x3c0, 1, uint64(x))
	}
	out(0x3c8, 1, 0)
	for i := range 64 {
		out(0x3c9, 1, uint64((i>>2)&1*0x2a+(i>>5)&1*0x15))
		out(0x3c9, 1, uint64((i>>1)&1*0x2a+(i>>4)&1*0x15))
		out(0x3c9, 1, uint64(i&1*0x2a+(i>>3)&1*0x15))
	}
	text := "godm stdvga: SeaBIOS-style banner"
	// Font: plane 2, sequential addressing, only the characters used.
	out(0x3c4, 2, 0x0402)
	out(0x3c4, 2, 0x0604)
	out(0x3ce, 2, 0x0204)
	out(0x3ce, 2, 0x0005)
	out(0x3ce, 2, 0x0406)
	for _, ch := range []byte(text + " ") {
		for row := 0; row < 16; row += 4 {
			mem(0xa0000+uint64(int(ch)*32+row), 4, uint64(binary.LittleEndian.Uint32([]byte{
				glyphOf(int(ch), row), glyphOf(int(ch), row+1), glyphOf(int(ch), row+2), glyphOf(int(ch), row+3)})))
		}
	}
	out(0x3c4, 2, 0x0302)
	out(0x3c4, 2, 0x0204)
	out(0x3ce, 2, 0x0004)
	out(0x3ce, 2, 0x1005)
	out(0x3ce, 2, 0x0e06)
	for i := range 80 * 25 {
		mem(0xb8000+uint64(2*i), 2, 0x0720) // blanks, grey on black
	}
	for i, ch := range []byte(text) {
		mem(0xb8000+uint64(2*i), 2, uint64(ch)|0x1f<<8) // white on blue
	}
	if _, err := v.In(0x3da, 1); err != nil {
		t.Fatal(err)
	}
	out(0x3c0, 1, 0x20)
	return text
}

// checkBanner checks the text cells of img: 720x400, each 9x16 cell of
// the text white on blue in the font's pattern, the 9th column blue (DAC 6-bit 0x2a: 0xa8).
func checkBanner(t *testing.T, img image.Image, text string) {
	t.Helper()
	if b := img.Bounds(); b.Dx() != 720 || b.Dy() != 400 {
		t.Fatalf("picture %v, want 720x400 (80x25 of 9x16)", b)
	}
	for i, ch := range []byte(text) {
		for row := range 16 {
			for x := range 9 {
				r, g, b, _ := img.At(i*9+x, row).RGBA()
				want := [3]uint32{0, 0, 0xa8} // DAC 0x2a widened as QEMU c6_to_8 does
				if x < 8 && glyphOf(int(ch), row)&(0x80>>x) != 0 {
					want = [3]uint32{0xff, 0xff, 0xff}
				}
				if [3]uint32{r >> 8, g >> 8, b >> 8} != want {
					t.Fatalf("cell %d (%q) row %d column %d: %02x%02x%02x, want %02x%02x%02x", i, ch, row, x, r>>8, g>>8, b>>8, want[0], want[1], want[2])
				}
			}
		}
	}
}

func runClient(t *testing.T, name string, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (scripts/test-packages.txt): %v", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader("")
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
			return fmt.Sprintf("%s: %v: %s", name, err, log.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		return name + " hung: " + log.String()
	}
	return ""
}

func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestStdVGAOverVNC: libxl's argv for vga="stdvga" vnc=1; the guest draws
// a text-mode banner through the legacy ports and window (Xen's ioreq
// path on the simulated Xen); QMP screendump (libxl's query-vnc first)
// and a real VNC client (gvnccapture, gtk-vnc) both show it, pixel for
// pixel; a key typed over VNC reaches the guest through the i8042.
func TestStdVGAOverVNC(t *testing.T) {
	r, q := startStdVGA(t, "")
	port := vncPort(t, q)
	if _, e := q.do("change-vnc-password", map[string]any{"password": "x"}); e != "GenericError: Could not set password" {
		t.Errorf("change-vnc-password without password=on: %q (QEMU: Could not set password)", e)
	}
	ret, e := q.do("query-pci", nil)
	if e != "" {
		t.Fatal(e)
	}
	if s := fmt.Sprint(ret); !strings.Contains(s, "vendor:4660") || !strings.Contains(s, "device:4369") {
		t.Errorf("query-pci has no 1234:1111: %s", s)
	}
	if vid, err := r.dom.VCPU(0).PCIConfigRead(3<<3, 0, 4); err != nil || vid != 0x11111234 {
		t.Errorf("guest read of 00:03.0's ids = %#x, %v (QEMU-xen puts the VGA there)", vid, err)
	}
	text := drawBanner(t, r.dom.VCPU(0))

	dump := filepath.Join(t.TempDir(), "dump.png")
	if _, e := q.do("screendump", map[string]any{"filename": dump, "format": "png"}); e != "" {
		t.Fatal(e)
	}
	shot := decodePNG(t, dump)
	checkBanner(t, shot, text)
	checkCursor(t, shot)
	// HMP's screendump (xl qemu-monitor-command): the same picture as PPM.
	ppm := filepath.Join(t.TempDir(), "dump.ppm")
	if out, e := q.do("human-monitor-command", map[string]any{"command-line": "screendump " + ppm}); e != "" || out != "" {
		t.Fatalf("HMP screendump: %q %q", out, e)
	}
	raw, err := os.ReadFile(ppm)
	if err != nil {
		t.Fatal(err)
	}
	hdr := "P6\n720 400\n255\n"
	if !strings.HasPrefix(string(raw), hdr) || len(raw) != len(hdr)+720*400*3 {
		t.Fatalf("HMP screendump: %d bytes, header %q", len(raw), raw[:min(len(raw), 16)])
	}
	for i := 0; i < 720*400; i += 97 {
		r, g, b, _ := shot.At(i%720, i/720).RGBA()
		if p := raw[len(hdr)+3*i:]; p[0] != byte(r>>8) || p[1] != byte(g>>8) || p[2] != byte(b>>8) {
			t.Fatalf("HMP screendump pixel %d: % x, QMP's PNG %02x%02x%02x", i, p[:3], r>>8, g>>8, b>>8)
		}
	}

	capPath := filepath.Join(t.TempDir(), "cap.png")
	if msg := runClient(t, "gvnccapture", fmt.Sprintf("127.0.0.1:%d", port-5900), capPath); msg != "" {
		t.Fatal(msg)
	}
	got := decodePNG(t, capPath)
	if got.Bounds() != shot.Bounds() {
		t.Fatalf("VNC picture %v, screendump %v", got.Bounds(), shot.Bounds())
	}
	for y := range shot.Bounds().Dy() {
		for x := range shot.Bounds().Dx() {
			r1, g1, b1, _ := got.At(x, y).RGBA()
			r2, g2, b2, _ := shot.At(x, y).RGBA()
			if r1>>8 != r2>>8 || g1>>8 != g2>>8 || b1>>8 != b2>>8 {
				t.Fatalf("(%d,%d): VNC %02x%02x%02x, screendump %02x%02x%02x", x, y, r1>>8, g1>>8, b1>>8, r2>>8, g2>>8, b2>>8)
			}
		}
	}

	// A key over VNC: RFB KeyEvent 'a' down and up; the guest reads the
	// i8042's output buffer (set 2 0x1c, or 0x1e through the controller's
	// translation).
	c := rfbConnect(t, port, "")
	defer c.Close()
	for _, down := range []byte{1, 0} {
		msg := []byte{4, down, 0, 0, 0, 0, 0, 'a'}
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	var got8042 []byte
	deadline := time.Now().Add(20 * time.Second)
	for len(got8042) < 2 && time.Now().Before(deadline) {
		st, err := r.dom.VCPU(0).In(0x64, 1)
		if err != nil {
			t.Fatal(err)
		}
		if st&1 == 0 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		b, err := r.dom.VCPU(0).In(0x60, 1)
		if err != nil {
			t.Fatal(err)
		}
		got8042 = append(got8042, byte(b))
	}
	t.Logf("VNC capture %v equals the screendump; the guest read % x from the i8042", got.Bounds(), got8042)
	if s := fmt.Sprintf("% x", got8042); s != "1e 9e" && !strings.HasPrefix(s, "1c f0") {
		t.Errorf("the guest read % x from the i8042 after 'a' over VNC, want 1e 9e (translated) or 1c f0 1c", got8042)
	}
}

// TestStdVGAVNCPassword: password=on, the password from QMP's
// change-vnc-password (as libxl sends it after start); vncsnapshot logs in
// with it and sees the banner (JPEG: within a tolerance), a wrong password
// is refused.
func TestStdVGAVNCPassword(t *testing.T) {
	r, q := startStdVGA(t, ",password=on")
	port := vncPort(t, q)
	if m, _ := q.do("query-vnc", nil); m.(map[string]any)["auth"] != "vnc" {
		t.Errorf("query-vnc auth %v, want vnc", m.(map[string]any)["auth"])
	}
	if _, e := q.do("change-vnc-password", map[string]any{"password": "s3cret"}); e != "" {
		t.Fatal(e)
	}
	drawBanner(t, r.dom.VCPU(0))
	dir := t.TempDir()
	for _, pw := range []string{"wrong", "s3cret"} {
		pf := filepath.Join(dir, "passwd")
		if err := os.WriteFile(pf, vncPasswd(pw), 0o600); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, pw+".jpg")
		msg := runClient(t, "vncsnapshot", "-quiet", "-encodings", "raw", "-quality", "100", "-passwd", pf,
			fmt.Sprintf("127.0.0.1:%d", port-5900), out)
		if pw == "wrong" {
			if msg == "" {
				t.Error("vncsnapshot logged in with a wrong password")
			}
			continue
		}
		if msg != "" {
			t.Fatal(msg)
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		img, err := jpeg.Decode(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		// JPEG blurs the glyph edges: compare the mean of each cell row
		// band instead of pixels, within 24 of 255.
		if b := img.Bounds(); b.Dx() != 720 || b.Dy() != 400 {
			t.Fatalf("vncsnapshot picture %v", b)
		}
		var sum [3]int
		for y := range 16 {
			for x := range 9 * 33 {
				r, g, b, _ := img.At(x, y).RGBA()
				sum[0] += int(r >> 8)
				sum[1] += int(g >> 8)
				sum[2] += int(b >> 8)
			}
		}
		n := 16 * 9 * 33
		t.Logf("banner band mean RGB %d %d %d", sum[0]/n, sum[1]/n, sum[2]/n)
		if sum[2]/n < 0xa8-24 || sum[0]/n > sum[2]/n {
			t.Errorf("banner band mean RGB %d %d %d: not white on blue", sum[0]/n, sum[1]/n, sum[2]/n)
		}
	}
}

// vncPasswd is the vncpasswd file format (the password DES-encrypted
// under TightVNC's fixed key, with RFB's bit-reversed key bytes).
func vncPasswd(pw string) []byte {
	var p [8]byte
	copy(p[:], pw)
	return desRFB([]byte{23, 82, 107, 6, 35, 78, 88, 7}, p[:])
}

// desRFB encrypts the 8-byte blocks of data under key with each key
// byte's bits reversed (RFC 6143 §7.2.2 errata, VNC's d3des usage).
func desRFB(key, data []byte) []byte {
	var k [8]byte
	for i := range k {
		b := key[i]
		var r byte
		for j := range 8 {
			r |= (b >> j & 1) << (7 - j)
		}
		k[i] = r
	}
	c, err := des.NewCipher(k[:])
	if err != nil {
		panic(err)
	}
	out := make([]byte, len(data))
	for i := 0; i+8 <= len(data); i += 8 {
		c.Encrypt(out[i:], data[i:i+8])
	}
	return out
}

// rfbConnect does RFB 3.8's handshake with security None and a shared
// ClientInit, and reads ServerInit.
func rfbConnect(t *testing.T, port int, _ string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 12)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "RFB 003.008\n" {
		t.Fatalf("version %q: %v", buf, err)
	}
	c.Write([]byte("RFB 003.008\n"))
	n := make([]byte, 1)
	io.ReadFull(c, n)
	types := make([]byte, n[0])
	io.ReadFull(c, types)
	if !bytes.Contains(types, []byte{1}) {
		t.Fatalf("security types % x without None", types)
	}
	c.Write([]byte{1})
	res := make([]byte, 4)
	if _, err := io.ReadFull(c, res); err != nil || binary.BigEndian.Uint32(res) != 0 {
		t.Fatalf("security result % x: %v", res, err)
	}
	c.Write([]byte{1}) // shared
	hdr := make([]byte, 24)
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Fatal(err)
	}
	name := make([]byte, binary.BigEndian.Uint32(hdr[20:]))
	io.ReadFull(c, name)
	c.SetDeadline(time.Time{})
	return c
}

// The cursor: rows 13-14 of the cell at (0, 1), grey (attribute 0x07).
func checkCursor(t *testing.T, img image.Image) {
	t.Helper()
	for _, c := range []struct{ y, want uint32 }{{16 + 12, 0}, {16 + 13, 0xa8}, {16 + 14, 0xa8}, {16 + 15, 0}} {
		r, _, _, _ := img.At(4, int(c.y)).RGBA()
		if r>>8 != c.want {
			t.Errorf("cursor cell row %d: red %#x, want %#x", c.y-16, r>>8, c.want)
		}
	}
}

// TestCirrusOverVNC: libxl's argv for an unchanged config with vnc=1
// (its default vga, -device cirrus-vga,vgamem_mb=8): the Cirrus sits at
// 00:03.0 as under QEMU-xen, the guest's text-mode banner (the VGA BIOS's
// path: legacy ports and window) shows in QMP's screendump and in a real
// VNC client's capture, pixel for pixel.
func TestCirrusOverVNC(t *testing.T) {
	r, q := startVGA(t, func(dom int, dir string, disp int) string {
		a := libxlArgv(dom, dir)
		a = strings.Replace(a, "-vnc none", fmt.Sprintf("-vnc 127.0.0.1:%d,to=99 -k en-us", disp), 1)
		return a + " -device cirrus-vga,vgamem_mb=8"
	})
	port := vncPort(t, q)
	if vid, err := r.dom.VCPU(0).PCIConfigRead(3<<3, 0, 4); err != nil || vid != 0x00b81013 {
		t.Errorf("guest read of 00:03.0's ids = %#x, %v (QEMU-xen puts the Cirrus there)", vid, err)
	}
	text := drawBanner(t, r.dom.VCPU(0))
	dump := filepath.Join(t.TempDir(), "dump.png")
	if _, e := q.do("screendump", map[string]any{"filename": dump, "format": "png"}); e != "" {
		t.Fatal(e)
	}
	shot := decodePNG(t, dump)
	checkBanner(t, shot, text)
	capPath := filepath.Join(t.TempDir(), "cap.png")
	if msg := runClient(t, "gvnccapture", fmt.Sprintf("127.0.0.1:%d", port-5900), capPath); msg != "" {
		t.Fatal(msg)
	}
	got := decodePNG(t, capPath)
	if got.Bounds() != shot.Bounds() {
		t.Fatalf("VNC picture %v, screendump %v", got.Bounds(), shot.Bounds())
	}
	for y := range shot.Bounds().Dy() {
		for x := range shot.Bounds().Dx() {
			r1, g1, b1, _ := got.At(x, y).RGBA()
			r2, g2, b2, _ := shot.At(x, y).RGBA()
			if r1>>8 != r2>>8 || g1>>8 != g2>>8 || b1>>8 != b2>>8 {
				t.Fatalf("(%d,%d): VNC %02x%02x%02x, screendump %02x%02x%02x", x, y, r1>>8, g1>>8, b1>>8, r2>>8, g2>>8, b2>>8)
			}
		}
	}
}
