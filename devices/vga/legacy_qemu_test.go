package vga

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"godm/devices"
	"godm/display"
	"godm/internal/qtest"
)

// pair runs the same accesses on QEMU 7.2's standard VGA (qtest) and on a
// Core, failing at the first read that differs.
type pair struct {
	t    *testing.T
	q    *qtest.Client
	c    *Core
	qmp  *qmpConn
	step string
}

func newPair(t *testing.T, withQMP bool) *pair {
	t.Helper()
	if _, err := qtest.Find(qtest.Options{}); err != nil {
		t.Skip("qemu-system-x86_64 not installed (scripts/test-packages.txt: qemu-system-x86):", err)
	}
	args := []string{"-device", "VGA,vgamem_mb=16"}
	var sock string
	if withQMP {
		sock = filepath.Join(t.TempDir(), "qmp.sock")
		args = append(args, "-qmp", "unix:"+sock+",server=on,wait=off")
	}
	q, err := qtest.Start(qtest.Options{Args: args})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	p := &pair{t: t, q: q, c: NewCore(16 << 20)}
	if withQMP {
		if p.qmp, err = dialQMP(sock); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.qmp.Close() })
	}
	return p
}

func (p *pair) out(port uint16, size uint8, v uint64) {
	p.t.Helper()
	if _, err := p.q.Out(port, size, v); err != nil {
		p.t.Fatal(err)
	}
	a := devices.Access{Addr: uint64(port), Size: size}
	if port == PortIndex || port == PortData {
		p.c.DISPI().Write(a, v)
	} else {
		p.c.Ports().Write(a, v)
	}
}

func (p *pair) in(port uint16, size uint8) uint64 {
	p.t.Helper()
	want, _, err := p.q.In(port, size)
	if err != nil {
		p.t.Fatal(err)
	}
	a := devices.Access{Addr: uint64(port), Size: size}
	var got uint64
	if port == PortIndex || port == PortData {
		got = p.c.DISPI().Read(a)
	} else {
		got = p.c.Ports().Read(a)
	}
	if got != want {
		p.t.Fatalf("%s: in%d %#x = %#x, QEMU %#x", p.step, size, port, got, want)
	}
	return got
}

func (p *pair) wmem(addr uint64, size uint8, v uint64) {
	p.t.Helper()
	if _, err := p.q.WriteMem(addr, size, v); err != nil {
		p.t.Fatal(err)
	}
	p.c.Window().Write(devices.Access{Addr: addr, Offset: addr - WindowBase, Size: size}, v)
}

func (p *pair) rmem(addr uint64, size uint8) {
	p.t.Helper()
	want, _, err := p.q.ReadMem(addr, size)
	if err != nil {
		p.t.Fatal(err)
	}
	got := p.c.Window().Read(devices.Access{Addr: addr, Offset: addr - WindowBase, Size: size})
	if got != want {
		p.t.Fatalf("%s: read%d %#x = %#x, QEMU %#x", p.step, size, addr, got, want)
	}
}

// seq, gr, crtc and attr write indexed registers as a BIOS does.
func (p *pair) seq(i, v byte)  { p.out(0x3c4, 2, uint64(i)|uint64(v)<<8) }
func (p *pair) gr(i, v byte)   { p.out(0x3ce, 2, uint64(i)|uint64(v)<<8) }
func (p *pair) crtc(i, v byte) { p.out(0x3d4, 1, uint64(i)); p.out(0x3d5, 1, uint64(v)) }
func (p *pair) attr(i, v byte) {
	p.in(0x3da, 1)
	p.out(0x3c0, 1, uint64(i))
	p.out(0x3c0, 1, uint64(v))
}

// checkRegs reads every register back on both.
func (p *pair) checkRegs() {
	p.t.Helper()
	for _, port := range []uint16{0x3c2, 0x3c4, 0x3c6, 0x3c7, 0x3c8, 0x3ca, 0x3cc, 0x3ce, 0x3d4, 0x3b4, 0x3c3, 0x3cd} {
		p.in(port, 1)
	}
	si, _, _ := p.q.In(0x3c4, 1)
	for i := range 8 {
		p.out(0x3c4, 1, uint64(i))
		p.in(0x3c5, 1)
	}
	p.out(0x3c4, 1, si)
	gi, _, _ := p.q.In(0x3ce, 1)
	for i := range 16 {
		p.out(0x3ce, 1, uint64(i))
		p.in(0x3cf, 1)
	}
	p.out(0x3ce, 1, gi)
	for _, base := range []uint16{0x3d4, 0x3b4} {
		ci, _, _ := p.q.In(base, 1)
		for i := range 0x40 {
			p.out(base, 1, uint64(i))
			p.in(base+1, 2)
		}
		p.out(base, 1, ci)
	}
	for i := range 0x20 {
		p.in(0x3da, 1)
		p.in(0x3ba, 1)
		p.out(0x3c0, 1, uint64(i)|0x20)
		p.in(0x3c0, 1)
		p.in(0x3c1, 1)
	}
	p.in(0x3da, 1)
	p.out(0x3c7, 1, 0)
	for range 3 * 20 {
		p.in(0x3c9, 1)
	}
	for i := uint16(0); i <= 0xc; i++ {
		p.out(PortIndex, 2, uint64(i))
		p.in(PortData, 2)
	}
}

// checkVRAM compares the first n bytes of VRAM: QEMU's read through the
// window in chain-4 mode (64 KiB at 0xa0000, bank 0) with the Core's
// memory (banks of 64 KiB through the VBE bank register). It leaves the
// sequencer and graphics controller in that mode.
func (p *pair) checkVRAM(n int) {
	p.t.Helper()
	p.seq(4, 0x0e)
	p.seq(2, 0x0f)
	p.gr(5, 0x40)
	p.gr(6, 0x05)
	for off := 0; off < n; off += 0x1000 {
		if off&0xffff == 0 {
			p.out(PortIndex, 2, IndexBank)
			p.out(PortData, 2, uint64(off>>16))
		}
		rep, err := p.q.Command(fmt.Sprintf("read %#x 0x1000", WindowBase+off&0xffff))
		if err != nil {
			p.t.Fatal(err)
		}
		want, err := hex.DecodeString(strings.TrimPrefix(rep.Words[0], "0x"))
		if err != nil {
			p.t.Fatal(err)
		}
		if got := p.c.VRAM()[off : off+0x1000]; !bytes.Equal(got, want) {
			for i := range got {
				if got[i] != want[i] {
					p.t.Fatalf("%s: VRAM[%#x] = %#x, QEMU %#x", p.step, off+i, got[i], want[i])
				}
			}
		}
	}
}

// TestQEMUDiffLegacyRegisters: the sequencer, graphics controller, CRTC
// (with its write protection), attribute controller (flip-flop), DAC,
// misc/feature/status registers, mono/colour port decoding and 16-bit
// accesses, scripted and random, against QEMU 7.2.
func TestQEMUDiffLegacyRegisters(t *testing.T) {
	p := newPair(t, false)
	p.step = "reset"
	p.checkRegs()
	p.step = "mode 3 registers"
	textMode(p)
	p.checkRegs()
	p.step = "CRTC protect"
	p.crtc(0x11, 0x80)
	for i := range byte(8) {
		p.crtc(i, 0xff)
	}
	p.crtc(0x11, 0x0e)
	p.checkRegs()
	p.step = "mono"
	p.out(0x3c2, 1, 0x66)
	p.out(0x3b4, 2, 0x1234)
	p.out(0x3d4, 2, 0x0c0a)
	p.checkRegs()
	p.out(0x3c2, 1, 0x67)
	p.step = "VBE forces registers"
	p.out(PortIndex, 2, IndexXRes)
	p.out(PortData, 2, 800)
	p.out(PortIndex, 2, IndexYRes)
	p.out(PortData, 2, 600)
	p.out(PortIndex, 2, IndexBPP)
	p.out(PortData, 2, 8)
	p.out(PortIndex, 2, IndexEnable)
	p.out(PortData, 2, Enabled|NoClearMem)
	p.checkRegs()
	p.crtc(0x13, 0x11)
	p.gr(6, 0)
	p.checkRegs()
	p.out(PortIndex, 2, IndexEnable)
	p.out(PortData, 2, 0)
	p.step = "random"
	r := rand.New(rand.NewPCG(3, 4))
	ports := []uint16{0x3c0, 0x3c1, 0x3c2, 0x3c4, 0x3c5, 0x3c6, 0x3c7, 0x3c8, 0x3c9, 0x3ca, 0x3cc, 0x3ce, 0x3cf, 0x3d4, 0x3d5, 0x3da, 0x3b4, 0x3b5, 0x3ba}
	for n := range 1500 {
		port := ports[r.IntN(len(ports))]
		size := uint8(1)
		if r.IntN(4) == 0 && port != 0x3da && port != 0x3ba {
			size = 2
		}
		if port == 0x3c2 && r.IntN(2) == 0 {
			continue // keep the colour emulation most of the time
		}
		if r.IntN(2) == 0 {
			p.out(port, size, uint64(r.Uint32()))
		} else {
			p.in(port, size)
		}
		if n%300 == 0 {
			p.checkRegs()
		}
	}
	p.checkRegs()

	// System reset with the registers left as the random writes and a
	// VBE mode put them: every register (VGA and DISPI) must read as
	// QEMU's after system_reset (hw/display/vga.c vga_common_reset,
	// vbe_reset via vga_common_reset), godm's side the Core's reset that
	// the board's reset of a VGA runs.
	p.step = "system_reset"
	p.out(PortIndex, 2, IndexXRes)
	p.out(PortData, 2, 1024)
	p.out(PortIndex, 2, IndexBPP)
	p.out(PortData, 2, 32)
	p.out(PortIndex, 2, IndexEnable)
	p.out(PortData, 2, Enabled|NoClearMem)
	p.crtc(0x11, 0x0e)
	p.seq(4, 0x06)
	p.gr(5, 0x10)
	p.qemuReset()
	p.c.Reset()
	p.checkRegs()
}

// qemuReset resets QEMU's machine as a guest does: SYS_RST|RST_CPU in
// PIIX3's reset control register requests the same qemu_system_reset as
// QMP's system_reset (hw/isa/piix.c rcr_write), carried out before QEMU
// reads the next command.
func (p *pair) qemuReset() {
	p.t.Helper()
	if _, err := p.q.Out(0xcf9, 1, 0x06); err != nil {
		p.t.Fatal(err)
	}
	if _, _, err := p.q.In(0x80, 1); err != nil {
		p.t.Fatal(err)
	}
}

// TestQEMUDiffWindow: the legacy window in every write mode (0-3 with
// rotate, set/reset, logical functions, bit mask, map mask), read modes 0
// and 1 with colour compare, odd/even, chain 4, the four memory maps and
// VBE banking, against QEMU 7.2: every read and the resulting VRAM.
func TestQEMUDiffWindow(t *testing.T) {
	p := newPair(t, false)
	r := rand.New(rand.NewPCG(5, 6))
	p.step = "chain 4"
	p.seq(4, 0x0e)
	p.seq(2, 0x0f)
	p.gr(6, 0x05)
	for i := range 64 {
		p.wmem(WindowBase+uint64(i*7), 1, uint64(i*3+1))
	}
	p.wmem(WindowBase+0x100, 4, 0xdeadbeef)
	p.seq(2, 0x05) // chain 4 honours the map mask by address bits 0-1
	for i := range 16 {
		p.wmem(WindowBase+0x200+uint64(i), 1, 0xaa)
	}
	p.checkVRAM(0x2000)
	p.step = "odd/even"
	p.seq(4, 0x02)
	p.gr(5, 0x10)
	p.gr(6, 0x0e)
	for _, pm := range []byte{0x03, 0x01, 0x0c, 0x0f} {
		p.seq(2, pm)
		for _, rm := range []byte{0, 2} {
			p.gr(4, rm)
			for i := range 32 {
				p.wmem(0xb8000+uint64(i), 1, uint64(r.Uint32()))
				p.rmem(0xb8000+uint64(r.IntN(64)), 1)
			}
		}
	}
	p.rmem(0xa0000, 1) // outside map 3
	p.checkVRAM(0x2000)
	p.step = "planar"
	p.seq(4, 0x06)
	p.gr(6, 0x05)
	for wm := range byte(4) {
		for n := range 120 {
			p.gr(5, wm|byte(r.IntN(2))<<3)
			p.gr(3, byte(r.IntN(32)))
			p.gr(0, byte(r.IntN(16)))
			p.gr(1, byte(r.IntN(16)))
			p.gr(8, byte(r.Uint32()))
			p.gr(2, byte(r.IntN(16)))
			p.gr(7, byte(r.IntN(16)))
			p.gr(4, byte(r.IntN(4)))
			p.seq(2, byte(r.IntN(16)))
			a := WindowBase + uint64(r.IntN(0x800))
			p.rmem(a, 1) // loads the latches
			p.wmem(WindowBase+uint64(r.IntN(0x800)), uint8(1<<r.IntN(3)), uint64(r.Uint32()))
			if n%8 == 0 {
				p.rmem(WindowBase+uint64(r.IntN(0x800)), 2)
			}
		}
	}
	p.step = "memory maps"
	for _, m := range []byte{0x00, 0x04, 0x08, 0x0c} {
		p.gr(6, m|1)
		for _, a := range []uint64{0xa0000, 0xa8000, 0xafffe, 0xb0000, 0xb7ffc, 0xb8000, 0xbfffc} {
			p.wmem(a, 2, uint64(r.Uint32()))
			p.rmem(a, 4)
		}
	}
	p.checkVRAM(0x8000)
	p.step = "VBE bank"
	p.out(PortIndex, 2, IndexXRes)
	p.out(PortData, 2, 640)
	p.out(PortIndex, 2, IndexYRes)
	p.out(PortData, 2, 480)
	p.out(PortIndex, 2, IndexBPP)
	p.out(PortData, 2, 32)
	p.out(PortIndex, 2, IndexEnable)
	p.out(PortData, 2, Enabled|NoClearMem)
	for bank := range uint64(3) {
		p.out(PortIndex, 2, IndexBank)
		p.out(PortData, 2, bank)
		for range 20 {
			p.wmem(WindowBase+uint64(r.IntN(0x10000)&^3), 4, uint64(r.Uint32()))
		}
		p.rmem(WindowBase+0x1000, 4)
	}
	p.out(PortIndex, 2, IndexEnable)
	p.out(PortData, 2, 0)
	p.checkVRAM(0x30000)
}

// vgaProgrammer is what the mode helpers program: the standard VGA's
// pair or the Cirrus's.
type vgaProgrammer interface {
	out(port uint16, size uint8, v uint64)
	in(port uint16, size uint8) uint64
	seq(i, v byte)
	gr(i, v byte)
	crtc(i, v byte)
	attr(i, v byte)
	wmem(addr uint64, size uint8, v uint64)
}

// textMode programs mode 3 (80x25, 9-dot characters, 16 rows) as the
// VGA BIOS does, loads a synthetic font into plane 2 and fills the
// screen; the attribute index gets 0x20 last (video on).
func textMode(p vgaProgrammer) {
	p.out(0x3c2, 1, 0x67)
	for i, v := range []byte{0x03, 0x00, 0x03, 0x00, 0x02} {
		p.seq(byte(i), v)
	}
	p.crtc(0x11, 0x0e)
	for i, v := range []byte{0x5f, 0x4f, 0x50, 0x82, 0x55, 0x81, 0xbf, 0x1f, 0x00, 0x4f, 0x0d, 0x0e, 0x00, 0x00, 0x01, 0x23,
		0x9c, 0x8e, 0x8f, 0x28, 0x1f, 0x96, 0xb9, 0xa3, 0xff} {
		p.crtc(byte(i), v)
	}
	for i, v := range []byte{0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0e, 0x00, 0xff} {
		p.gr(byte(i), v)
	}
	for i, v := range []byte{0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f,
		0x0c, 0x00, 0x0f, 0x08, 0x00} {
		p.attr(byte(i), v)
	}
	p.out(0x3c8, 1, 0)
	for i := range 64 {
		// The EGA palette as the BIOS loads it for mode 3, 6-bit.
		r := byte((i>>2)&1*0x2a + (i>>5)&1*0x15)
		g := byte((i>>1)&1*0x2a + (i>>4)&1*0x15)
		b := byte(i&1*0x2a + (i>>3)&1*0x15)
		p.out(0x3c9, 1, uint64(r))
		p.out(0x3c9, 1, uint64(g))
		p.out(0x3c9, 1, uint64(b))
	}
}

// loadFont writes a 256-glyph font into plane 2 (sequential addressing),
// then restores text-mode addressing.
func loadFont(p vgaProgrammer, glyph func(ch, row int) byte) {
	p.seq(2, 0x04)
	p.seq(4, 0x06)
	p.gr(4, 0x02)
	p.gr(5, 0x00)
	p.gr(6, 0x04)
	for ch := range 256 {
		for row := 0; row < 16; row += 4 {
			v := uint64(glyph(ch, row)) | uint64(glyph(ch, row+1))<<8 | uint64(glyph(ch, row+2))<<16 | uint64(glyph(ch, row+3))<<24
			p.wmem(WindowBase+uint64(ch*32+row), 4, v)
		}
	}
	p.seq(2, 0x03)
	p.seq(4, 0x02)
	p.gr(4, 0x00)
	p.gr(5, 0x10)
	p.gr(6, 0x0e)
}

// compareScreens takes QEMU's screendump (PPM) and the Core's and
// compares them pixel for pixel.
func (p *pair) compareScreens(name string) {
	p.t.Helper()
	file := filepath.Join(p.t.TempDir(), name+".ppm")
	if err := p.qmp.Call("screendump", map[string]any{"filename": file}); err != nil {
		p.t.Fatal(err)
	}
	want, err := os.ReadFile(file)
	if err != nil {
		p.t.Fatal(err)
	}
	var got bytes.Buffer
	if err := display.WritePPM(&got, p.c.Source()); err != nil {
		p.t.Fatal(err)
	}
	gw, gh, gpix := parsePPM(p.t, got.Bytes())
	colours := map[[3]byte]bool{}
	for i := 0; i+3 <= len(gpix); i += 3 {
		colours[[3]byte(gpix[i:i+3])] = true
	}
	if len(colours) < 2 {
		p.t.Fatalf("%s: a %dx%d picture of one colour proves nothing", name, gw, gh)
	}
	p.t.Logf("%s: %dx%d, %d colours", name, gw, gh, len(colours))
	if bytes.Equal(got.Bytes(), want) {
		return
	}
	ww, wh, wpix := parsePPM(p.t, want)
	if gw != ww || gh != wh {
		p.t.Fatalf("%s: picture %dx%d, QEMU %dx%d", name, gw, gh, ww, wh)
	}
	bad := 0
	first := ""
	for i := 0; i < len(gpix); i += 3 {
		if !bytes.Equal(gpix[i:i+3], wpix[i:i+3]) {
			if bad == 0 {
				first = fmt.Sprintf("(%d,%d) = % x, QEMU % x", i/3%gw, i/3/gw, gpix[i:i+3], wpix[i:i+3])
			}
			bad++
		}
	}
	p.t.Fatalf("%s: %d of %d pixels differ; first %s", name, bad, gw*gh, first)
}

func parsePPM(t *testing.T, b []byte) (w, h int, pix []byte) {
	t.Helper()
	// "P6\nW H\n255\n" as QEMU and display.WritePPM write it.
	f := bytes.SplitN(b, []byte("\n"), 4)
	if len(f) != 4 || string(f[0]) != "P6" || string(f[2]) != "255" {
		t.Fatalf("PPM header %q", b[:min(len(b), 20)])
	}
	if _, err := fmt.Sscanf(string(f[1]), "%d %d", &w, &h); err != nil || len(f[3]) != 3*w*h {
		t.Fatalf("PPM size %q with %d bytes: %v", f[1], len(f[3]), err)
	}
	return w, h, f[3]
}

// glyph is the synthetic font: a different pattern for every character
// and row, so a wrong character, row or plane shows.
func glyph(ch, row int) byte { return byte(ch*37 + row*11 + ch*row) }

// TestQEMUDiffScreendump: text mode (9-dot and 8-dot cells, attributes,
// the cursor, a second font), mode 13h, the planar 640x480x16 mode and
// VBE 8- and 32-bpp modes drawn through the window: QEMU 7.2's screendump
// and the Core's, pixel for pixel.
func TestQEMUDiffScreendump(t *testing.T) {
	p := newPair(t, true)
	r := rand.New(rand.NewPCG(7, 8))
	p.step = "text"
	textMode(p)
	loadFont(p, glyph)
	for i := range 80 * 25 {
		p.wmem(0xb8000+uint64(2*i), 2, uint64(r.IntN(256))|uint64(r.IntN(256))<<8)
	}
	p.in(0x3da, 1)
	p.out(0x3c0, 1, 0x20)
	p.compareScreens("text9")
	p.seq(1, 0x01) // 8-dot characters: 640x400
	p.crtc(0x0a, 0x20)
	p.compareScreens("text8")
	p.seq(3, 0x05) // attribute bit 3 selects the second font
	p.compareScreens("text-fonts")

	p.step = "mode 13h"
	mode13(p)
	for i := range 320 * 200 / 4 {
		p.wmem(WindowBase+uint64(4*i), 4, uint64(r.Uint32()))
	}
	p.compareScreens("mode13h")

	p.step = "mode 12h"
	mode12(p)
	p.gr(5, 0x02) // write mode 2: the byte is a colour
	for i := 0; i < 80*480; i += 3 {
		p.gr(8, byte(r.Uint32()))
		p.rmem(WindowBase+uint64(i), 1)
		p.wmem(WindowBase+uint64(i), 1, uint64(r.IntN(16)))
	}
	p.compareScreens("mode12h")

	p.step = "VBE 8 bpp"
	vbeMode(p, 64, 48, 8)
	for i := range 64 * 48 / 4 {
		p.wmem(WindowBase+uint64(4*i), 4, uint64(r.Uint32()))
	}
	p.compareScreens("vbe8")
	p.step = "VBE 32 bpp"
	vbeMode(p, 64, 48, 32)
	for i := range 64 * 48 {
		p.wmem(WindowBase+uint64(4*i), 4, uint64(r.Uint32()&0xffffff))
	}
	p.compareScreens("vbe32")
}

func mode13(p vgaProgrammer) {
	p.out(0x3c2, 1, 0x63)
	for i, v := range []byte{0x03, 0x01, 0x0f, 0x00, 0x0e} {
		p.seq(byte(i), v)
	}
	p.crtc(0x11, 0x0e)
	for i, v := range []byte{0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0xbf, 0x1f, 0x00, 0x41, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x9c, 0x8e, 0x8f, 0x28, 0x40, 0x96, 0xb9, 0xa3, 0xff} {
		p.crtc(byte(i), v)
	}
	for i, v := range []byte{0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x05, 0x0f, 0xff} {
		p.gr(byte(i), v)
	}
	for i := range 16 {
		p.attr(byte(i), byte(i))
	}
	for i, v := range []byte{0x41, 0x00, 0x0f, 0x00, 0x00} {
		p.attr(byte(0x10+i), v)
	}
	p.out(0x3c8, 1, 0)
	for i := range 256 * 3 {
		p.out(0x3c9, 1, uint64(i*7%64))
	}
	p.in(0x3da, 1)
	p.out(0x3c0, 1, 0x20)
}

func mode12(p vgaProgrammer) {
	p.out(0x3c2, 1, 0xe3)
	for i, v := range []byte{0x03, 0x01, 0x0f, 0x00, 0x06} {
		p.seq(byte(i), v)
	}
	p.crtc(0x11, 0x0c)
	for i, v := range []byte{0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0x0b, 0x3e, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0xea, 0x8c, 0xdf, 0x28, 0x00, 0xe7, 0x04, 0xe3, 0xff} {
		p.crtc(byte(i), v)
	}
	for i, v := range []byte{0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x0f, 0xff} {
		p.gr(byte(i), v)
	}
	for i, v := range []byte{0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f,
		0x01, 0x00, 0x0f, 0x00, 0x00} {
		p.attr(byte(i), v)
	}
	p.in(0x3da, 1)
	p.out(0x3c0, 1, 0x20)
}

func vbeMode(p *pair, w, h, bpp uint64) {
	for _, s := range [][2]uint64{{IndexEnable, 0}, {IndexXRes, w}, {IndexYRes, h}, {IndexBPP, bpp}, {IndexEnable, Enabled}} {
		p.out(PortIndex, 2, s[0])
		p.out(PortData, 2, s[1])
	}
}

// qmpConn is a minimal QMP client for QEMU's screendump.
type qmpConn struct {
	c   net.Conn
	dec *json.Decoder
}

func dialQMP(sock string) (*qmpConn, error) {
	var c net.Conn
	var err error
	for range 100 {
		if c, err = net.Dial("unix", sock); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	q := &qmpConn{c: c, dec: json.NewDecoder(c)}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var greeting map[string]any
	if err := q.dec.Decode(&greeting); err != nil {
		return nil, err
	}
	return q, q.Call("qmp_capabilities", nil)
}

func (q *qmpConn) Call(cmd string, args map[string]any) error {
	q.c.SetDeadline(time.Now().Add(30 * time.Second))
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	if err := json.NewEncoder(q.c).Encode(req); err != nil {
		return err
	}
	for {
		var rep map[string]any
		if err := q.dec.Decode(&rep); err != nil {
			return err
		}
		if _, ok := rep["event"]; ok {
			continue
		}
		if e, ok := rep["error"]; ok {
			return fmt.Errorf("qmp %s: %v", cmd, e)
		}
		return nil
	}
}

func (q *qmpConn) Close() error { return q.c.Close() }
