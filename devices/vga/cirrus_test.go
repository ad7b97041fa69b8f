package vga

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"godm/devices"
	"godm/devices/savestate"
	"godm/display"
)

func newTestCirrus(t testing.TB) *Cirrus {
	t.Helper()
	d, err := NewCirrus(CirrusConfig{VRAMMiB: 8, ROM: []byte{0x55, 0xaa}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *Cirrus) gr(i, v byte) {
	d.CirrusPortHandler().Write(devices.Access{Addr: 0x3ce, Size: 2}, uint64(i)|uint64(v)<<8)
}

func (d *Cirrus) grRead(i byte) byte {
	h := d.CirrusPortHandler()
	h.Write(devices.Access{Addr: 0x3ce, Size: 1}, uint64(i))
	return byte(h.Read(devices.Access{Addr: 0x3cf, Size: 1}))
}

// startBlit programs and starts b through the GR registers.
func (d *Cirrus) startBlit(b clBlit) {
	for _, r := range [][2]byte{
		{0x00, byte(b.bg)}, {0x10, byte(b.bg >> 8)}, {0x12, byte(b.bg >> 16)}, {0x14, byte(b.bg >> 24)},
		{0x01, byte(b.fg)}, {0x11, byte(b.fg >> 8)}, {0x13, byte(b.fg >> 16)}, {0x15, byte(b.fg >> 24)},
		{0x20, byte(b.w - 1)}, {0x21, byte((b.w - 1) >> 8)}, {0x22, byte(b.h - 1)}, {0x23, byte((b.h - 1) >> 8)},
		{0x24, byte(b.dpitch)}, {0x25, byte(b.dpitch >> 8)}, {0x26, byte(b.spitch)}, {0x27, byte(b.spitch >> 8)},
		{0x28, byte(b.dst)}, {0x29, byte(b.dst >> 8)}, {0x2a, byte(b.dst >> 16)},
		{0x2c, byte(b.src)}, {0x2d, byte(b.src >> 8)}, {0x2e, byte(b.src >> 16)},
		{0x2f, b.mask}, {0x30, b.mode}, {0x32, b.rop}, {0x33, b.ext}, {0x34, byte(b.transp)}, {0x35, byte(b.transp >> 8)},
		{0x31, bltStart},
	} {
		d.gr(r[0], r[1])
	}
}

// The blits of QEMU's cirrus CVEs, each of which wrote or read outside
// VRAM in some QEMU version: here every one is refused before it touches
// VRAM (a canary pattern survives), the engine ends idle (or, for the
// unsafe solid fill, busy as QEMU leaves it), and nothing panics.
func TestCirrusBlitAttacks(t *testing.T) {
	const top = clRealVRAM
	for _, tc := range []struct {
		name string
		b    clBlit
		busy bool
	}{
		{"CVE-2014-8106 backwards before VRAM", clBlit{w: 0x2000, h: 1, dpitch: 0x1000, spitch: 0x1000, dst: 0x10, src: 0x20, mode: bltBackwards, rop: 0x0d}, false},
		{"CVE-2017-2615 backwards tall", clBlit{w: 64, h: 0x2000, dpitch: 0x1fff, spitch: 0x1fff, dst: 0x100, src: 0x200, mode: bltBackwards, rop: 0x0d}, false},
		{"CVE-2017-2615 backwards source before VRAM", clBlit{w: 0x100, h: 2, dpitch: 0x100, spitch: 0x1000, dst: 0x3000, src: 0x10, mode: bltBackwards, rop: 0x0d}, false},
		{"CVE-2016-9921 zero pitch copy", clBlit{w: 100, h: 100, dst: 0x100, src: 0x200, rop: 0x0d}, false},
		{"CVE-2016-9922 zero pitch fill", clBlit{w: 100, h: 100, dst: 0x100, mode: bltColorExpand | bltPattern, ext: bltExtSolidFill, rop: 0x0d}, true},
		{"CVE-2017-2620 destination past VRAM", clBlit{w: 0x2000, h: 0x2000, dpitch: 0x1fff, spitch: 0x10, dst: 0x3ffff0, rop: 0x0d}, false},
		{"CVE-2017-2620 source past VRAM", clBlit{w: 0x100, h: 0x2000, dpitch: 0x100, spitch: 0x1fff, dst: 0, src: 0x3fff00, rop: 0x0d}, false},
		{"CVE-2017-2620 system to screen past VRAM", clBlit{w: 0x2000, h: 0x2000, dpitch: 0x1fff, dst: 0x3ffff0, mode: bltMemSysSrc, rop: 0x0d}, false},
		{"CVE-2017-7980 pattern source at the end", clBlit{w: 0x2000, h: 0x2000, dpitch: 0x1fff, dst: 0x10, src: 0x3fffff, mode: bltPattern | 0x30, rop: 0x0d}, false},
		{"solid fill past the end", clBlit{w: 0x2000, h: 0x800, dpitch: 0x2000, dst: top - 0x1000, mode: bltColorExpand | bltPattern, ext: bltExtSolidFill, rop: 0x0d}, true},
		{"transparent 32 bpp", clBlit{w: 16, h: 16, dpitch: 64, spitch: 64, dst: 0x100, src: 0x2000, mode: bltTransparent | 0x30, rop: 0x0d}, false},
		{"screen to system", clBlit{w: 16, h: 16, dpitch: 64, spitch: 64, dst: 0x100, src: 0x2000, mode: bltMemSysDest, rop: 0x0d}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestCirrus(t)
			vram := d.VRAM()
			for i := range vram {
				vram[i] = byte(i*7 + i>>12)
			}
			canary := bytes.Clone(vram)
			d.startBlit(tc.b)
			if !bytes.Equal(vram, canary) {
				t.Fatal("the blit changed VRAM")
			}
			if d.cl.blt.feeding() {
				t.Fatal("a refused blit waits for data")
			}
			if got := d.grRead(0x31) & bltBusy; (got != 0) != tc.busy {
				t.Fatalf("GR31 busy = %v, want %v", got != 0, tc.busy)
			}
			// Data sent after a refused system-to-screen blit is plain
			// VRAM data again.
			lfb := clLFBHandler{d.Core}
			lfb.Write(devices.Access{Offset: clBltAperture, Size: 4}, 0xffffffff)
			if !bytes.Equal(vram, canary) {
				t.Fatal("the blit aperture wrote VRAM")
			}
		})
	}
}

// Blits that QEMU lets run with wrapped addresses (its checks use the
// allocated VRAM, its accesses the chip's 4 MiB mask) stay inside VRAM
// here too: the largest blit the registers allow, at the top of VRAM,
// in every kind and depth, panics nowhere.
func TestCirrusBlitExtremes(t *testing.T) {
	d := newTestCirrus(t)
	for mode := range 256 {
		if mode&(bltMemSysSrc|bltMemSysDest) != 0 {
			continue
		}
		for _, ext := range []byte{0, bltExtSolidFill | bltExtInvert} {
			d.startBlit(clBlit{w: 0x2000, h: 2, dpitch: 0x1fff, spitch: 0x1fff, dst: clRealVRAM - 1, src: clRealVRAM - 1,
				mode: byte(mode), ext: ext, rop: 0x59, mask: 0xff, transp: 0x1234})
			d.startBlit(clBlit{w: 0x800, h: 0x800, dpitch: 0x1000, spitch: 0x1000, dst: 0x7ff000, src: 0x1fff,
				mode: byte(mode) | bltBackwards, ext: ext, rop: 0x0d, mask: 0x1f})
		}
	}
}

// A system-to-screen blit draws each line as its bytes arrive, through
// any of the three feeding paths, then returns the window and LFB to
// VRAM.
func TestCirrusSystemToScreen(t *testing.T) {
	d := newTestCirrus(t)
	d.CirrusPortHandler().Write(devices.Access{Addr: 0x3c4, Size: 2}, 0x0107) // SR07: SVGA
	const w, h, pitch, dst = 6, 3, 32, 0x400
	d.startBlit(clBlit{w: w, h: h, dpitch: pitch, dst: dst, mode: bltMemSysSrc, rop: 0x0d})
	if !d.cl.blt.feeding() {
		t.Fatal("blit not waiting for data")
	}
	var want []byte
	win, lfb := d.Window(), clLFBHandler{d.Core}
	for y := range h {
		line := []byte{byte(y), 1, 2, 3, 4, 5, 0xee, 0xee} // 8 bytes: lines arrive in dwords
		want = append(want, line[:w]...)
		switch y {
		case 0:
			for _, b := range line {
				win.Write(devices.Access{Offset: 0x1234, Size: 1}, uint64(b))
			}
		case 1:
			lfb.Write(devices.Access{Offset: clBltAperture, Size: 4}, uint64(binary.LittleEndian.Uint32(line)))
			lfb.Write(devices.Access{Offset: clBltAperture + 8, Size: 4}, uint64(binary.LittleEndian.Uint32(line[4:])))
		default:
			lfb.Write(devices.Access{Offset: 0x10, Size: 8}, binary.LittleEndian.Uint64(line))
		}
	}
	var got []byte
	for y := range h {
		got = append(got, d.VRAM()[dst+y*pitch:dst+y*pitch+w]...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("blitted % x, want % x", got, want)
	}
	if d.cl.blt.feeding() || d.grRead(0x31)&bltBusy != 0 {
		t.Fatal("engine still busy after the last line")
	}
	lfb.Write(devices.Access{Offset: 0x10, Size: 1}, 0x77)
	if d.VRAM()[0x10] != 0x77 {
		t.Fatal("the LFB does not reach VRAM after the blit")
	}
}

// Overlapping backward copies move a region down as memmove would.
func TestCirrusBackwardOverlap(t *testing.T) {
	d := newTestCirrus(t)
	v := d.VRAM()
	for i := range 0x1000 {
		v[i] = byte(i)
	}
	want := bytes.Clone(v[:0x1000])
	copy(want[0x10:0x10+0x100], v[0:0x100])
	// One line of 0x100 bytes, last byte first: source end 0xff, dest end 0x10f.
	d.startBlit(clBlit{w: 0x100, h: 1, dpitch: 0x100, spitch: 0x100, dst: 0x10f, src: 0xff, mode: bltBackwards, rop: 0x0d})
	if !bytes.Equal(v[:0x1000], want) {
		t.Fatal("backward overlapping copy differs from memmove")
	}
}

// The snapshot carries the registers, the extensions and VRAM; a record
// of another VRAM size or a truncated one is refused.
func TestCirrusSnapshot(t *testing.T) {
	d := newTestCirrus(t)
	ports := d.CirrusPortHandler()
	for _, w := range []uint64{0x1206, 0x0107, 0x0412, 0x3310, 0xa513} {
		ports.Write(devices.Access{Addr: 0x3c4, Size: 2}, w)
	}
	d.gr(0x0b, 0x21)
	d.gr(0x09, 0x05)
	d.gr(0x01, 0xab)
	d.VRAM()[0x123456] = 0x9a
	snap, err := d.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	e := newTestCirrus(t)
	if err := e.Restore(snap); err != nil {
		t.Fatal(err)
	}
	for i := range 256 {
		ports.Write(devices.Access{Addr: 0x3c4, Size: 1}, uint64(i))
		e.CirrusPortHandler().Write(devices.Access{Addr: 0x3c4, Size: 1}, uint64(i))
		if a, b := ports.Read(devices.Access{Addr: 0x3c5, Size: 1}), e.CirrusPortHandler().Read(devices.Access{Addr: 0x3c5, Size: 1}); a != b {
			t.Fatalf("SR%02x = %#x after restore, was %#x", i, b, a)
		}
		if a, b := d.grRead(byte(i)), e.grRead(byte(i)); a != b {
			t.Fatalf("GR%02x = %#x after restore, was %#x", i, b, a)
		}
	}
	if e.VRAM()[0x123456] != 0x9a || e.cl.bankBase != d.cl.bankBase {
		t.Fatal("VRAM or banks not restored")
	}
	small, _ := NewCirrus(CirrusConfig{VRAMMiB: 4})
	if err := small.Restore(snap); !errors.Is(err, savestate.ErrFormat) {
		t.Fatalf("restore into 4 MiB: %v, want ErrFormat", err)
	}
	if err := e.Restore(snap[:len(snap)-3]); err == nil {
		t.Fatal("truncated record accepted")
	}
}

func TestCirrusVRAMSizes(t *testing.T) {
	for _, mb := range []uint64{0, 1, 2, 3, 5, 32} {
		if _, err := NewCirrus(CirrusConfig{VRAMMiB: mb}); err == nil {
			t.Errorf("vgamem_mb=%d accepted", mb)
		}
	}
}

// FuzzCirrus drives the Cirrus's decoders (ports, window, LFB and blit
// aperture, MMIO BAR) with arbitrary accesses, blits included, and
// draws the picture: nothing may panic, reads fit their size, the mode
// stays within display's limits.
func FuzzCirrus(f *testing.F) {
	f.Add([]byte{0, 0xc4, 0x07, 0x01, 0x09, 0, 0xce, 0x31, 0x02, 0})
	f.Add([]byte{0, 0xce, 0x30, 0x04, 0, 0, 0xce, 0x31, 0x02, 0, 7, 0xff, 0xff, 1, 2, 7, 0, 0, 3, 4})
	f.Add([]byte{5, 0x40, 0, 0x02, 0, 5, 0x18, 0, 0x80, 0, 5, 0x1b, 0, 0x04, 0, 8, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := NewCirrus(CirrusConfig{VRAMMiB: 4})
		if err != nil {
			t.Fatal(err)
		}
		ports, win := d.CirrusPortHandler(), d.Window()
		mmio, lfb := clMMIOHandler{d.Core}, clLFBHandler{d.Core}
		src := d.Source()
		for i := 0; i+4 < len(b); i += 5 {
			op, a1, a2, v := b[i]%10, uint64(b[i+1]), uint64(b[i+2]), uint64(b[i+3])|uint64(b[i+4])<<8
			size := uint8(1) << (b[i] >> 6)
			var got uint64
			switch op {
			case 0:
				ports.Write(devices.Access{Addr: 0x3b0 + a1%0x30, Size: 2}, a2|v<<8)
			case 1:
				got = ports.Read(devices.Access{Addr: 0x3b0 + a1%0x30, Size: size})
			case 2:
				win.Write(devices.Access{Offset: (a1<<8 | a2) << 1, Size: size}, v)
			case 3:
				got = win.Read(devices.Access{Offset: (a1<<8 | a2) << 1, Size: size})
			case 4:
				got = mmio.Read(devices.Access{Offset: (a1<<4 | a2) % CirrusMMIOSize, Size: size})
			case 5:
				mmio.Write(devices.Access{Offset: 0x100 + a1, Size: 1}, a2)
			case 6:
				got = lfb.Read(devices.Access{Offset: (a1<<17 | a2<<9 | v) % CirrusBAR0Size, Size: size})
			case 7:
				lfb.Write(devices.Access{Offset: (a1<<17 | a2<<9 | v) % CirrusBAR0Size, Size: size}, v)
			default:
				m := src.Mode()
				if m.Width < 1 || m.Height < 1 || m.Width > display.MaxSide || m.Height > display.MaxSide {
					t.Fatalf("mode %+v", m)
				}
				if op == 8 {
					src.CollectDirty(display.NewTiles(m.Width, m.Height))
				} else if m.Width*m.Height <= 1<<20 {
					buf := make([]byte, m.Width*m.Height*m.Format.BytesPerPixel())
					if !src.Read(buf, m, m.Bounds()) && src.Mode() == m {
						t.Fatalf("read of the whole %+v failed with the mode unchanged", m)
					}
				}
			}
			if size < 8 && got>>(8*size) != 0 {
				t.Fatalf("op %d: a %d-byte read returned %#x", op, size, got)
			}
			// Keep blits to 512x512: a maximal one costs seconds, too
			// slow for fuzzing (TestCirrusBlitExtremes runs those).
			d.mu.Lock()
			d.cl.gr[0x21] &= 1
			d.cl.gr[0x23] &= 1
			d.mu.Unlock()
		}
	})
}

// BenchmarkCirrusBlit: blits of a 640x480 32-bpp screen (what a Linux
// console scroll or clear asks), started through the GR registers; the
// engine allocates nothing.
func BenchmarkCirrusBlit(b *testing.B) {
	for _, bc := range []struct {
		name string
		blit clBlit
	}{
		{"fill", clBlit{w: 640 * 4, h: 480, dpitch: 640 * 4, mode: 0x30 | bltColorExpand | bltPattern, ext: bltExtSolidFill, rop: 0x0d, fg: 0x123456}},
		{"copy", clBlit{w: 640 * 4, h: 460, dpitch: 640 * 4, spitch: 640 * 4, dst: 0, src: 20 * 640 * 4, mode: 0x30, rop: 0x0d}},
		{"expand", clBlit{w: 640 * 4, h: 480, dpitch: 640 * 4, spitch: 80, src: 0x200000, mode: 0x30 | bltColorExpand, rop: 0x0d, fg: 0xffffff}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d := newTestCirrus(b)
			if n := testing.AllocsPerRun(3, func() { d.startBlit(bc.blit) }); n != 0 {
				b.Fatalf("%v allocations per blit", n)
			}
			b.SetBytes(int64(bc.blit.w * bc.blit.h))
			for b.Loop() {
				d.startBlit(bc.blit)
			}
		})
	}
}

// Every Cirrus access path allocates nothing: ports, the banked window,
// the LFB and blit aperture, BAR 1, a system-to-screen blit being fed.
func TestCirrusAccessesDoNotAllocate(t *testing.T) {
	d := newTestCirrus(t)
	p, w := d.CirrusPortHandler(), d.Window()
	m, l := clMMIOHandler{d.Core}, clLFBHandler{d.Core}
	p.Write(devices.Access{Addr: 0x3c4, Size: 2}, 0x0107)
	n := testing.AllocsPerRun(200, func() {
		p.Write(devices.Access{Addr: 0x3ce, Size: 2}, 0x0209)
		p.Read(devices.Access{Addr: 0x3c6, Size: 1})
		w.Write(devices.Access{Offset: 0x100, Size: 2}, 0x0741)
		w.Read(devices.Access{Offset: 0x8100, Size: 4})
		m.Write(devices.Access{Offset: 0x108, Size: 2}, 0x0707)
		m.Read(devices.Access{Offset: 0x140, Size: 1})
		l.Write(devices.Access{Offset: 0x1000, Size: 4}, 0x00ff00ff)
		l.Read(devices.Access{Offset: 0x1000, Size: 4})
		d.startBlit(clBlit{w: 8, h: 2, dpitch: 64, dst: 0x100, mode: bltMemSysSrc, rop: 0x0d})
		l.Write(devices.Access{Offset: clBltAperture, Size: 8}, 0x0102030405060708)
		l.Write(devices.Access{Offset: clBltAperture, Size: 8}, 0x0102030405060708)
	})
	if n != 0 {
		t.Errorf("%v allocations per round of accesses", n)
	}
}
