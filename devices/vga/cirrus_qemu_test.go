package vga

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"godm/devices"
	"godm/display"
	"godm/internal/qtest"
)

// Where the differential tests put the Cirrus BARs in QEMU's address
// space (the function sits at 00:02.0 of the qtest machine).
const (
	clTestLFB  = 0xe0000000
	clTestMMIO = 0xe2000000
	clTestDev  = 0x80000000 | 2<<11
)

// clPair runs the same accesses on QEMU 7.2's "-device
// cirrus-vga,vgamem_mb=8" (libxl's default) and on a Cirrus.
type clPair struct {
	t    *testing.T
	q    *qtest.Client
	d    *Cirrus
	qmp  *qmpConn
	step string
}

func newCirrusPair(t *testing.T, withQMP bool) *clPair {
	t.Helper()
	if _, err := qtest.Find(qtest.Options{}); err != nil {
		t.Skip("qemu-system-x86_64 not installed (scripts/test-packages.txt: qemu-system-x86):", err)
	}
	args := []string{"-device", "cirrus-vga,vgamem_mb=8,addr=02.0"}
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
	d, err := NewCirrus(CirrusConfig{VRAMMiB: 8})
	if err != nil {
		t.Fatal(err)
	}
	p := &clPair{t: t, q: q, d: d}
	if withQMP {
		if p.qmp, err = dialQMP(sock); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.qmp.Close() })
	}
	// Place the BARs in QEMU (ours are addressed by offset).
	for _, w := range [][2]uint32{{0x10, clTestLFB}, {0x14, clTestMMIO}, {0x04, 0x0003}} {
		p.qout(0xcf8, 4, uint64(clTestDev|w[0]))
		p.qout(0xcfc, 4, uint64(w[1]))
	}
	return p
}

func (p *clPair) qout(port uint16, size uint8, v uint64) {
	p.t.Helper()
	if _, err := p.q.Out(port, size, v); err != nil {
		p.t.Fatal(err)
	}
}

func (p *clPair) out(port uint16, size uint8, v uint64) {
	p.t.Helper()
	p.qout(port, size, v)
	p.d.CirrusPortHandler().Write(devices.Access{Addr: uint64(port), Size: size}, v)
}

func (p *clPair) in(port uint16, size uint8) uint64 {
	p.t.Helper()
	want, _, err := p.q.In(port, size)
	if err != nil {
		p.t.Fatal(err)
	}
	got := p.d.CirrusPortHandler().Read(devices.Access{Addr: uint64(port), Size: size})
	if got != want {
		p.t.Fatalf("%s: in%d %#x = %#x, QEMU %#x", p.step, size, port, got, want)
	}
	return got
}

// mem accesses: the window, the LFB (and blit aperture) and BAR 1.
func (p *clPair) handler(addr uint64) (devices.Handler, uint64) {
	switch {
	case addr >= WindowBase && addr < WindowBase+WindowSize:
		return p.d.Window(), addr - WindowBase
	case addr >= clTestLFB && addr < clTestLFB+CirrusBAR0Size:
		return clLFBHandler{p.d.Core}, addr - clTestLFB
	case addr >= clTestMMIO && addr < clTestMMIO+CirrusMMIOSize:
		return clMMIOHandler{p.d.Core}, addr - clTestMMIO
	}
	p.t.Fatalf("no handler at %#x", addr)
	return nil, 0
}

func (p *clPair) wmem(addr uint64, size uint8, v uint64) {
	p.t.Helper()
	if _, err := p.q.WriteMem(addr, size, v); err != nil {
		p.t.Fatal(err)
	}
	h, off := p.handler(addr)
	h.Write(devices.Access{Addr: addr, Offset: off, Size: size}, v)
}

func (p *clPair) rmem(addr uint64, size uint8) {
	p.t.Helper()
	want, _, err := p.q.ReadMem(addr, size)
	if err != nil {
		p.t.Fatal(err)
	}
	h, off := p.handler(addr)
	if got := h.Read(devices.Access{Addr: addr, Offset: off, Size: size}); got != want {
		p.t.Fatalf("%s: read%d %#x = %#x, QEMU %#x", p.step, size, addr, got, want)
	}
}

func (p *clPair) seq(i, v byte) { p.out(0x3c4, 2, uint64(i)|uint64(v)<<8) }
func (p *clPair) attr(i, v byte) {
	p.in(0x3da, 1)
	p.out(0x3c0, 1, uint64(i))
	p.out(0x3c0, 1, uint64(v))
}
func (p *clPair) gr(i, v byte) { p.out(0x3ce, 2, uint64(i)|uint64(v)<<8) }
func (p *clPair) crtc(i, v byte) {
	p.out(0x3d4, 1, uint64(i))
	p.out(0x3d5, 1, uint64(v))
}

// checkRegs reads every index of every indexed register on both, the
// hidden DAC and the other ports; the indices are left as they were.
func (p *clPair) checkRegs() {
	p.t.Helper()
	for _, port := range []uint16{0x3c2, 0x3c4, 0x3c7, 0x3c8, 0x3ca, 0x3cc, 0x3ce, 0x3d4, 0x3b4, 0x3c3, 0x3cd, 0x3b0, 0x3df} {
		p.in(port, 1)
	}
	for _, r := range [][2]uint16{{0x3c4, 0x3c5}, {0x3ce, 0x3cf}, {0x3d4, 0x3d5}} {
		idx, _, _ := p.q.In(r[0], 1)
		for i := range 256 {
			p.out(r[0], 1, uint64(i))
			p.in(r[1], 1)
		}
		p.out(r[0], 1, idx)
	}
	for range 12 {
		p.in(0x3c6, 1)
	}
	for off := uint64(0); off < 0x48; off++ {
		p.rmem(clTestMMIO+0x100+off, 1)
	}
}

// checkVRAM compares n bytes of VRAM from off: QEMU's through its LFB in
// the mapped mode (the caller keeps SR17/GR0B/GR05 plain) with ours.
func (p *clPair) checkVRAM(off, n int) {
	p.t.Helper()
	for a := off; a < off+n; a += 0x8000 {
		sz := min(0x8000, off+n-a)
		rep, err := p.q.Command(fmt.Sprintf("read %#x %#x", clTestLFB+a, sz))
		if err != nil {
			p.t.Fatal(err)
		}
		want, err := hex.DecodeString(strings.TrimPrefix(rep.Words[0], "0x"))
		if err != nil {
			p.t.Fatal(err)
		}
		got := p.d.VRAM()[a : a+sz]
		if !bytes.Equal(got, want) {
			for i := range got {
				if got[i] != want[i] {
					p.t.Fatalf("%s: VRAM[%#x] = %#x, QEMU %#x", p.step, a+i, got[i], want[i])
				}
			}
		}
	}
}

// fillVRAM writes random bytes to n bytes of VRAM from off on both.
func (p *clPair) fillVRAM(r *rand.Rand, off, n int) {
	p.t.Helper()
	buf := make([]byte, 0x4000)
	for a := off; a < off+n; a += len(buf) {
		for i := range buf {
			buf[i] = byte(r.Uint32())
		}
		if _, err := p.q.Command(fmt.Sprintf("write %#x %#x 0x%s", clTestLFB+a, len(buf), hex.EncodeToString(buf))); err != nil {
			p.t.Fatal(err)
		}
		copy(p.d.VRAM()[a:], buf)
	}
}

// TestQEMUDiffCirrusRegisters: the extended sequencer (unlock, cursor
// position aliases, SR17's read-only bits), graphics controller (shadow
// GR0/GR1, masks), CRTC (read-only and 0xff indices, flip-flop
// readback), the hidden DAC register's fifth-read rule and the cursor
// palette, scripted and random, through the ports and BAR 1.
func TestQEMUDiffCirrusRegisters(t *testing.T) {
	p := newCirrusPair(t, false)
	p.step = "reset"
	p.checkRegs()
	p.step = "unlock"
	p.seq(6, 0x12)
	p.checkRegs()
	p.step = "hidden DAC"
	for range 4 {
		p.in(0x3c6, 1)
	}
	p.out(0x3c6, 1, 0xe1)
	p.in(0x3c8, 1)
	for range 4 {
		p.in(0x3c6, 1)
	}
	p.out(0x3c6, 1, 0xc1)
	p.checkRegs()
	p.step = "cursor palette"
	p.seq(0x12, 0x02)
	p.out(0x3c8, 1, 0)
	for i := range 48 {
		p.out(0x3c9, 1, uint64(i*5))
	}
	p.out(0x3c7, 1, 0)
	for range 48 {
		p.in(0x3c9, 1)
	}
	p.seq(0x12, 0x00)
	p.out(0x3c7, 1, 0)
	for range 48 {
		p.in(0x3c9, 1)
	}
	p.step = "random"
	r := rand.New(rand.NewPCG(11, 12))
	ports := []uint16{0x3c0, 0x3c4, 0x3c5, 0x3c6, 0x3c7, 0x3c8, 0x3c9, 0x3ce, 0x3cf, 0x3d4, 0x3d5, 0x3da}
	for n := range 3000 {
		port := ports[r.IntN(len(ports))]
		v := uint64(r.Uint32() & 0xff)
		switch port {
		case 0x3ce:
			v = uint64(r.IntN(0x3c)) // the decoded GR indices, mostly
		case 0x3cf:
			if idx, _, _ := p.q.In(0x3ce, 1); idx == 0x31 || idx == 0x2a {
				v &^= bltStart | bltAutoStart // blits have their own tests
			}
		case 0x3c4:
			v = uint64(r.IntN(0x40))
		}
		if r.IntN(2) == 0 {
			p.out(port, 1, v)
		} else {
			p.in(port, 1)
		}
		if n%500 == 0 {
			p.checkRegs()
		}
	}
	p.checkRegs()
	p.step = "BAR 1 ports"
	for off := uint64(0); off < 0x20; off++ {
		p.rmem(clTestMMIO+off, 1)
	}
	p.wmem(clTestMMIO+0x0e, 2, 0x0b0b) // GR0B through 0x3ce/0x3cf
	p.wmem(clTestMMIO+0x104, 4, 0x12345678)
	p.checkRegs()
}

// clSVGAMode programs an SVGA mode as a driver does: SR07 depth, the
// CRTC geometry (width w, height h, pitch bytes), 256-colour shift and
// graphics at 0xa0000, video on.
func clSVGAMode(p *clPair, w, h, pitch int, sr7, dac byte) {
	p.out(0x3c2, 1, 0xe3)
	p.seq(6, 0x12)
	p.seq(4, 0x0e)
	p.seq(2, 0x0f)
	p.seq(7, sr7)
	p.crtc(0x11, 0x00)
	p.crtc(0x01, byte(w/8-1))
	p.crtc(0x12, byte(h-1))
	p.crtc(0x07, byte((h-1)>>8&1)<<1|byte((h-1)>>9&1)<<6)
	p.crtc(0x09, 0x40)
	p.crtc(0x13, byte(pitch/8))
	p.crtc(0x1b, 0x02|byte(pitch/8>>8&1)<<4)
	p.crtc(0x17, 0xc3)
	p.crtc(0x0c, 0)
	p.crtc(0x0d, 0)
	p.gr(5, 0x40)
	p.gr(6, 0x05)
	for range 4 {
		p.in(0x3c6, 1)
	}
	p.out(0x3c6, 1, uint64(dac))
	p.in(0x3da, 1)
	p.out(0x3c0, 1, 0x20)
}

// blit programs the blitter registers through the ports (or BAR 1) and
// starts it.
type clBlit struct {
	w, h, dpitch, spitch int
	dst, src             uint32
	mode, rop, ext, mask byte
	fg, bg               uint32
	transp               uint16
}

func (p *clPair) blit(b clBlit, viaMMIO bool) {
	regs := []struct {
		mmio uint64
		gr   byte
		v    byte
	}{
		{0x00, 0x00, byte(b.bg)}, {0x01, 0x10, byte(b.bg >> 8)}, {0x02, 0x12, byte(b.bg >> 16)}, {0x03, 0x14, byte(b.bg >> 24)},
		{0x04, 0x01, byte(b.fg)}, {0x05, 0x11, byte(b.fg >> 8)}, {0x06, 0x13, byte(b.fg >> 16)}, {0x07, 0x15, byte(b.fg >> 24)},
		{0x08, 0x20, byte(b.w - 1)}, {0x09, 0x21, byte((b.w - 1) >> 8)},
		{0x0a, 0x22, byte(b.h - 1)}, {0x0b, 0x23, byte((b.h - 1) >> 8)},
		{0x0c, 0x24, byte(b.dpitch)}, {0x0d, 0x25, byte(b.dpitch >> 8)},
		{0x0e, 0x26, byte(b.spitch)}, {0x0f, 0x27, byte(b.spitch >> 8)},
		{0x14, 0x2c, byte(b.src)}, {0x15, 0x2d, byte(b.src >> 8)}, {0x16, 0x2e, byte(b.src >> 16)},
		{0x17, 0x2f, b.mask}, {0x18, 0x30, b.mode}, {0x1a, 0x32, b.rop}, {0x1b, 0x33, b.ext},
		{0x1c, 0x34, byte(b.transp)}, {0x1d, 0x35, byte(b.transp >> 8)},
		{0x10, 0x28, byte(b.dst)}, {0x11, 0x29, byte(b.dst >> 8)}, {0x12, 0x2a, byte(b.dst >> 16)},
		{0x40, 0x31, bltStart},
	}
	for _, r := range regs {
		if viaMMIO {
			p.wmem(clTestMMIO+0x100+r.mmio, 1, uint64(r.v))
		} else {
			p.gr(r.gr, r.v)
		}
	}
}

// TestQEMUDiffCirrusBlit: screen-to-screen blits (every ROP, forwards
// and backwards, transparency), pattern fills, colour expansion (plain,
// transparent, inverted, patterned), solid fills, at 8/16/24/32 bpp,
// system-to-screen blits fed through the window, the LFB and the blit
// aperture, and the CVE list's out-of-range parameters, against QEMU
// 7.2: the registers after each and VRAM.
func TestQEMUDiffCirrusBlit(t *testing.T) {
	p := newCirrusPair(t, false)
	r := rand.New(rand.NewPCG(13, 14))
	const area = 0x40000
	p.step = "fill"
	clSVGAMode(p, 640, 480, 1024, 0x01, 0)
	p.fillVRAM(r, 0, area)
	p.fillVRAM(r, clRealVRAM-0x8000, 0x8000)
	p.checkVRAM(0, 0x1000)
	rops := []byte{0x00, 0x05, 0x06, 0x09, 0x0b, 0x0d, 0x0e, 0x50, 0x59, 0x6d, 0x90, 0x95, 0xad, 0xd0, 0xd6, 0xda, 0x42}
	randBlit := func() clBlit {
		pw := r.IntN(4)
		b := clBlit{
			w: 1 + r.IntN(200), h: 1 + r.IntN(40), dpitch: 256 + r.IntN(1024), spitch: 256 + r.IntN(1024),
			dst: uint32(r.IntN(area / 2)), src: uint32(r.IntN(area / 2)),
			rop: rops[r.IntN(len(rops))], mask: byte(r.IntN(256)), fg: r.Uint32(), bg: r.Uint32(), transp: uint16(r.Uint32()),
		}
		b.mode = byte(pw) << 4
		switch r.IntN(8) {
		case 0:
			b.mode |= bltBackwards
			b.dst += uint32(b.h * b.dpitch)
			b.src += uint32(b.h * b.spitch)
		case 1:
			b.mode |= bltTransparent | byte(r.IntN(2))
			b.mode &^= 0x20 // 8 or 16 bpp
		case 2:
			b.mode |= bltPattern
		case 3:
			b.mode |= bltColorExpand | bltTransparent*byte(r.IntN(2))
			b.ext = byte(r.IntN(4) &^ 1)
		case 4:
			b.mode |= bltColorExpand | bltPattern | bltTransparent*byte(r.IntN(2))
			b.ext = byte(r.IntN(4))
		case 5:
			b.mode |= bltColorExpand | bltPattern
			b.ext = bltExtSolidFill
		}
		return b
	}
	for n := range 300 {
		p.step = fmt.Sprintf("blit %d", n)
		b := randBlit()
		p.blit(b, n%3 == 0)
		if n%25 == 0 {
			p.checkRegs()
			p.checkVRAM(0, area)
		}
	}
	p.checkVRAM(0, area)

	p.step = "attacks"
	top := uint32(clRealVRAM)
	attacks := []clBlit{
		// CVE-2014-8106 / CVE-2017-2615: backwards blits that would start
		// before VRAM.
		{w: 0x2000, h: 1, dpitch: 0x1000, spitch: 0x1000, dst: 0x10, src: 0x20, mode: bltBackwards, rop: 0x0d},
		{w: 64, h: 0x2000, dpitch: 0x1fff, spitch: 0x1fff, dst: 0x100, src: 0x200, mode: bltBackwards, rop: 0x0d},
		// CVE-2016-9921/9922: a zero pitch.
		{w: 100, h: 100, dst: 0x100, src: 0x200, rop: 0x0d},
		{w: 100, h: 100, dpitch: 0, spitch: 100, dst: 0x100, src: 0x200, mode: bltColorExpand | bltPattern, ext: bltExtSolidFill, rop: 0x0d},
		// CVE-2017-2620 / CVE-2017-7980: forwards past the end of VRAM,
		// source or destination, and a pattern source at the end.
		{w: 0x2000, h: 0x2000, dpitch: 0x1fff, spitch: 0x10, dst: 0x3ffff0, src: 0, rop: 0x0d},
		{w: 0x100, h: 0x2000, dpitch: 0x100, spitch: 0x1fff, dst: 0, src: 0x3fff00, rop: 0x0d},
		{w: 0x100, h: 4, dpitch: 0x100, spitch: 0x100, dst: 0x1000, src: 0x3fffff, mode: bltPattern | 0x30, rop: 0x0d},
		{w: 0x2000, h: 1, dpitch: 0x2000, dst: top - 0x1000, mode: bltColorExpand | bltPattern, ext: bltExtSolidFill, rop: 0x0d},
		// Transparency without colour expansion at 24/32 bpp is refused.
		{w: 16, h: 16, dpitch: 64, spitch: 64, dst: 0x100, src: 0x2000, mode: bltTransparent | 0x30, rop: 0x0d},
		// Screen to system, and both directions at once.
		{w: 16, h: 16, dpitch: 64, spitch: 64, dst: 0x100, src: 0x2000, mode: bltMemSysDest, rop: 0x0d},
		{w: 16, h: 16, dpitch: 64, spitch: 64, dst: 0x100, src: 0x2000, mode: bltMemSysDest | bltMemSysSrc, rop: 0x0d},
		// Wide lines near the top of the allocated VRAM (legal: QEMU checks
		// against vgamem_mb, the accesses wrap at 4 MiB).
		{w: 0x800, h: 3, dpitch: 0x800, spitch: 0x800, dst: top - 0x2000, src: 0x1000, rop: 0x59},
	}
	for i, b := range attacks {
		p.step = fmt.Sprintf("attack %d", i)
		p.blit(b, i%2 == 1)
		p.checkRegs()
		p.gr(0x31, bltReset)
		p.gr(0x31, 0)
	}
	p.checkVRAM(0, area)
	p.checkVRAM(clRealVRAM-0x8000, 0x8000)

	p.step = "system to screen"
	feeds := []struct {
		addr uint64
		size uint8
	}{{WindowBase, 1}, {clTestLFB + 0x1000, 4}, {clTestLFB + clBltAperture, 4}, {clTestLFB + clBltAperture + 0x100, 2}}
	for n := range 40 {
		b := randBlit()
		b.mode = b.mode&^(bltBackwards|bltTransparent) | bltMemSysSrc
		if n%4 == 3 {
			b.mode = bltMemSysSrc | byte(r.IntN(4))<<4 | bltColorExpand | bltTransparent*byte(r.IntN(2))
			b.ext = byte(r.IntN(2))
		}
		b.w = 1 + r.IntN(64)
		b.h = 1 + r.IntN(8)
		p.step = fmt.Sprintf("system to screen %d mode %#x", n, b.mode)
		p.blit(b, n%2 == 0)
		f := feeds[n%len(feeds)]
		for range 2 * b.w * b.h / int(f.size) {
			p.wmem(f.addr, f.size, uint64(r.Uint32()))
		}
		p.checkRegs()
		p.gr(0x31, bltReset)
		p.gr(0x31, 0)
		p.checkVRAM(0, area)
	}
}

// TestQEMUDiffCirrusMemory: the banked window (single and dual banks,
// 4 and 16 KiB granularity), write modes 4 and 5 at 8 and 16 bpp, the
// x8/x16 address scaling, the blitter registers at 0xb8000 and at the
// top of the LFB, and the VGA window in the VGA modes, against QEMU.
func TestQEMUDiffCirrusMemory(t *testing.T) {
	p := newCirrusPair(t, false)
	r := rand.New(rand.NewPCG(15, 16))
	p.step = "VGA window"
	p.seq(4, 0x0e)
	p.seq(2, 0x0f)
	p.gr(6, 0x05)
	for i := range 64 {
		p.wmem(WindowBase+uint64(i*13), 1, uint64(i*3+1))
		p.rmem(WindowBase+uint64(i*7), 2)
	}
	p.step = "banks"
	p.seq(7, 0x01)
	for _, gr0b := range []byte{0x00, 0x01, 0x20, 0x21} {
		for n := range 60 {
			p.gr(0x0b, gr0b)
			p.gr(0x09, byte(r.IntN(256)))
			p.gr(0x0a, byte(r.IntN(256)))
			a := WindowBase + uint64(r.IntN(0x20000))
			p.wmem(a, uint8(1<<r.IntN(3)), uint64(r.Uint32()))
			p.rmem(WindowBase+uint64(r.IntN(0x20000)), 4)
			if n%20 == 0 {
				p.checkRegs()
			}
		}
	}
	p.step = "write modes 4/5 and scaling"
	for _, gr0b := range []byte{0x04, 0x06, 0x14, 0x16, 0x02} {
		for _, mode := range []byte{0x04, 0x05, 0x00} {
			p.gr(0x0b, gr0b)
			p.gr(0x05, mode)
			p.gr(0x00, byte(r.Uint32()))
			p.gr(0x01, byte(r.Uint32()))
			p.gr(0x10, byte(r.Uint32()))
			p.gr(0x11, byte(r.Uint32()))
			p.gr(0x09, byte(r.IntN(8)))
			for range 20 {
				p.wmem(WindowBase+uint64(r.IntN(0x10000)), 1, uint64(r.Uint32()))
				p.wmem(clTestLFB+uint64(r.IntN(0x8000)), 1, uint64(r.Uint32()))
				p.rmem(clTestLFB+uint64(r.IntN(0x8000)), 1)
				p.rmem(WindowBase+uint64(r.IntN(0x10000)), 1)
			}
		}
	}
	p.gr(0x0b, 0)
	p.gr(0x05, 0)
	p.checkVRAM(0, 0x40000)
	p.step = "MMIO in the window and at the LFB top"
	p.seq(0x17, 0x04)
	p.wmem(WindowBase+0x18000+0x08, 2, 0x0102)
	p.rmem(WindowBase+0x18000+0x08, 4)
	p.rmem(WindowBase+0x18040, 1)
	p.seq(0x17, 0x44)
	p.wmem(clTestLFB+clRealVRAM-0x100+0x0c, 2, 0x0304)
	p.rmem(clTestLFB+clRealVRAM-0x100+0x08, 8)
	p.rmem(clTestLFB+2*clRealVRAM-0x100+0x08, 4)
	p.rmem(clTestLFB+0x1234, 4)
	p.checkRegs()
	p.seq(0x17, 0x20)
	p.step = "unassigned"
	p.rmem(clTestLFB+0x800000, 4)
	p.rmem(clTestLFB+clBltAperture+0x10, 4)
	p.rmem(clTestLFB+0x1800000, 4)
}

// TestQEMUDiffCirrusScreendump: 8, 15, 16, 24 and 32 bpp SVGA modes
// drawn through the LFB and by the blitter, and text mode: QEMU 7.2's
// screendump and ours, pixel for pixel.
func TestQEMUDiffCirrusScreendump(t *testing.T) {
	p := newCirrusPair(t, true)
	r := rand.New(rand.NewPCG(17, 18))
	for _, m := range []struct {
		name    string
		sr7     byte
		dac     byte
		bpp     int
		w, h    int
		pitchPx int
	}{
		{"8bpp", 0x01, 0, 8, 64, 48, 128},
		{"15bpp", 0x07, 0x00, 16, 64, 48, 64},
		{"16bpp", 0x07, 0xc1, 16, 64, 48, 72},
		{"24bpp", 0x05, 0xc5, 24, 64, 48, 64},
		{"32bpp", 0x09, 0xc5, 32, 64, 48, 80},
	} {
		p.step = m.name
		pitch := m.pitchPx * m.bpp / 8
		clSVGAMode(p, m.w, m.h, pitch, m.sr7, m.dac)
		p.out(0x3c8, 1, 0)
		for i := range 256 * 3 {
			p.out(0x3c9, 1, uint64(i*7%64))
		}
		p.in(0x3da, 1)
		p.out(0x3c0, 1, 0x20)
		for a := 0; a < m.h*pitch; a += 4 {
			p.wmem(clTestLFB+uint64(a), 4, uint64(r.Uint32()))
		}
		pw := m.bpp / 8
		p.blit(clBlit{w: 16 * pw, h: 10, dpitch: pitch, dst: uint32(5*pitch + 8*pw), fg: 0xff00ff00, rop: 0x0d,
			mode: byte(pw-1)<<4 | bltColorExpand | bltPattern, ext: bltExtSolidFill}, false)
		p.blit(clBlit{w: 20 * pw, h: 12, dpitch: pitch, spitch: pitch, dst: uint32(20*pitch + 30*pw), src: 0, rop: 0x59,
			mode: byte(pw-1) << 4}, true)
		p.clCompareScreens(m.name)
	}
}

// clCompareScreens compares QEMU's screendump with ours.
func (p *clPair) clCompareScreens(name string) {
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
	if err := display.WritePPM(&got, p.d.Source()); err != nil {
		p.t.Fatal(err)
	}
	gw, gh, gpix := parsePPM(p.t, got.Bytes())
	ww, wh, wpix := parsePPM(p.t, want)
	if gw != ww || gh != wh {
		p.t.Fatalf("%s: picture %dx%d, QEMU %dx%d", name, gw, gh, ww, wh)
	}
	colours := map[[3]byte]bool{}
	for i := 0; i+3 <= len(gpix); i += 3 {
		colours[[3]byte(gpix[i:i+3])] = true
	}
	if len(colours) < 2 {
		p.t.Fatalf("%s: a %dx%d picture of one colour proves nothing", name, gw, gh)
	}
	bad, first := 0, ""
	for i := 0; i < len(gpix); i += 3 {
		if !bytes.Equal(gpix[i:i+3], wpix[i:i+3]) {
			if bad == 0 {
				first = fmt.Sprintf("(%d,%d) = % x, QEMU % x", i/3%gw, i/3/gw, gpix[i:i+3], wpix[i:i+3])
			}
			bad++
		}
	}
	if bad > 0 {
		p.t.Fatalf("%s: %d of %d pixels differ; first %s", name, bad, gw*gh, first)
	}
	p.t.Logf("%s: %dx%d, %d colours, identical", name, gw, gh, len(colours))
}

// The PCI function against QEMU 7.2's "-device cirrus-vga": the header
// after reset, every BAR's sizing probe and the BARs programmed.
func TestQEMUDiffCirrusConfigSpace(t *testing.T) {
	p := newCirrusPair(t, false)
	rom := make([]byte, 39424) // vgabios-cirrus.bin's size: a 64 KiB ROM BAR
	d, err := NewCirrus(CirrusConfig{VRAMMiB: 8, ROM: rom})
	if err != nil {
		t.Fatal(err)
	}
	fn := d.Function()
	qread := func(off uint32) uint32 {
		p.qout(0xcf8, 4, uint64(clTestDev|off))
		v, _, err := p.q.In(0xcfc, 4)
		if err != nil {
			t.Fatal(err)
		}
		return uint32(v)
	}
	write := func(off, v uint32) {
		p.qout(0xcf8, 4, uint64(clTestDev|off))
		p.qout(0xcfc, 4, uint64(v))
		fn.Write(devices.Access{Addr: uint64(off), Offset: uint64(off), Size: 4}, uint64(v))
	}
	check := func(step string) {
		t.Helper()
		for off := uint32(0); off < 0x40; off += 4 {
			if off == 0x3c {
				continue // interrupt line: the machine's firmware writes it
			}
			if got, want := fn.ConfigRead(off, 4), qread(off); got != want {
				t.Errorf("%s: config %#02x = %#08x, QEMU %#08x", step, off, got, want)
			}
		}
	}
	// newCirrusPair programmed QEMU's BARs and command; do the same here.
	write(0x10, clTestLFB)
	write(0x14, clTestMMIO)
	write(0x04, 0x0003)
	check("programmed")
	for _, off := range []uint32{0x10, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x30} {
		write(off, 0xffffffff)
	}
	write(0x30, 0xfffff800)
	check("sizing")
}

// TestQEMUDiffCirrusCursor: the hardware cursor (32x32 and 64x64, every
// plane combination from random patterns, clipped at the right edge) over
// 8, 16 and 32 bpp pictures: QEMU's screendump and ours.
func TestQEMUDiffCirrusCursor(t *testing.T) {
	p := newCirrusPair(t, true)
	r := rand.New(rand.NewPCG(19, 20))
	p.step = "cursor setup"
	p.fillVRAM(r, clRealVRAM-16*1024, 16*1024)
	p.seq(0x12, 0x02) // DAC writes reach the cursor palette
	p.out(0x3c8, 1, 0)
	for i := range 48 {
		p.out(0x3c9, 1, uint64(r.IntN(64)+i%2))
	}
	p.seq(0x12, 0x00)
	for n, m := range []struct {
		sr7, dac, sr12, sr13 byte
		bpp, x, y            int
	}{
		{0x09, 0xc5, 0x05, 0x14, 32, 37, 20},
		{0x07, 0xc1, 0x01, 0x21, 16, 5, 3},
		{0x01, 0, 0x05, 0x3c, 8, 50, 0},
		{0x09, 0xc5, 0x01, 0x07, 32, 70, 9}, // off the right edge: nothing
	} {
		p.step = fmt.Sprintf("cursor %d", n)
		p.seq(0x10|byte(m.x&7)<<5, byte(m.x>>3))
		p.seq(0x11|byte(m.y&7)<<5, byte(m.y>>3))
		p.seq(0x13, m.sr13)
		pitch := 64 * m.bpp / 8
		clSVGAMode(p, 64, 48, pitch, m.sr7, m.dac)
		p.out(0x3c8, 1, 0)
		for i := range 256 * 3 {
			p.out(0x3c9, 1, uint64(i*5%64))
		}
		p.in(0x3da, 1)
		p.out(0x3c0, 1, 0x20)
		p.seq(0x12, m.sr12)
		for a := 0; a < 48*pitch; a += 4 {
			p.wmem(clTestLFB+uint64(a), 4, uint64(r.Uint32()))
		}
		p.clCompareScreens(p.step)
		p.seq(0x12, 0)
	}
}

// TestQEMUDiffCirrusVGAModes: the VGA modes on the Cirrus (its BIOS's
// text mode, mode 13h, planar mode 12h), with the CRTC extensions that
// move the start address and line offset: screendumps equal QEMU's.
func TestQEMUDiffCirrusVGAModes(t *testing.T) {
	p := newCirrusPair(t, true)
	r := rand.New(rand.NewPCG(21, 22))
	p.step = "text"
	textMode(p)
	loadFont(p, glyph)
	for i := range 80 * 25 * 2 {
		p.wmem(0xb8000+uint64(2*i), 2, uint64(r.IntN(256))|uint64(r.IntN(256))<<8)
	}
	p.in(0x3da, 1)
	p.out(0x3c0, 1, 0x20)
	p.clCompareScreens("text")
	p.crtc(0x1b, 0x10) // line offset bit 8: 2 KiB rows
	p.crtc(0x13, 0x08)
	p.clCompareScreens("text-offset")
	p.crtc(0x1b, 0x00)
	p.crtc(0x13, 0x28)
	p.step = "mode 13h"
	mode13(p)
	for i := range 320 * 200 / 4 {
		p.wmem(WindowBase+uint64(4*i), 4, uint64(r.Uint32()))
	}
	p.clCompareScreens("mode13h")
	p.step = "mode 12h"
	mode12(p)
	p.gr(5, 0x02)
	for i := 0; i < 80*480; i += 3 {
		p.gr(8, byte(r.Uint32()))
		p.rmem(WindowBase+uint64(i), 1)
		p.wmem(WindowBase+uint64(i), 1, uint64(r.IntN(16)))
	}
	p.clCompareScreens("mode12h")
	p.step = "SVGA start address"
	clSVGAMode(p, 64, 48, 64, 0x01, 0)
	p.fillVRAM(r, 0, 0x48000)
	p.crtc(0x0d, 0x10)
	p.crtc(0x1b, 0x03) // start address bit 16: 256 KiB on
	p.clCompareScreens("svga-start")
}
