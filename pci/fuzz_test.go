package pci

import (
	"encoding/binary"
	"testing"
)

// FuzzConfigWrites runs random scripts of configuration writes, BAR
// accesses and interrupts against a function with every feature and checks
// that nothing panics, read-only bits never change and the writable and
// write-1-to-clear masks are honoured.
func FuzzConfigWrites(f *testing.F) {
	f.Add([]byte{0, 0x04, 0x00, 2, 0x07, 0, 0, 0})
	f.Add([]byte{0, 0x10, 0x00, 4, 0xff, 0xff, 0xff, 0xff, 0, 0x14, 0, 4, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0x06, 0x00, 2, 0xff, 0xff, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, script []byte) {
		r := newRig(t)
		h := &memHandler{mem: make([]byte, 0x4000)}
		build := func() (*Device, uint8) {
			d := mustNew(t, Header{VendorID: 0x1234, DeviceID: 0x5678, InterruptPin: 2, Extended: len(script)%2 == 1})
			must(t, d.SetBAR(0, BAR{Kind: BARMem32, Size: 0x4000, Handler: h}))
			must(t, d.SetBAR(1, BAR{Kind: BARIO, Size: 0x40, Handler: h}))
			must(t, d.SetBAR(2, BAR{Kind: BARMem64, Size: 0x1000, Prefetchable: true, Handler: h}))
			must(t, d.SetROM(0x800, h))
			must(t, d.DefineRegister(0x40, 4, 0x12345678, 0x00ff00ff, 0xff000000))
			msiOff, err := d.AddMSI(MSIConfig{Vectors: 8, Addr64: true, PerVectorMask: true})
			must(t, err)
			_, err = d.AddMSIX(MSIXConfig{Vectors: 16, TableOffset: 0x2000, PBAOffset: 0x3000})
			must(t, err)
			return d, msiOff
		}
		d, msiOff := build()
		sbdf, err := r.bus.Add(d, 5, 0)
		must(t, err)
		pendLo := uint32(msiOff) + uint32(d.msi.pending)
		n := uint32(d.ConfigSize())
		for len(script) >= 8 {
			op, off, size := script[0], uint32(binary.LittleEndian.Uint16(script[1:])), script[3]
			val := uint64(binary.LittleEndian.Uint32(script[4:]))
			val |= val << 32
			script = script[8:]
			size = []uint8{1, 2, 4, 8}[size%4]
			switch op % 6 {
			case 0, 1: // configuration write, checked
				off %= 4096 + 8
				before := make([]byte, n)
				copy(before, d.cfg)
				r.cfgWrite(sbdf, off, size, val)
				for i := range uint32(size) {
					o := off + i
					if o >= n {
						continue
					}
					if o >= pendLo && o < pendLo+4 || o == RegStatus {
						continue // device-owned dynamic bits
					}
					old, now, w, c := before[o], d.cfg[o], d.wmask[o], d.w1c[o]
					v := byte(val >> (8 * i))
					if (old^now)&^(w|c) != 0 {
						t.Fatalf("write %#x/%d=%#x: read-only bits of %#x changed %#x -> %#x", off, size, val, o, old, now)
					}
					if now&w != v&w {
						t.Fatalf("write %#x/%d=%#x: writable bits of %#x = %#x, want %#x", off, size, val, o, now&w, v&w)
					}
					if now&c != old&c&^v {
						t.Fatalf("write %#x/%d=%#x: w1c bits of %#x = %#x, want %#x", off, size, val, o, now&c, old&c&^v)
					}
				}
				// Unchanged outside the write.
				for o := range n {
					if (o < off || o >= off+uint32(size)) && o != RegStatus && (o < pendLo || o >= pendLo+4) && before[o] != d.cfg[o] {
						t.Fatalf("write %#x/%d changed register %#x", off, size, o)
					}
				}
			case 2:
				d.Interrupt(int(val % 20))
			case 3:
				d.SetINTx(val&1 != 0)
			case 4:
				r.spaces.MMIO.Write(val&0xffffffff, size, 0, val)
				r.spaces.PIO.Write(val&0xffff, size, 0, val)
			case 5:
				_ = r.cfgRead(sbdf, off, size)
				_ = r.spaces.MMIO.Read(val&0xffffffff, size, 0)
			}
		}
		// Identity registers survive any script.
		if got := r.cfgRead(sbdf, 0, 4); got != 0x56781234 {
			t.Fatalf("id = %#x", got)
		}
		// A twin restored from the saved state reads the same.
		twin, _ := build()
		r2 := newRig(t)
		sbdf2, err := r2.bus.Add(twin, 5, 0)
		must(t, err)
		must(t, twin.Restore(d.Save()))
		for reg := uint32(0); reg < n; reg += 4 {
			if a, b := r.cfgRead(sbdf, reg, 4), r2.cfgRead(sbdf2, reg, 4); a != b {
				t.Fatalf("restored twin: config[%#x] = %#x, original %#x", reg, b, a)
			}
		}
		if a, b := r.spaces.MMIO.Ranges(), r2.spaces.MMIO.Ranges(); len(a) != len(b) {
			t.Fatalf("restored twin maps %d MMIO ranges, original %d", len(b), len(a))
		}
		d.Reset()
		must(t, r.bus.Remove(d))
	})
}
