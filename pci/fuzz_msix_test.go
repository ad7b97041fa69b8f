package pci

import (
	"encoding/binary"
	"testing"

	"godm/internal/testfake"
)

// FuzzMSIX drives the MSI-X table, PBA, control bits and interrupts in
// random order and checks: reserved Vector Control bits read 0, the PBA
// never shows vectors beyond the table, and every message sent matches an
// entry that was enabled and unmasked at the time.
func FuzzMSIX(f *testing.F) {
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0xe0, 0xfe, 2, 0x80, 0, 0, 3, 1, 0, 0, 0, 0x0c, 0, 4, 0, 0, 0, 0})
	f.Add([]byte{2, 0xc0, 0, 0, 3, 5, 0, 0, 1, 0x08, 0x30, 8, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, script []byte) {
		r := newRig(t)
		d, sbdf := newMSIXDevice(t, r, nil)
		c := uint32(d.msix.cap)
		const tableBase, pbaBase = 0xfe002000, 0xfe003000
		for len(script) >= 8 {
			op, a, b := script[0]%4, uint64(binary.LittleEndian.Uint16(script[1:])), script[3]
			v := uint64(binary.LittleEndian.Uint32(script[4:]))
			script = script[8:]
			size := []uint8{1, 2, 4, 8}[b%4]
			switch op {
			case 0: // table write (or just past it)
				r.spaces.MMIO.Write(tableBase+a%(70*16+16), size, 0, v|v<<32)
			case 1: // PBA write, must be ignored
				before := slicesCloneU64(d.msix.pba)
				r.spaces.MMIO.Write(pbaBase+a%24, size, 0, v)
				for i := range before {
					if before[i] != d.msix.pba[i] {
						t.Fatalf("PBA write changed word %d", i)
					}
				}
			case 2: // control
				r.cfgWrite(sbdf, c+2, 2, v&0xc000)
			case 3: // interrupt, checked against the table
				vec := int(a % 72)
				d.mu.Lock()
				ctl := get16(d.cfg, int(c)+msixControl)
				deliver := vec < 70 && ctl&msixEnable != 0 && ctl&msixFunctionMask == 0 && !d.msix.entryMasked(vec)
				var addr uint64
				var data uint32
				if vec < 70 {
					e := d.msix.table[vec*16:]
					addr, data = uint64(get32(e, 0))|uint64(get32(e, 4))<<32, get32(e, 8)
				}
				d.mu.Unlock()
				r.takeMSIs()
				d.Interrupt(vec)
				got := r.takeMSIs()
				if deliver && (len(got) != 1 || got[0] != (testfake.MSI{Addr: addr, Data: data})) {
					t.Fatalf("vector %d: sent %v, want one {%#x %#x}", vec, got, addr, data)
				}
				if !deliver && len(got) != 0 {
					t.Fatalf("vector %d masked or disabled, but sent %v", vec, got)
				}
			}
			for vec := range 70 {
				if got := r.spaces.MMIO.Read(tableBase+uint64(vec)*16+12, 4, 0); got&^1 != 0 {
					t.Fatalf("vector %d control = %#x: reserved bits set", vec, got)
				}
			}
			if got := r.spaces.MMIO.Read(pbaBase+8, 8, 0); got>>6 != 0 {
				t.Fatalf("PBA word 1 = %#x: bits beyond vector 69", got)
			}
		}
	})
}

func slicesCloneU64(s []uint64) []uint64 { return append([]uint64(nil), s...) }
