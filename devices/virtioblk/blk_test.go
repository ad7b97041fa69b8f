package virtioblk

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"godm/block"
	"godm/devices"
	"godm/devices/virtio"
	"godm/memory"
)

const (
	ringBase = 0x10000 // legacy PFN 0x10: desc 0x10000, avail 0x11000, used 0x12000
	availAt  = 0x11000
	usedAt   = 0x12000
	bufBase  = 0x100000
	memSize  = 8 << 20
	diskSize = 1 << 20
)

type rig struct {
	t     *testing.T
	mem   []byte
	mc    *memory.MapCache
	d     *Device
	leg   devices.Handler
	mod   devices.Handler
	path  string
	drv   *block.Drive
	avail uint16
	nextD uint16
	ar    *memory.Region
	ur    *memory.Region
}

func newRig(t testing.TB, ro bool) *rig {
	t.Helper()
	mem := make([]byte, memSize)
	mc, err := memory.NewMapCache(memory.FromBytes(mem), memory.MapCacheConfig{BucketShift: 16})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "disk.img")
	img := make([]byte, diskSize)
	for i := range img {
		img[i] = byte(i / 512)
	}
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	drv, err := block.Open(path, block.Options{Format: "raw", ReadOnly: ro})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{Memory: mc, Drive: drv, Serial: "SERIAL-0123", Discard: true})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{mem: mem, mc: mc, d: d, leg: d.Transport().LegacyRegs(), mod: d.Transport().ModernRegs(), path: path, drv: drv}
	if tt, ok := t.(*testing.T); ok {
		r.t = tt
	}
	t.Cleanup(func() {
		d.Close()
		drv.Close()
		if r.ar != nil {
			r.ar.Release()
			r.ur.Release()
		}
		mc.Close()
	})
	r.ar, err = mc.Pin(availAt, 0x1000)
	if err != nil {
		t.Fatal(err)
	}
	r.ur, err = mc.Pin(usedAt, 0x1000)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) out(off uint64, size uint8, v uint64) {
	r.leg.Write(devices.Access{Offset: off, Size: size}, v)
}
func (r *rig) in(off uint64, size uint8) uint64 {
	return r.leg.Read(devices.Access{Offset: off, Size: size})
}

// legacy brings the device up through the legacy registers.
func (r *rig) legacy(features uint32) {
	r.out(18, 1, 1)
	r.out(18, 1, 3)
	r.out(4, 4, uint64(features))
	r.out(14, 2, 0)
	r.out(8, 4, ringBase>>12)
	r.out(18, 1, 7)
}

func (r *rig) put(addr uint64, p []byte) {
	if err := r.mc.Write(memory.GPA(addr), p); err != nil {
		panic(err)
	}
}

func (r *rig) get(addr uint64, n int) []byte {
	p := make([]byte, n)
	if err := r.mc.Read(memory.GPA(addr), p); err != nil {
		panic(err)
	}
	return p
}

// desc writes descriptor i.
func (r *rig) desc(base uint64, i uint16, addr uint64, l uint32, flags, next uint16) {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[0:], addr)
	binary.LittleEndian.PutUint32(b[8:], l)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
	r.put(base+16*uint64(i), b[:])
}

type seg struct {
	addr  uint64
	l     uint32
	write bool
}

// chain writes a chain of segs from the next free descriptors and makes
// it available (no kick); returns its head.
func (r *rig) chain(segs ...seg) uint16 {
	head := r.nextD
	for i, s := range segs {
		idx := (head + uint16(i)) % QueueSize
		var f uint16
		if s.write {
			f |= 2
		}
		if i < len(segs)-1 {
			f |= 1
		}
		r.desc(ringBase, idx, s.addr, s.l, f, (idx+1)%QueueSize)
	}
	r.nextD = (head + uint16(len(segs))) % QueueSize
	r.publish(head)
	return head
}

func (r *rig) publish(head uint16) {
	if err := r.ar.Store16(4+2*int(r.avail%QueueSize), head); err != nil {
		panic(err)
	}
	r.avail++
	if err := r.ar.Store16(2, r.avail); err != nil {
		panic(err)
	}
}

func (r *rig) kick() { r.out(16, 2, 0) }

// waitUsed waits until the used index reaches n.
func (r *rig) waitUsed(n uint16) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := r.ur.Load16(2)
		if err != nil {
			panic(err)
		}
		if v == n {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("used index %d, want %d", v, n)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

func (r *rig) used(i uint16) (id, l uint32) {
	b := r.get(usedAt+4+8*uint64(i%QueueSize), 8)
	return binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
}

func hdr(typ uint32, sector uint64) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint32(b, typ)
	binary.LittleEndian.PutUint64(b[8:], sector)
	return b
}

// rq runs one request of three parts at fixed addresses: header at
// bufBase, data at bufBase+0x1000, status at bufBase+0x800; it returns
// the status and used length.
func (r *rig) rq(typ uint32, sector uint64, data []byte, write bool) (byte, uint32) {
	r.t.Helper()
	r.put(bufBase, hdr(typ, sector))
	r.put(bufBase+0x800, []byte{0xee})
	segs := []seg{{bufBase, 16, false}}
	if len(data) > 0 {
		r.put(bufBase+0x1000, data)
		segs = append(segs, seg{bufBase + 0x1000, uint32(len(data)), !write})
	}
	segs = append(segs, seg{bufBase + 0x800, 1, true})
	r.chain(segs...)
	r.kick()
	r.waitUsed(r.avail)
	_, l := r.used(r.avail - 1)
	return r.get(bufBase+0x800, 1)[0], l
}

func TestIdentityAndConfig(t *testing.T) {
	r := newRig(t, false)
	fn := r.d.Function()
	if v := fn.ConfigRead(0, 4); v != 0x10011af4 {
		t.Errorf("id %#x", v)
	}
	if v := fn.ConfigRead(0x2c, 4); v != 0x00021af4 {
		t.Errorf("subsystem %#x", v)
	}
	// QEMU 7.2's capability chain: 0x98 MSI-X, 0x84 PCI cfg, 0x70
	// notify, 0x60 device, 0x50 ISR, 0x40 common.
	ids, offs := fn.Capabilities()
	if want := []uint8{0x98, 0x84, 0x70, 0x60, 0x50, 0x40}; !bytes.Equal(offs, want) {
		t.Errorf("capabilities at %#x (ids %#x), want %#x", offs, ids, want)
	}
	if v := fn.ConfigRead(0x70, 4); v != 0x2146009 {
		t.Errorf("notify cap %#x", v)
	}
	if v := r.in(0, 4); v != 0x79006e54 {
		t.Errorf("legacy host features %#x, want QEMU's 0x79006e54", v)
	}
	// Device configuration at 20 without MSI-X: capacity, seg_max,
	// geometry, blk_size, wce, num_queues, discard/write-zeroes limits.
	if v := r.in(20, 4); v != diskSize/512 {
		t.Errorf("capacity %#x", v)
	}
	if v := r.in(32, 4); v != 254 {
		t.Errorf("seg_max %d", v)
	}
	if v := r.in(40, 4); v != 512 {
		t.Errorf("blk_size %d", v)
	}
	if v := r.in(20+56, 1); v != 1 {
		t.Errorf("write_zeroes_may_unmap %d", v)
	}
	if v := r.in(20+57, 1); v != 0xff {
		t.Errorf("beyond config %#x", v)
	}
	// Unaligned reads split as QEMU's memory core does.
	if v := r.in(3, 4); v != 0xff0000ff {
		t.Errorf("inl at 3 = %#x, want 0xff0000ff", v)
	}
	if v := r.in(12, 2); v != QueueSize {
		t.Errorf("queue num %d", v)
	}
	// Modern: features 0 and 1.
	mod := func(off uint64, size uint8) uint64 { return r.mod.Read(devices.Access{Offset: off, Size: size}) }
	r.mod.Write(devices.Access{Offset: 0, Size: 4}, 1)
	if v := mod(4, 4); v != 0x101 {
		t.Errorf("modern features[1] %#x, want VERSION_1|RING_RESET", v)
	}
	r.mod.Write(devices.Access{Offset: 0, Size: 4}, 0)
	if v := mod(4, 4); v != 0x30006e54 {
		t.Errorf("modern features[0] %#x", v)
	}
	if v := mod(0x12, 2); v != 1 {
		t.Errorf("num_queues %d", v)
	}
	if v := mod(0x2000, 8); v != diskSize/512 {
		t.Errorf("modern capacity %#x", v)
	}
}

func TestLegacyReadWrite(t *testing.T) {
	r := newRig(t, false)
	r.legacy(0x79006e54 &^ (1 << 29))
	pat := make([]byte, 8192)
	for i := range pat {
		pat[i] = byte(i*7 + 3)
	}
	if st, l := r.rq(tOut, 10, pat, true); st != sOK || l != 1 {
		t.Fatalf("write: status %d len %d", st, l)
	}
	r.put(bufBase+0x1000, make([]byte, len(pat)))
	if st, l := r.rq(tIn, 10, make([]byte, len(pat)), false); st != sOK || l != uint32(len(pat))+1 {
		t.Fatalf("read: status %d len %d", st, l)
	}
	if got := r.get(bufBase+0x1000, len(pat)); !bytes.Equal(got, pat) {
		t.Error("read back differs")
	}
	if st, _ := r.rq(tFlush, 0, nil, false); st != sOK {
		t.Errorf("flush status %d", st)
	}
	img, _ := os.ReadFile(r.path)
	if !bytes.Equal(img[10*512:10*512+len(pat)], pat) {
		t.Error("image lacks the write")
	}
	// GET_ID: the serial, NUL-terminated as it is shorter than 20.
	if st, _ := r.rq(tGetID, 0, make([]byte, 20), false); st != sOK {
		t.Errorf("get id status %d", st)
	}
	if got := r.get(bufBase+0x1000, 20); !bytes.Equal(got[:12], []byte("SERIAL-0123\x00")) {
		t.Errorf("get id %q", got)
	}
	// Out of range, unaligned size, unknown type.
	if st, _ := r.rq(tIn, diskSize/512-1, make([]byte, 1024), false); st != sIOErr {
		t.Errorf("read past the end: status %d", st)
	}
	if st, _ := r.rq(tOut, 0, make([]byte, 100), true); st != sIOErr {
		t.Errorf("partial sector: status %d", st)
	}
	if st, _ := r.rq(2, 0, nil, false); st != sIOErr {
		t.Errorf("SCSI without its headers: status %d", st)
	}
	// Write zeroes with unmap, then discard; flags checked.
	dwz := func(sec uint64, n, flags uint32) []byte {
		b := make([]byte, 16)
		binary.LittleEndian.PutUint64(b, sec)
		binary.LittleEndian.PutUint32(b[8:], n)
		binary.LittleEndian.PutUint32(b[12:], flags)
		return b
	}
	if st, _ := r.rq(tWriteZeroes, 0, dwz(10, 16, 1), true); st != sOK {
		t.Errorf("write zeroes: status %d", st)
	}
	img, _ = os.ReadFile(r.path)
	if !bytes.Equal(img[10*512:26*512], make([]byte, 16*512)) {
		t.Error("write zeroes left data")
	}
	if st, _ := r.rq(tWriteZeroes, 0, dwz(10, 16, 2), true); st != sUnsupp {
		t.Errorf("write zeroes with bad flags: status %d", st)
	}
	if st, _ := r.rq(tDiscard, 0, dwz(0, 8, 0), true); st != sOK {
		t.Errorf("discard: status %d", st)
	}
	if st, _ := r.rq(tDiscard, 0, dwz(diskSize/512, 8, 0), true); st != sIOErr {
		t.Errorf("discard past the end: status %d", st)
	}
	// INTx through the ISR: bit 0 set, cleared by the read.
	if v := r.in(19, 1); v&1 == 0 {
		t.Errorf("ISR %#x after completions", v)
	}
	if v := r.in(19, 1); v != 0 {
		t.Errorf("ISR %#x after reading it", v)
	}
}

func TestReadOnlyDrive(t *testing.T) {
	r := newRig(t, true)
	if v := r.in(0, 4); v&fRO == 0 {
		t.Errorf("features %#x lack RO", v)
	}
	r.legacy(0)
	if st, _ := r.rq(tOut, 0, make([]byte, 512), true); st != sIOErr {
		t.Errorf("write to a read-only drive: status %d", st)
	}
	if st, _ := r.rq(tIn, 1, make([]byte, 512), false); st != sOK {
		t.Errorf("read: status %d", st)
	}
	if got := r.get(bufBase+0x1000, 512); got[0] != 1 {
		t.Errorf("read sector 1 = %d", got[0])
	}
}

func TestIndirectAndManyInFlight(t *testing.T) {
	r := newRig(t, false)
	r.legacy(1 << 28)
	// One indirect request: header, two data segments, status.
	tbl := uint64(bufBase + 0x40000)
	r.put(bufBase, hdr(tIn, 3))
	r.desc(tbl, 0, bufBase, 16, 1, 1)
	r.desc(tbl, 1, bufBase+0x1000, 256, 3, 2)
	r.desc(tbl, 2, bufBase+0x2000, 256, 3, 3)
	r.desc(tbl, 3, bufBase+0x800, 1, 2, 0)
	r.desc(ringBase, 0, tbl, 64, 4, 0)
	r.nextD = 1
	r.publish(0)
	r.kick()
	r.waitUsed(1)
	if st := r.get(bufBase+0x800, 1)[0]; st != sOK {
		t.Fatalf("indirect read status %d", st)
	}
	if a, b := r.get(bufBase+0x1000, 1)[0], r.get(bufBase+0x2000, 1)[0]; a != 3 || b != 3 {
		t.Errorf("indirect read data %d %d", a, b)
	}
	// 100 reads at once: more than the slots, all complete.
	const n = 80 // 240 descriptors: the table holds 256
	for i := range n {
		a := uint64(bufBase + 0x100000 + i*0x2000)
		r.put(a, hdr(tIn, uint64(i)))
		r.chain(seg{a, 16, false}, seg{a + 0x1000, 512, true}, seg{a + 0x800, 1, true})
	}
	r.kick()
	r.waitUsed(1 + n)
	for i := range n {
		a := uint64(bufBase + 0x100000 + i*0x2000)
		if st, d := r.get(a+0x800, 1)[0], r.get(a+0x1000, 1)[0]; st != sOK || d != byte(i) {
			t.Fatalf("request %d: status %d data %d", i, st, d)
		}
	}
}

func TestMalformedChainsBreakTheDevice(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(r *rig)
	}{
		{"loop", func(r *rig) { r.desc(ringBase, 0, bufBase, 16, 1, 1); r.desc(ringBase, 1, bufBase, 16, 1, 0) }},
		{"head beyond", func(r *rig) { r.publish(300) }},
		{"nested indirect", func(r *rig) {
			r.desc(bufBase+0x40000, 0, bufBase+0x40000, 16, 4, 0)
			r.desc(ringBase, 0, bufBase+0x40000, 16, 4, 0)
		}},
		{"indirect loop", func(r *rig) {
			r.desc(bufBase+0x40000, 0, bufBase, 16, 1, 1)
			r.desc(bufBase+0x40000, 1, bufBase, 16, 1, 0)
			r.desc(ringBase, 0, bufBase+0x40000, 32, 4, 0)
		}},
		{"read after write", func(r *rig) {
			r.desc(ringBase, 0, bufBase+0x800, 1, 3, 1)
			r.desc(ringBase, 1, bufBase, 16, 0, 0)
		}},
		{"no status", func(r *rig) { r.desc(ringBase, 0, bufBase, 16, 0, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, false)
			r.t = t
			// Modern negotiation so that NEEDS_RESET shows.
			w := func(off uint64, size uint8, v uint64) { r.mod.Write(devices.Access{Offset: off, Size: size}, v) }
			w(0x14, 1, 3)
			w(0x08, 4, 1)
			w(0x0c, 4, 1)
			w(0x08, 4, 0)
			w(0x0c, 4, 1<<28)
			w(0x14, 1, 0xb)
			w(0x16, 2, 0)
			w(0x20, 4, ringBase)
			w(0x28, 4, availAt)
			w(0x30, 4, usedAt)
			w(0x1c, 2, 1)
			w(0x14, 1, 0xf)
			tc.set(r)
			if r.avail == 0 {
				r.publish(0)
			}
			w(0x3000, 2, 0)
			if st := r.mod.Read(devices.Access{Offset: 0x14, Size: 1}); st&virtio.StatusNeedsReset == 0 {
				t.Errorf("status %#x lacks NEEDS_RESET", st)
			}
			if !r.d.Transport().Broken() {
				t.Error("not broken")
			}
			w(0x14, 1, 0)
			if r.d.Transport().Broken() || r.mod.Read(devices.Access{Offset: 0x14, Size: 1}) != 0 {
				t.Error("reset did not clear the failure")
			}
		})
	}
}

func TestEventIdxSuppressesInterrupts(t *testing.T) {
	r := newRig(t, false)
	r.legacy(1 << 29)
	// used_event = 5: no interrupt before the 6th completion.
	if err := r.ar.Store16(4+2*QueueSize, 5); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if st, _ := r.rq(tIn, uint64(i), make([]byte, 512), false); st != sOK {
			t.Fatal(st)
		}
		if v := r.in(19, 1); v != 0 {
			t.Fatalf("interrupt after completion %d", i+1)
		}
	}
	r.rq(tIn, 0, make([]byte, 512), false)
	if v := r.in(19, 1); v != 1 {
		t.Errorf("no interrupt at used_event")
	}
	// avail_event follows what the device took.
	if v, _ := r.ur.Load16(4 + 8*QueueSize); v != 6 {
		t.Errorf("avail_event %d, want 6", v)
	}
}

func TestRequestNoAlloc(t *testing.T) {
	r := newRig(t, false)
	r.legacy(0)
	r.rq(tIn, 0, make([]byte, 4096), false) // warms the slot's buffer
	r.rq(tIn, 0, make([]byte, 4096), false)
	// The chain's descriptors are written once; each run makes it
	// available again and kicks.
	r.nextD = 0
	head := r.chain(seg{bufBase, 16, false}, seg{bufBase + 0x1000, 4096, true}, seg{bufBase + 0x800, 1, true})
	r.kick()
	r.waitUsed(r.avail)
	allocs := testing.AllocsPerRun(200, func() {
		r.publish(head)
		r.kick()
		for {
			if v, _ := r.ur.Load16(2); v == r.avail {
				break
			}
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per request", allocs)
	}
}

// BenchmarkRead4KDepth1 is one 4 KiB read through the legacy kick, the
// block queue and the used ring, polled to completion.
func BenchmarkRead4KDepth1(b *testing.B) {
	r := newRig(b, false)
	r.t = &testing.T{}
	r.legacy(0)
	r.nextD = 0
	head := r.chain(seg{bufBase, 16, false}, seg{bufBase + 0x1000, 4096, true}, seg{bufBase + 0x800, 1, true})
	r.kick()
	r.waitUsed(r.avail)
	b.ReportAllocs()
	for b.Loop() {
		r.publish(head)
		r.kick()
		for {
			if v, _ := r.ur.Load16(2); v == r.avail {
				break
			}
		}
	}
}
