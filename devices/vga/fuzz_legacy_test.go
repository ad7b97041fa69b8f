package vga

import (
	"testing"

	"godm/devices"
	"godm/display"
)

// FuzzLegacy drives every guest-facing decoder of the VGA (legacy ports,
// the window, DISPI, the MMIO BAR, the framebuffer BAR) with arbitrary
// accesses and draws the picture after each batch: nothing may panic,
// the picture's mode must stay within display's limits, reads must fit
// their size, and a read of the whole picture must succeed.
func FuzzLegacy(f *testing.F) {
	f.Add([]byte{0, 0xc4, 2, 0x04, 0x0e, 1, 0x10, 4, 0x12, 0x34, 0x56, 0x78})
	f.Add([]byte{0, 0xce, 2, 0x06, 0x01, 0, 0xd4, 2, 0x01, 0xff, 0, 0xd4, 2, 0x12, 0xff, 3, 4, 2, 8, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := New(Config{VRAMSize: 1 << 20, ROM: []byte{0x55, 0xaa}})
		if err != nil {
			t.Fatal(err)
		}
		ports, win, dispi := d.Ports(), d.Window(), d.DISPI()
		mmio, lfb := mmioHandler{d.Core}, lfbHandler{d.Core}
		src := d.Source()
		for i := 0; i+4 < len(b); i += 5 {
			op, a1, a2, v := b[i]%12, uint64(b[i+1]), uint64(b[i+2]), uint64(b[i+3])|uint64(b[i+4])<<8
			size := uint8(1) << (b[i] >> 6)
			var got uint64
			switch op {
			case 0:
				ports.Write(devices.Access{Addr: 0x3b0 + a1%0x30, Size: size}, v)
			case 1:
				got = ports.Read(devices.Access{Addr: 0x3b0 + a1%0x30, Size: size})
			case 2:
				win.Write(devices.Access{Offset: (a1<<8 | a2) << 1, Size: size}, v)
			case 3:
				got = win.Read(devices.Access{Offset: (a1<<8 | a2) << 1, Size: size})
			case 4:
				dispi.Write(devices.Access{Addr: PortIndex + a1&1, Size: 2}, v)
			case 5:
				mmio.Write(devices.Access{Offset: (a1<<4 | a2) % MMIOBARSize, Size: size}, v)
			case 6:
				got = mmio.Read(devices.Access{Offset: (a1<<4 | a2) % MMIOBARSize, Size: size})
			case 7:
				lfb.Write(devices.Access{Offset: (a1<<12 | a2<<4) % (1 << 20), Size: size}, v)
			default:
				m := src.Mode()
				if m.Width < 1 || m.Height < 1 || m.Width > display.MaxSide || m.Height > display.MaxSide {
					t.Fatalf("mode %+v", m)
				}
				if op == 8 {
					tl := display.NewTiles(m.Width, m.Height)
					src.CollectDirty(tl)
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
		}
	})
}
