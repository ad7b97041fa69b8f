package vga

import (
	"testing"

	"godm/devices"
)

func TestVBEModeSet(t *testing.T) {
	var cleared uint32
	v := NewVBE(16<<20, func(n uint32) { cleared = n })
	p := Ports{V: v}
	set := func(i, val uint16) {
		p.Write(devices.Access{Addr: PortIndex, Size: 2}, uint64(i))
		p.Write(devices.Access{Addr: PortData, Size: 2}, uint64(val))
	}
	if got := p.Read(devices.Access{Addr: PortData, Size: 2}); got != ID5 {
		t.Fatalf("ID after reset %#x", got)
	}
	set(IndexXRes, 800)
	set(IndexYRes, 600)
	set(IndexBPP, 32)
	set(IndexEnable, Enabled|LFBEnabled)
	m := v.Mode()
	if !m.Enabled || m.XRes != 800 || m.YRes != 600 || m.BPP != 32 || m.LineLength != 3200 || !m.LFB || m.Start != 0 {
		t.Fatalf("mode %+v", m)
	}
	if cleared != 600*3200 {
		t.Errorf("mode set cleared %d bytes", cleared)
	}
	// Panning within VRAM moves the start; beyond it resets.
	set(IndexYOffset, 10)
	set(IndexXOffset, 8)
	if m := v.Mode(); m.Start != 10*3200+32 {
		t.Errorf("start %d", m.Start)
	}
	set(IndexYOffset, 5000) // 5600 lines of 3200 bytes > 16 MiB
	if m := v.Mode(); m.Start != 32 {
		t.Errorf("start after an impossible pan %d", m.Start)
	}
	// MMIO window at 0x500: index*2, and it moves the index register.
	if got := v.ReadMMIO(2 * IndexXRes); got != 800 {
		t.Errorf("MMIO XRES %d", got)
	}
	if v.ReadIndex() != IndexXRes {
		t.Error("MMIO read did not move the index")
	}
	v.WriteMMIO(2*IndexBank, 0xffff)
	if m := v.Mode(); m.BankOffset != 255<<16 {
		t.Errorf("bank offset %#x", m.BankOffset)
	}
	if got := v.ReadMMIO(2 * IndexVideoMem64K); got != 256 {
		t.Errorf("video memory %d×64K", got)
	}
	v.Reset()
	if m := v.Mode(); m.Enabled || v.ReadIndex() != 0 {
		t.Errorf("after reset %+v", m)
	}
}

// FuzzDISPI writes anything anywhere: the enabled mode always fits VRAM.
func FuzzDISPI(f *testing.F) {
	f.Add([]byte{1, 0, 4, 3, 0x20, 0, 4, 0x41, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		v := NewVBE(8<<20, nil)
		for i := 0; i+2 < len(b); i += 3 {
			idx := uint16(b[i] % 16)
			val := uint16(b[i+1])<<8 | uint16(b[i+2])
			if b[i]&0x80 != 0 {
				v.WriteMMIO(uint64(idx)*2, val)
			} else {
				v.WriteIndex(idx)
				v.WriteData(val)
			}
			m := v.Mode()
			if m.Enabled {
				end := uint64(m.Start) + uint64(m.YRes)*uint64(m.LineLength)
				bits := uint64(m.BPP)
				if bits == 15 {
					bits = 16
				}
				if end > 8<<20 || m.XRes == 0 || m.YRes == 0 || uint64(m.XRes)*bits/8 > uint64(m.LineLength) {
					t.Fatalf("mode %+v escapes VRAM (end %d)", m, end)
				}
			}
			if m.BankOffset >= 8<<20 {
				t.Fatalf("bank offset %#x beyond VRAM", m.BankOffset)
			}
		}
	})
}
