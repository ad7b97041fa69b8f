package ide

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"godm/block"
	"godm/devices"
	"godm/internal/testfake"
	"godm/irq"
	"godm/memory"
)

// rig is a controller on a port space with flat guest memory and
// recorded interrupt lines.
type rig struct {
	t   testing.TB
	c   *Controller
	pio *devices.Space
	mem *memory.Flat
	irq [2]*testfake.Recorder
}

const ramSize = 4 << 20

func newRig(t testing.TB) *rig {
	t.Helper()
	r := &rig{t: t, pio: devices.NewSpace("pio"), mem: memory.NewFlat(0, ramSize)}
	r.irq[0], r.irq[1] = &testfake.Recorder{}, &testfake.Recorder{}
	c, err := New(Config{Memory: r.mem, IRQ: [2]irq.Line{r.irq[0], r.irq[1]}})
	if err != nil {
		t.Fatal(err)
	}
	r.c = c
	t.Cleanup(func() { c.Close() })
	for i := 0; ; i++ {
		base, size, h := c.Handler(i)
		if h == nil {
			break
		}
		if err := r.pio.Register(base, size, h); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// image makes a raw image of n sectors filled with a pattern and opens it.
func image(t testing.TB, n int, ro bool) (*block.Drive, []byte, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	data := make([]byte, n*512)
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := block.Open(path, block.Options{Format: "raw", ReadOnly: ro})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, data, path
}

func (r *rig) out(port uint64, size uint8, v uint64) { r.pio.Write(port, size, 0, v) }
func (r *rig) in(port uint64, size uint8) uint64     { return r.pio.Read(port, size, 0) }

// waitReady polls the alternate status until BSY clears (DMA and flush
// complete on the queue's worker).
func (r *rig) waitReady(ch int) uint8 {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := uint8(r.in(ctlPort[ch], 1))
		if st&stBUSY == 0 && (st&stDRQ == 0 || r.c.ch[ch].bm.pending == dmaNone && !r.jobBusy(ch)) {
			return st
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("channel %d: status %#x for 10 s", ch, st)
		}
		time.Sleep(time.Millisecond)
	}
}

func (r *rig) jobBusy(ch int) bool {
	c := &r.c.ch[ch]
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.jobs[0].busy || c.jobs[1].busy
}

func (r *rig) waitIdle(ch int) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.jobBusy(ch) {
		if time.Now().After(deadline) {
			r.t.Fatal("DMA job still busy after 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// lba28 programs the task file of channel ch for sector lba, count n.
func (r *rig) lba28(ch int, unit uint8, lba uint32, n uint8) {
	b := cmdBase[ch]
	r.out(b+6, 1, uint64(0xe0|unit<<4|uint8(lba>>24)&0xf))
	r.out(b+2, 1, uint64(n))
	r.out(b+3, 1, uint64(lba&0xff))
	r.out(b+4, 1, uint64(lba>>8&0xff))
	r.out(b+5, 1, uint64(lba>>16&0xff))
}

func (r *rig) readWords(ch int, n int) []byte {
	out := make([]byte, 0, n*2)
	for range n {
		out = binary.LittleEndian.AppendUint16(out, uint16(r.in(cmdBase[ch], 2)))
	}
	return out
}

func TestIdentifyHD(t *testing.T) {
	r := newRig(t)
	d, _, _ := image(t, 20480, false)
	if err := r.c.Attach(0, 0, DriveConfig{Kind: HD, Drive: d}); err != nil {
		t.Fatal(err)
	}
	// Signature after reset: 1, 1, 0, 0 for a disk.
	if got := []uint64{r.in(0x1f2, 1), r.in(0x1f3, 1), r.in(0x1f4, 1), r.in(0x1f5, 1)}; got[0] != 1 || got[1] != 1 || got[2] != 0 || got[3] != 0 {
		t.Errorf("signature %v", got)
	}
	r.out(0x1f6, 1, 0xa0)
	r.out(0x1f7, 1, cmdIdentify)
	if !r.irq[0].Level() {
		t.Error("IDENTIFY raised no interrupt")
	}
	if st := r.in(0x1f7, 1); st != stREADY|stSEEK|stDRQ {
		t.Errorf("status %#x, want DRDY|DSC|DRQ", st)
	}
	if r.irq[0].Level() {
		t.Error("status read did not lower the interrupt")
	}
	id := r.readWords(0, 256)
	if st := r.in(0x1f7, 1); st != stREADY|stSEEK {
		t.Errorf("status after the data %#x", st)
	}
	w := func(i int) uint16 { return binary.LittleEndian.Uint16(id[2*i:]) }
	if w(0) != 0x40 || w(60) != 20480 || w(61) != 0 || w(100) != 20480 || w(47) != 0x8010 {
		t.Errorf("identify words 0=%#x 60=%d 100=%d 47=%#x", w(0), w(60), w(100), w(47))
	}
	if w(1) != 20 || w(3) != 16 || w(6) != 63 {
		t.Errorf("geometry %d/%d/%d, want 20/16/63", w(1), w(3), w(6))
	}
	model := make([]byte, 40)
	for i := range 20 {
		model[2*i], model[2*i+1] = id[54+2*i+1], id[54+2*i]
	}
	if string(bytes.TrimRight(model, " ")) != "QEMU HARDDISK" {
		t.Errorf("model %q", model)
	}
	// The empty slave answers nothing.
	r.out(0x1f6, 1, 0xb0)
	if st := r.in(0x1f7, 1); st != 0 {
		t.Errorf("absent slave status %#x", st)
	}
	// No drive on channel 1 at all.
	if st := r.in(0x177, 1); st != 0 {
		t.Errorf("empty channel status %#x", st)
	}
}

func TestPIOReadWrite(t *testing.T) {
	r := newRig(t)
	d, data, _ := image(t, 4096, false)
	if err := r.c.Attach(0, 0, DriveConfig{Kind: HD, Drive: d}); err != nil {
		t.Fatal(err)
	}
	// READ SECTORS, 3 sectors from 100.
	r.lba28(0, 0, 100, 3)
	r.out(0x1f7, 1, cmdRead)
	got := make([]byte, 0, 3*512)
	for range 3 {
		if st := r.in(0x1f7, 1); st&stDRQ == 0 {
			t.Fatalf("no DRQ: %#x", st)
		}
		got = append(got, r.readWords(0, 256)...)
	}
	if !bytes.Equal(got, data[100*512:103*512]) {
		t.Error("PIO read returned other bytes")
	}
	if lba := r.in(0x1f3, 1) | r.in(0x1f4, 1)<<8 | r.in(0x1f5, 1)<<16; lba != 103 {
		t.Errorf("LBA after the read %d, want 103", lba)
	}
	// WRITE MULTIPLE (16 sectors per block, the default), 20 sectors at 7.
	pat := make([]byte, 20*512)
	for i := range pat {
		pat[i] = byte(i * 7)
	}
	r.lba28(0, 0, 7, 20)
	r.out(0x1f7, 1, cmdWriteMult)
	for off := 0; off < len(pat); off += 4 {
		if off%(16*512) == 0 {
			if st := r.in(0x3f6, 1); st&stDRQ == 0 {
				t.Fatalf("write block at %d: no DRQ (%#x)", off, st)
			}
		}
		r.out(0x1f0, 4, uint64(binary.LittleEndian.Uint32(pat[off:])))
	}
	if st := r.in(0x1f7, 1); st != stREADY|stSEEK {
		t.Errorf("status after write %#x", st)
	}
	back := make([]byte, len(pat))
	if err := d.ReadAt(back, 7*512); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, pat) {
		t.Error("the drive does not hold what PIO wrote")
	}
	// Out of range: ABRT.
	r.lba28(0, 0, 4096, 2)
	r.out(0x1f7, 1, cmdRead)
	if st, er := r.in(0x1f7, 1), r.in(0x1f1, 1); st != stREADY|stERR || er != errABRT {
		t.Errorf("read past the end: status %#x error %#x", st, er)
	}
}

// prdTable writes PRDs at addr: (buffer, length) pairs, EOT on the last.
func (r *rig) prdTable(addr uint32, ents ...[2]uint32) {
	for i, e := range ents {
		var b [8]byte
		binary.LittleEndian.PutUint32(b[0:], e[0])
		sz := e[1] & 0xffff
		if i == len(ents)-1 {
			sz |= prdEOT
		}
		binary.LittleEndian.PutUint32(b[4:], sz)
		if err := r.mem.Write(memory.GPA(addr)+memory.GPA(8*i), b[:]); err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *rig) bmBase(ch int) uint64 { return 0xc000 + 8*uint64(ch) }

// mapBAR places BAR4 at 0xc000 and enables I/O decoding.
func (r *rig) mapBAR(t testing.TB) {
	fn := r.c.Function()
	fn.Write(devices.Access{Offset: 0x20, Size: 4}, 0xc000)
	fn.Write(devices.Access{Offset: 0x04, Size: 2}, 0x5)
	// The function is not on a bus here: route the BAR by hand.
	if err := r.pio.Register(0xc000, 16, &r.c.bar); err != nil {
		t.Fatal(err)
	}
}

func TestDMAReadWrite(t *testing.T) {
	r := newRig(t)
	r.mapBAR(t)
	d, data, _ := image(t, 4096, false)
	if err := r.c.Attach(1, 1, DriveConfig{Kind: HD, Drive: d}); err != nil {
		t.Fatal(err)
	}
	const prd = 0x1000
	// 300 sectors (more than one 128 KiB chunk) into three buffers.
	r.prdTable(prd, [2]uint32{0x10000, 0x10000}, [2]uint32{0x30000, 0x8000}, [2]uint32{0x50000, 300*512 - 0x18000})
	bm := r.bmBase(1)
	r.out(bm+4, 4, prd)
	r.lba28(1, 1, 1000, 0) // 0 = 256 sectors; use EXT for 300
	r.out(0x176, 1, 0xf0)
	r.out(0x172, 1, 300>>8)
	r.out(0x172, 1, 300&0xff)
	r.out(0x173, 1, 0)
	r.out(0x173, 1, 1000&0xff)
	r.out(0x174, 1, 0)
	r.out(0x174, 1, 1000>>8)
	r.out(0x175, 1, 0)
	r.out(0x175, 1, 0)
	r.out(0x177, 1, cmdReadDMAExt)
	r.out(bm, 1, 0x09) // start, to memory
	r.waitIdle(1)
	if st := r.in(bm+2, 1); st != bmStInt {
		t.Errorf("bus-master status %#x, want INT only", st)
	}
	if st := r.in(0x177, 1); st != stREADY|stSEEK {
		t.Errorf("status %#x", st)
	}
	want := data[1000*512 : 1300*512]
	got := append(append(append([]byte{}, r.mem.Mem[0x10000:0x20000]...), r.mem.Mem[0x30000:0x38000]...), r.mem.Mem[0x50000:0x50000+300*512-0x18000]...)
	if !bytes.Equal(got, want) {
		t.Error("DMA read: guest memory differs from the disk")
	}
	r.out(bm, 1, 0x00)
	r.out(bm+2, 1, bmStInt) // clear INT
	// DMA write of 8 sectors from 0x70000.
	for i := range 8 * 512 {
		r.mem.Mem[0x70000+i] = byte(i * 13)
	}
	r.prdTable(prd, [2]uint32{0x70000, 8 * 512})
	r.lba28(1, 1, 10, 8)
	r.out(0x177, 1, cmdWriteDMA)
	r.out(bm, 1, 0x01)
	r.waitIdle(1)
	if !r.irq[1].Level() {
		t.Error("no interrupt after DMA write")
	}
	back := make([]byte, 8*512)
	if err := d.ReadAt(back, 10*512); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, r.mem.Mem[0x70000:0x70000+8*512]) {
		t.Error("DMA write: disk differs from guest memory")
	}
	// PRDs shorter than the transfer: no interrupt, active bit cleared.
	r.out(bm, 1, 0)
	r.in(0x177, 1)
	r.out(bm+2, 1, bmStInt)
	r.prdTable(prd, [2]uint32{0x70000, 512})
	r.lba28(1, 1, 10, 8)
	r.out(0x177, 1, cmdReadDMA)
	r.out(bm, 1, 0x09)
	r.waitIdle(1)
	if st := r.in(bm+2, 1); st&(bmStActive|bmStInt) != 0 {
		t.Errorf("short PRDs: bus-master status %#x", st)
	}
	if r.irq[1].Level() {
		t.Error("short PRDs raised the interrupt")
	}
	// A PRD table outside guest memory ends the command with ABRT.
	r.out(bm, 1, 0)
	r.out(bm+4, 4, ramSize+0x1000)
	r.lba28(1, 1, 10, 1)
	r.out(0x177, 1, cmdReadDMA)
	r.out(bm, 1, 0x09)
	if st, er := r.in(0x177, 1), r.in(0x171, 1); st != stREADY|stERR || er != errABRT {
		t.Errorf("PRD table outside RAM: status %#x error %#x", st, er)
	}
}

// packet sends an ATAPI packet by PIO with byte count limit bcl.
func (r *rig) packet(ch int, pkt []byte, bcl uint16, dma bool) {
	b := cmdBase[ch]
	feat := uint64(0)
	if dma {
		feat = 1
	}
	r.out(b+1, 1, feat)
	r.out(b+4, 1, uint64(bcl&0xff))
	r.out(b+5, 1, uint64(bcl>>8))
	r.out(b+7, 1, cmdPacket)
	var p [12]byte
	copy(p[:], pkt)
	for i := 0; i < 12; i += 2 {
		r.out(b, 2, uint64(binary.LittleEndian.Uint16(p[i:])))
	}
}

// readReply reads a PIO reply: every DRQ block, its size from the
// cylinder registers.
func (r *rig) readReply(ch int) []byte {
	b := cmdBase[ch]
	var out []byte
	for range 10000 {
		st := r.in(b+7, 1)
		if st&stDRQ == 0 {
			return out
		}
		n := int(r.in(b+4, 1) | r.in(b+5, 1)<<8)
		out = append(out, r.readWords(ch, (n+1)/2)...)
	}
	r.t.Fatal("reply does not end")
	return nil
}

func TestATAPI(t *testing.T) {
	r := newRig(t)
	r.mapBAR(t)
	iso, data, _ := image(t, 4*64, true) // 64 frames
	if err := r.c.Attach(1, 0, DriveConfig{Kind: CD, Drive: iso}); err != nil {
		t.Fatal(err)
	}
	if l, h := r.in(0x174, 1), r.in(0x175, 1); l != 0x14 || h != 0xeb {
		t.Errorf("ATAPI signature %#x %#x", l, h)
	}
	r.out(0x176, 1, 0xa0)
	r.out(0x177, 1, cmdIdentify)
	if st, er := r.in(0x177, 1), r.in(0x171, 1); st != stREADY|stERR || er != errABRT {
		t.Errorf("IDENTIFY on a CD: status %#x error %#x", st, er)
	}
	r.out(0x177, 1, cmdIdentifyPacket)
	id := r.readWords(1, 256)
	if w0 := binary.LittleEndian.Uint16(id); w0 != 0x85c0 {
		t.Errorf("IDENTIFY PACKET word 0 %#x", w0)
	}
	// TEST UNIT READY.
	r.packet(1, []byte{0x00}, 0, false)
	if st := r.in(0x177, 1); st != stREADY|stSEEK {
		t.Errorf("TUR status %#x", st)
	}
	// READ CAPACITY.
	r.packet(1, []byte{0x25}, 8, false)
	if rep := r.readReply(1); len(rep) != 8 || be32(rep) != 63 || be32(rep[4:]) != 2048 {
		t.Errorf("READ CAPACITY %x", rep)
	}
	// INQUIRY.
	r.packet(1, []byte{0x12, 0, 0, 0, 96}, 96, false)
	if rep := r.readReply(1); len(rep) != 36 || rep[0] != 5 || string(rep[16:28]) != "QEMU DVD-ROM" {
		t.Errorf("INQUIRY %q", rep)
	}
	// READ(10) of 3 frames at 5 by PIO, limit 4096 per block.
	r.packet(1, []byte{0x28, 0, 0, 0, 0, 5, 0, 0, 3}, 4096, false)
	if rep := r.readReply(1); !bytes.Equal(rep, data[5*2048:8*2048]) {
		t.Errorf("READ(10) by PIO: %d bytes, other data", len(rep))
	}
	// READ(12) of 2 frames at 60 by DMA.
	bm := r.bmBase(1)
	r.prdTable(0x2000, [2]uint32{0x80000, 4096})
	r.out(bm+4, 4, 0x2000)
	r.packet(1, []byte{0xa8, 0, 0, 0, 0, 60, 0, 0, 0, 2}, 0, true)
	r.out(bm, 1, 0x09)
	r.waitIdle(1)
	if st := r.in(0x177, 1); st != stREADY|stSEEK {
		t.Errorf("READ(12) DMA status %#x", st)
	}
	if !bytes.Equal(r.mem.Mem[0x80000:0x81000], data[60*2048:62*2048]) {
		t.Error("READ(12) by DMA: other data")
	}
	r.out(bm, 1, 0)
	// Out of range.
	r.packet(1, []byte{0x28, 0, 0, 0, 0, 63, 0, 0, 2}, 4096, false)
	if st, er := r.in(0x177, 1), r.in(0x171, 1); st != stREADY|stERR || er != senseIllegalRequest<<4 {
		t.Errorf("READ past the end: status %#x error %#x", st, er)
	}
	// READ TOC.
	r.packet(1, []byte{0x43, 0, 0, 0, 0, 0, 0, 0, 100}, 100, false)
	if rep := r.readReply(1); len(rep) != 20 || rep[6] != 1 || rep[14] != 0xaa || be32(rep[16:]) != 64 {
		t.Errorf("READ TOC %x", rep)
	}
	// Lock, eject refused; media change through the monitor.
	r.packet(1, []byte{0x1e, 0, 0, 0, 1}, 0, false)
	r.packet(1, []byte{0x1b, 0, 0, 0, 2}, 0, false)
	if er := r.in(0x171, 1); er != senseNotReady<<4 {
		t.Errorf("eject while locked: error %#x", er)
	}
	if _, err := r.c.OpenTray(1, 0, false); err != ErrLocked {
		t.Errorf("OpenTray while locked: %v", err)
	}
	old, err := r.c.OpenTray(1, 0, true)
	if err != nil || old != iso {
		t.Fatalf("forced OpenTray: %v %v", old, err)
	}
	r.packet(1, []byte{0x00}, 0, false)
	if er := r.in(0x171, 1); er != senseNotReady<<4 {
		t.Errorf("TUR with no medium: error %#x", er)
	}
	iso2, _, _ := image(t, 4*10, true)
	if err := r.c.InsertMedium(1, 0, iso2); err != nil {
		t.Fatal(err)
	}
	// NOT READY once, then UNIT ATTENTION, which stays (with MC) until
	// REQUEST SENSE reads it; then ready.
	for i, want := range []uint8{senseNotReady << 4, senseUnitAttention << 4, errMC | senseUnitAttention<<4} {
		r.packet(1, []byte{0x00}, 0, false)
		if er := r.in(0x171, 1); er != uint64(want) {
			t.Errorf("TUR %d after the change: error %#x, want %#x", i, er, want)
		}
	}
	r.packet(1, []byte{0x03, 0, 0, 0, 18}, 18, false)
	if rep := r.readReply(1); len(rep) != 18 || rep[2] != senseUnitAttention || rep[12] != ascMediumMayChanged {
		t.Errorf("REQUEST SENSE %x", rep)
	}
	r.packet(1, []byte{0x00}, 0, false)
	if st := r.in(0x177, 1); st != stREADY|stSEEK {
		t.Errorf("TUR after REQUEST SENSE: status %#x", st)
	}
	// GET EVENT STATUS NOTIFICATION: new media, once.
	r.packet(1, []byte{0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8}, 8, false)
	if rep := r.readReply(1); len(rep) != 8 || rep[4] != 2 || rep[5] != 2 {
		t.Errorf("GESN %x", rep)
	}
	r.packet(1, []byte{0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8}, 8, false)
	if rep := r.readReply(1); len(rep) != 8 || rep[4] != 0 {
		t.Errorf("second GESN %x", rep)
	}
}

func TestSoftReset(t *testing.T) {
	r := newRig(t)
	d, _, _ := image(t, 2048, false)
	if err := r.c.Attach(0, 0, DriveConfig{Kind: HD, Drive: d}); err != nil {
		t.Fatal(err)
	}
	r.lba28(0, 0, 1, 1)
	r.out(0x1f7, 1, cmdRead)
	r.out(0x3f6, 1, ctlSRST|ctlNIEN)
	r.out(0x3f6, 1, ctlNIEN)
	if st := r.in(0x1f7, 1); st != stREADY|stSEEK {
		t.Errorf("status after SRST %#x", st)
	}
	if n, s := r.in(0x1f2, 1), r.in(0x1f3, 1); n != 1 || s != 1 {
		t.Errorf("signature after SRST %d %d", n, s)
	}
	if r.irq[0].Level() {
		t.Error("interrupt with nIEN set")
	}
}

func TestSnapshotMidTransfer(t *testing.T) {
	r := newRig(t)
	d, data, _ := image(t, 256, false)
	if err := r.c.Attach(0, 0, DriveConfig{Kind: HD, Drive: d}); err != nil {
		t.Fatal(err)
	}
	r.lba28(0, 0, 9, 2)
	r.out(0x1f7, 1, cmdRead)
	first := r.readWords(0, 100)
	r.c.Pause()
	snap, err := r.c.Snapshot()
	r.c.Resume()
	if err != nil {
		t.Fatal(err)
	}
	r2 := newRig(t)
	if err := r2.c.Attach(0, 0, DriveConfig{Kind: HD, Drive: d}); err != nil {
		t.Fatal(err)
	}
	if err := r2.c.Restore(snap); err != nil {
		t.Fatal(err)
	}
	rest := r2.readWords(0, 156+256)
	if got := append(first, rest...); !bytes.Equal(got, data[9*512:11*512]) {
		t.Error("the restored controller continues with other data")
	}
	// Another layout is refused; a truncated record too.
	r3 := newRig(t)
	if err := r3.c.Restore(snap); err == nil {
		t.Error("a snapshot with a disk restored into a controller without one")
	}
	if err := r2.c.Restore(snap[:len(snap)/2]); err == nil {
		t.Error("a truncated snapshot was accepted")
	}
}

// TestSnapshotCarriesOnlyLiveBuffers: an idle controller's record
// leaves the four 128 KiB PIO buffers out; a version-1 record, which
// carried them always, still restores mid-transfer.
func TestSnapshotCarriesOnlyLiveBuffers(t *testing.T) {
	r := newRig(t)
	d, data, _ := image(t, 256, false)
	if err := r.c.Attach(0, 0, DriveConfig{Kind: HD, Drive: d}); err != nil {
		t.Fatal(err)
	}
	idle, err := r.c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(idle) > 8<<10 {
		t.Errorf("idle snapshot is %d bytes", len(idle))
	}
	r.lba28(0, 0, 9, 1)
	r.out(0x1f7, 1, cmdRead)
	first := r.readWords(0, 10)
	busy, err := r.c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(busy) < ioBufLen || len(busy) > ioBufLen+8<<10 {
		t.Errorf("a snapshot with one transfer pending is %d bytes, want one buffer's worth", len(busy))
	}
	v1, err := r.c.snapshot(1)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range [][]byte{busy, v1} {
		r2 := newRig(t)
		if err := r2.c.Attach(0, 0, DriveConfig{Kind: HD, Drive: d}); err != nil {
			t.Fatal(err)
		}
		if err := r2.c.Restore(rec); err != nil {
			t.Fatal(err)
		}
		if got := append(append([]byte(nil), first...), r2.readWords(0, 246)...); !bytes.Equal(got, data[9*512:10*512]) {
			t.Error("the restored controller continues with other data")
		}
	}
	// The idle record restores into a controller whose buffer held a
	// transfer's data, which it clears.
	if err := r.c.Restore(idle); err != nil {
		t.Fatal(err)
	}
	if st := r.in(0x1f7, 1); st&stDRQ != 0 {
		t.Errorf("status %#x after restoring an idle record", st)
	}
}

func TestDetachFlushes(t *testing.T) {
	r := newRig(t)
	d, _, _ := image(t, 64, false)
	if err := r.c.Attach(0, 1, DriveConfig{Kind: HD, Drive: d}); err != nil {
		t.Fatal(err)
	}
	got, err := r.c.Detach(0, 1)
	if err != nil || got != d {
		t.Fatalf("Detach: %v %v", got, err)
	}
	if k, _ := r.c.DriveAt(0, 1); k != None {
		t.Errorf("position still holds %v", k)
	}
	r.out(0x1f6, 1, 0xb0)
	if st := r.in(0x1f7, 1); st != 0 {
		t.Errorf("detached slave status %#x", st)
	}
}

// The ioreq path allocates nothing: register accesses, a PIO sector
// read and a PIO sector write.
func TestNoAllocs(t *testing.T) {
	r := newRig(t)
	d, _, _ := image(t, 64, false)
	if err := r.c.Attach(0, 0, DriveConfig{Kind: HD, Drive: d}); err != nil {
		t.Fatal(err)
	}
	r.lba28(0, 0, 0, 0) // 256 sectors
	if n := testing.AllocsPerRun(100, func() {
		r.lba28(0, 0, 2, 1)
		r.out(0x1f7, 1, cmdRead)
		for range 256 {
			r.in(0x1f0, 2)
		}
		r.in(0x1f7, 1)
		r.lba28(0, 0, 3, 1)
		r.out(0x1f7, 1, cmdWrite)
		for range 128 {
			r.out(0x1f0, 4, 0x12345678)
		}
		r.in(0x3f6, 1)
	}); n != 0 {
		t.Errorf("%v allocations per PIO read and write, want 0", n)
	}
	// A READ DMA of 8 sectors, command to completion (the queue's
	// worker included).
	r.mapBAR(t)
	r.prdTable(0x1000, [2]uint32{0x100000, 4096})
	r.out(0xc004, 4, 0x1000)
	if n := testing.AllocsPerRun(100, func() {
		r.lba28(0, 0, 8, 8)
		r.out(0x1f7, 1, cmdReadDMA)
		r.out(0xc000, 1, 0x09)
		for r.in(0xc002, 1)&bmStInt == 0 {
		}
		r.out(0xc000, 1, 0)
		r.out(0xc002, 1, bmStInt)
		r.in(0x1f7, 1)
	}); n != 0 {
		t.Errorf("%v allocations per READ DMA, want 0", n)
	}
}

// BenchmarkDMARead is one READ DMA of 256 sectors (128 KiB) from a raw
// image in the page cache into guest memory, command to completion
// (SetBytes: MB/s), the guest polling the bus-master status.
func BenchmarkDMARead(b *testing.B) {
	r := newRig(b)
	r.mapBAR(b)
	d, _, _ := image(b, 4096, false)
	if err := r.c.Attach(0, 0, DriveConfig{Kind: HD, Drive: d}); err != nil {
		b.Fatal(err)
	}
	r.prdTable(0x1000, [2]uint32{0x100000, 0}, [2]uint32{0x110000, 0})
	r.out(0xc004, 4, 0x1000)
	b.SetBytes(256 * 512)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.lba28(0, 0, uint32(i%16)*256, 0)
		r.out(0x1f7, 1, cmdReadDMA)
		r.out(0xc000, 1, 0x09)
		for r.in(0xc002, 1)&bmStInt == 0 {
		}
		r.out(0xc000, 1, 0)
		r.out(0xc002, 1, bmStInt)
		r.in(0x1f7, 1)
	}
}

// TRIM (DATA SET MANAGEMENT by DMA): with Discard the ranges read back
// as zeros (a raw image punches holes); a range past the end is ABRT.
func TestTrim(t *testing.T) {
	r := newRig(t)
	r.mapBAR(t)
	d, data, _ := image(t, 256, false)
	if err := r.c.Attach(0, 0, DriveConfig{Kind: HD, Drive: d, Discard: true}); err != nil {
		t.Fatal(err)
	}
	ranges := make([]byte, 512)
	binary.LittleEndian.PutUint64(ranges, 16<<48|8) // sectors 8..23
	copy(r.mem.Mem[0x20000:], ranges)
	r.prdTable(0x1000, [2]uint32{0x20000, 512})
	r.out(0xc004, 4, 0x1000)
	r.out(0x1f1, 1, 0x01)
	r.lba28(0, 0, 0, 1)
	r.out(0x1f7, 1, cmdDSM)
	r.out(0xc000, 1, 0x01)
	r.waitIdle(0)
	if st := r.in(0x1f7, 1); st != stREADY|stSEEK {
		t.Errorf("TRIM status %#x", st)
	}
	back := make([]byte, 24*512)
	if err := d.ReadAt(back, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back[:8*512], data[:8*512]) || !bytes.Equal(back[8*512:], make([]byte, 16*512)) {
		t.Error("TRIM did not zero exactly sectors 8..23")
	}
	r.out(0xc000, 1, 0)
	binary.LittleEndian.PutUint64(r.mem.Mem[0x20000:], 8<<48|250)
	r.out(0x1f1, 1, 0x01)
	r.lba28(0, 0, 0, 1)
	r.out(0x1f7, 1, cmdDSM)
	r.out(0xc000, 1, 0x01)
	r.waitIdle(0)
	if st, er := r.in(0x1f7, 1), r.in(0x1f1, 1); st != stREADY|stERR || er != errABRT {
		t.Errorf("TRIM past the end: status %#x error %#x", st, er)
	}
}
