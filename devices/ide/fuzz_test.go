package ide

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"godm/block"
)

// fuzzImages are the image files every rig of one fuzz target opens,
// written once per fuzzing process: writing (and removing) them for every
// input made that most of an execution's time, enough to bring the smoke
// run's 20000 executions near its -timeout on a loaded machine. A guest's
// writes to the disk carry over to later inputs; no check reads them.
type fuzzImages struct{ hd, cd string }

func newFuzzImages(f *testing.F) fuzzImages {
	dir := f.TempDir()
	write := func(name string, n int) string {
		p := filepath.Join(dir, name)
		data := make([]byte, n*512)
		for i := range data {
			data[i] = byte(i*7 + i>>9)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			f.Fatal(err)
		}
		return p
	}
	return fuzzImages{hd: write("hd.img", 300), cd: write("cd.iso", 4*8)}
}

// fuzzRig is a controller with a hard disk at 0.0, a CD-ROM at 0.1 and
// 1.0, BAR4 at 0xc000 and 4 MiB of guest memory.
func fuzzRig(t testing.TB, im fuzzImages) *rig {
	r := newRig(t)
	r.mapBAR(t)
	open := func(p string, ro bool) *block.Drive {
		// NoLock: FuzzRestore's seed rig keeps the disk open beside
		// the per-input rigs.
		d, err := block.Open(p, block.Options{Format: "raw", ReadOnly: ro, NoLock: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	hd, cd := open(im.hd, false), open(im.cd, true)
	for _, a := range []struct {
		bus, unit int
		dc        DriveConfig
	}{{0, 0, DriveConfig{Kind: HD, Drive: hd}}, {0, 1, DriveConfig{Kind: CD, Drive: cd}}, {1, 0, DriveConfig{Kind: CD}}} {
		if err := r.c.Attach(a.bus, a.unit, a.dc); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// checkInvariants holds after every step whatever the guest did.
func (r *rig) checkInvariants(t *testing.T) {
	for i := range r.c.ch {
		// The lock is let go before any Fatal: a test that ends holding
		// it would hang the rig's Close instead of reporting.
		if err := r.channelInvariants(i); err != "" {
			t.Fatal(err)
		}
	}
}

func (r *rig) channelInvariants(i int) string {
	ch := &r.c.ch[i]
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for n := range ch.u {
		u := &ch.u[n]
		if u.dataPtr < 0 || u.dataPtr > u.dataEnd || u.dataEnd > len(u.buf) {
			return fmt.Sprintf("channel %d unit %d: PIO window [%d, %d) of %d", i, n, u.dataPtr, u.dataEnd, len(u.buf))
		}
		if u.bufIndex < 0 || u.bufIndex > len(u.buf) {
			return fmt.Sprintf("channel %d unit %d: ATAPI index %d", i, n, u.bufIndex)
		}
	}
	if ch.level != r.irq[i].Level() {
		return fmt.Sprintf("channel %d: line %v, recorder %v", i, ch.level, r.irq[i].Level())
	}
	return ""
}

// ports the script addresses: both command blocks, both control
// registers and the bus-master BAR.
var fuzzPorts = []uint64{0x1f0, 0x1f1, 0x1f2, 0x1f3, 0x1f4, 0x1f5, 0x1f6, 0x1f7, 0x3f6,
	0x170, 0x171, 0x172, 0x173, 0x174, 0x175, 0x176, 0x177, 0x376,
	0xc000, 0xc002, 0xc004, 0xc008, 0xc00a, 0xc00c}

// runScript interprets script as 4-byte steps: op (bit 0 write, bits 1-2
// size 1/2/4), port index, value (2 bytes, repeated).
func (r *rig) runScript(t *testing.T, script []byte) {
	for len(script) >= 4 {
		op, p, v := script[0], fuzzPorts[int(script[1])%len(fuzzPorts)], uint64(binary.LittleEndian.Uint16(script[2:]))
		script = script[4:]
		size := []uint8{1, 2, 4, 1}[op>>1&3]
		if op&1 != 0 {
			r.out(p, size, v|v<<16)
		} else {
			r.in(p, size)
		}
		r.checkInvariants(t)
	}
	r.c.Pause() // every DMA job ends
	r.c.Resume()
	r.checkInvariants(t)
}

func taskfileSeeds() [][]byte {
	w := func(port int, v uint16) []byte { return []byte{1, byte(port), byte(v), byte(v >> 8)} }
	r16 := func(port int) []byte { return []byte{2, byte(port), 0, 0} }
	var pio, dma, atapi []byte
	for _, s := range [][]byte{w(6, 0xe0), w(2, 2), w(3, 5), w(7, cmdRead)} {
		pio = append(pio, s...)
	}
	for range 300 {
		pio = append(pio, r16(0)...)
	}
	for _, s := range [][]byte{w(20, 0x100), w(6, 0xe0), w(2, 1), w(7, cmdReadDMA), w(18, 9)} {
		dma = append(dma, s...)
	}
	for _, s := range [][]byte{w(6, 0xf0), w(4, 0), w(5, 8), w(7, cmdPacket), {3, 0, 0x25, 0}, {3, 0, 0, 0}, {3, 0, 0, 0},
		{3, 0, 0, 0}, {3, 0, 0, 0}, {3, 0, 0, 0}} {
		atapi = append(atapi, s...)
	}
	for range 8 {
		atapi = append(atapi, r16(0)...)
	}
	return [][]byte{pio, dma, atapi, append(w(8, ctlSRST), w(8, 0)...)}
}

// FuzzTaskfile drives both channels through their ports and the
// bus-master registers: any sequence leaves the PIO windows inside the
// buffer, the lines at the channels' levels, and every DMA finished once
// the controller is paused.
func FuzzTaskfile(f *testing.F) {
	for _, s := range taskfileSeeds() {
		f.Add(s)
	}
	im := newFuzzImages(f)
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) > 4*2000 {
			return
		}
		r := fuzzRig(t, im)
		r.runScript(t, script)
	})
}

// FuzzPRD gives the DMA engine a guest-written PRD table (and a start
// address inside it) for a READ DMA and a WRITE DMA of up to 255
// sectors: the walk stays bounded, writes land only in RAM, and the
// command ends (interrupt, short-PRD silence or ABRT).
func FuzzPRD(f *testing.F) {
	var seed [64]byte
	binary.LittleEndian.PutUint32(seed[0:], 0x10000)
	binary.LittleEndian.PutUint32(seed[4:], 0x80000000|4096)
	f.Add(seed[:], uint8(8), uint16(0))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0}, uint8(255), uint16(4))
	im := newFuzzImages(f)
	f.Fuzz(func(t *testing.T, table []byte, n uint8, start uint16) {
		if len(table) > prdPage+64 {
			return
		}
		r := fuzzRig(t, im)
		copy(r.mem.Mem[0x1000:], table)
		for _, cmd := range []uint8{cmdReadDMA, cmdWriteDMA} {
			r.out(0xc004, 4, uint64(0x1000+uint32(start)&^3))
			r.lba28(0, 0, 0, n)
			r.out(0x1f7, 1, uint64(cmd))
			r.out(0xc000, 1, 0x09)
			r.c.Pause()
			r.c.Resume()
			r.checkInvariants(t)
			if st := r.in(0x1f7, 1); st&stBUSY != 0 {
				t.Fatalf("command %#x: BSY after the DMA ended (%#x)", cmd, st)
			}
			r.out(0xc000, 1, 0)
			r.out(0xc002, 1, 0x06)
		}
	})
}

// FuzzATAPIPacket sends any 12-byte packet with any byte count limit by
// PIO and by DMA to a CD-ROM drive with a medium and to an empty one:
// replies never exceed the buffer, the drive always comes back to a
// state where DEVICE RESET and a new command work.
func FuzzATAPIPacket(f *testing.F) {
	for _, p := range [][]byte{{0x12, 0, 0, 0, 36}, {0x28, 0, 0, 0, 0, 1, 0, 0, 2}, {0x43, 2, 0, 0, 0, 0, 0, 0x03, 0x24, 0x80},
		{0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8}, {0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 30}, {0xbe, 0, 0, 0, 0, 2, 0, 0, 1, 0xf8}, {0x46, 0, 0, 0, 0, 0, 0, 0, 32}} {
		var pk [12]byte
		copy(pk[:], p)
		f.Add(pk[:], uint16(2048), false)
		f.Add(pk[:], uint16(0), true)
	}
	im := newFuzzImages(f)
	f.Fuzz(func(t *testing.T, pkt []byte, bcl uint16, dma bool) {
		if len(pkt) < 12 {
			return
		}
		r := fuzzRig(t, im)
		r.prdTable(0x2000, [2]uint32{0x80000, 0})
		r.out(0xc00c, 4, 0x2000)
		r.out(0xc004, 4, 0x2000)
		for _, ch := range []int{0, 1} {
			b := cmdBase[ch]
			r.out(b+6, 1, uint64(0xa0|(1-ch)<<4))
			r.packet(ch, pkt[:12], bcl, dma)
			if dma {
				r.out(r.bmBase(ch), 1, 0x09)
			}
			for i := 0; i < 4*ioBufLen && r.in(ctlPort[ch], 1)&stDRQ != 0 && !dma; i++ {
				r.in(b, 2)
			}
			r.c.Pause()
			r.c.Resume()
			r.checkInvariants(t)
			r.out(r.bmBase(ch), 1, 0)
			// Whatever happened (an odd-length PIO reply cannot be
			// read to its end with word accesses, in QEMU as here),
			// DEVICE RESET and then TEST UNIT READY get an answer.
			r.out(b+7, 1, cmdDeviceReset)
			r.packet(ch, []byte{0}, 0, false)
			if st := r.in(b+7, 1); st&(stBUSY|stDRQ) != 0 {
				t.Fatalf("channel %d: TUR after the packet left status %#x", ch, st)
			}
		}
	})
}

// FuzzRestore feeds any record to Restore: an error or a restored
// controller that keeps its invariants, never a panic.
func FuzzRestore(f *testing.F) {
	im := newFuzzImages(f)
	r := fuzzRig(f, im)
	snap, _ := r.c.Snapshot()
	f.Add(snap)
	f.Fuzz(func(t *testing.T, rec []byte) {
		r := fuzzRig(t, im)
		if r.c.Restore(rec) == nil {
			r.checkInvariants(t)
			r.runScript(t, taskfileSeeds()[0])
		}
	})
}
