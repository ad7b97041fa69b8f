package virtionet

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"godm/devices"
	"godm/devices/nic"
	"godm/devices/virtio"
	"godm/memory"
	"godm/netback"
)

// portBE is a back-end made of a bare netback.Port: the test plays the
// far side (TxQueue().Pop for frames the guest sent, Deliver for frames
// toward it).
type portBE struct{ *netback.Port }

func (p portBE) Close() error { p.Shutdown(); return nil }

// Legacy ring layout for 256 entries (§2.7.2): descriptors at the PFN,
// the avail ring 4 KiB on, the used ring 8 KiB on.
const (
	rxRing  = 0x10000
	txRing  = 0x20000
	bufBase = 0x100000
	memSize = 8 << 20

	fLegacyBase = FMAC | FStatus
)

var testMAC = [6]byte{0x52, 0x54, 0x00, 0xab, 0xcd, 0xef}

type ring struct {
	base   uint64
	ar, ur *memory.Region
	avail  uint16
	nextD  uint16
}

type rig struct {
	t   testing.TB
	mc  *memory.MapCache
	d   *Device
	be  portBE
	leg devices.Handler
	rx  ring
	tx  ring
}

func newRig(t testing.TB, depth int) *rig {
	t.Helper()
	mem := make([]byte, memSize)
	mc, err := memory.NewMapCache(memory.FromBytes(mem), memory.MapCacheConfig{BucketShift: 16})
	if err != nil {
		t.Fatal(err)
	}
	be := portBE{netback.NewPort(netback.PortConfig{Depth: depth})}
	d, err := New(Config{MAC: testMAC, Memory: mc, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, mc: mc, d: d, be: be, leg: d.Transport().LegacyRegs()}
	r.rx.base, r.tx.base = rxRing, txRing
	for _, q := range []*ring{&r.rx, &r.tx} {
		if q.ar, err = mc.Pin(memory.GPA(q.base+0x1000), 0x1000); err != nil {
			t.Fatal(err)
		}
		if q.ur, err = mc.Pin(memory.GPA(q.base+0x2000), 0x1000); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		d.Close()
		be.Close()
		for _, q := range []*ring{&r.rx, &r.tx} {
			q.ar.Release()
			q.ur.Release()
		}
		mc.Close()
	})
	return r
}

func (r *rig) out(off uint64, size uint8, v uint64) {
	r.leg.Write(devices.Access{Offset: off, Size: size}, v)
}
func (r *rig) in(off uint64, size uint8) uint64 {
	return r.leg.Read(devices.Access{Offset: off, Size: size})
}

// legacy brings the device up through the legacy registers (§4.1.4.8)
// with the given features.
func (r *rig) legacy(features uint32) {
	r.out(18, 1, 1)
	r.out(18, 1, 3)
	r.out(4, 4, uint64(features))
	r.out(14, 2, RxQueue)
	r.out(8, 4, rxRing>>12)
	r.out(14, 2, TxQueue)
	r.out(8, 4, txRing>>12)
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

func (r *rig) desc(q *ring, i uint16, addr uint64, l uint32, flags, next uint16) {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[0:], addr)
	binary.LittleEndian.PutUint32(b[8:], l)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
	r.put(q.base+16*uint64(i), b[:])
}

type seg struct {
	addr  uint64
	l     uint32
	write bool
}

// chain writes segs as a chain from q's next free descriptors and makes
// it available (no kick).
func (r *rig) chain(q *ring, segs ...seg) uint16 {
	head := q.nextD
	for i, s := range segs {
		idx := (head + uint16(i)) % QueueSize
		var f uint16
		if s.write {
			f |= 2
		}
		if i < len(segs)-1 {
			f |= 1
		}
		r.desc(q, idx, s.addr, s.l, f, (idx+1)%QueueSize)
	}
	q.nextD = (head + uint16(len(segs))) % QueueSize
	r.publish(q, head)
	return head
}

func (r *rig) publish(q *ring, head uint16) {
	if err := q.ar.Store16(4+2*int(q.avail%QueueSize), head); err != nil {
		panic(err)
	}
	q.avail++
	if err := q.ar.Store16(2, q.avail); err != nil {
		panic(err)
	}
}

func (r *rig) kick(q uint16) { r.out(16, 2, uint64(q)) }

func (r *rig) usedIdx(q *ring) uint16 {
	v, err := q.ur.Load16(2)
	if err != nil {
		panic(err)
	}
	return v
}

// waitUsed waits (for the worker) until q's used index reaches n.
func (r *rig) waitUsed(q *ring, n uint16) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.usedIdx(q) != n {
		if time.Now().After(deadline) {
			r.t.Fatalf("used index %d, want %d", r.usedIdx(q), n)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

func (r *rig) used(q *ring, i uint16) (id, l uint32) {
	b := r.get(q.base+0x2000+4+8*uint64(i%QueueSize), 8)
	return binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
}

// deliver gives the device a frame from the back-end's side.
func (r *rig) deliver(p []byte) {
	f := r.be.Pool().Get()
	if f == nil {
		r.t.Fatal("back-end pool empty")
	}
	f.SetLen(copy(f.Buf(), p))
	if !r.be.Deliver(f) {
		r.t.Fatal("deliver refused")
	}
}

// frame is an Ethernet frame of n bytes to dst, its payload a pattern.
func frame(dst [6]byte, n int, seed byte) []byte {
	b := make([]byte, n)
	copy(b, dst[:])
	copy(b[6:], []byte{0x02, 0, 0, 0, 0, 1})
	b[12], b[13] = 0x08, 0x00
	for i := 14; i < n; i++ {
		b[i] = byte(i) ^ seed
	}
	return b
}

// txPop takes the next frame the guest sent, waiting for it.
func (r *rig) txPop() []byte {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if f := r.be.TxQueue().Pop(); f != nil {
			b := bytes.Clone(f.Bytes())
			f.Release()
			return b
		}
		if time.Now().After(deadline) {
			r.t.Fatal("no frame from the guest")
		}
		time.Sleep(50 * time.Microsecond)
	}
}

func TestIdentityConfigAndFeatures(t *testing.T) {
	r := newRig(t, 16)
	h := r.d.Function().Header()
	if h.VendorID != 0x1af4 || h.DeviceID != PCIDeviceID || h.Class != Class || h.SubsystemID != DeviceID {
		t.Fatalf("header %+v", h)
	}
	f := uint32(r.in(0, 4))
	want := uint32(FMAC | fGSO | FMrgRxBuf | FStatus | FCtrlVQ | fCtrlRx | virtio.FIndirectDesc | virtio.FEventIdx |
		virtio.FNotifyOnEmpty | virtio.FAnyLayout | virtio.FBadFeature)
	if f != want {
		t.Fatalf("host features %#x, want %#x", f, want)
	}
	if f&fCtrlMACAddr != 0 {
		t.Fatal("CTRL_MAC_ADDR offered")
	}
	// Device configuration at 20 (no MSI-X): mac, status LINK_UP;
	// beyond it all ones.
	var cfg []byte
	for i := range uint64(configLen) {
		cfg = append(cfg, byte(r.in(20+i, 1)))
	}
	wantCfg := append(append([]byte{}, testMAC[:]...), 1, 0)
	if !bytes.Equal(cfg, wantCfg) {
		t.Fatalf("config % x, want % x", cfg, wantCfg)
	}
	if v := r.in(20+6, 2); v != StatusLinkUp {
		t.Fatalf("status %#x", v)
	}
	if v := r.in(20+configLen, 1); v != 0xff {
		t.Fatalf("past the configuration: %#x", v)
	}
	// Queue sizes: 256, 256, 64; a fourth queue does not exist.
	for q, n := range []uint64{QueueSize, QueueSize, CtrlQueueSize, 0} {
		r.out(14, 2, uint64(q))
		if v := r.in(12, 2); v != n {
			t.Fatalf("queue %d size %d, want %d", q, v, n)
		}
	}
}

func TestLinkStatus(t *testing.T) {
	r := newRig(t, 16)
	r.legacy(fLegacyBase)
	r.in(19, 1)
	r.d.SetLink(false)
	if r.d.LinkUp() || r.in(26, 2) != 0 {
		t.Fatal("link still up")
	}
	if v := r.in(19, 1); v != 3 {
		t.Fatalf("ISR %#x after a link change, want the configuration bit", v)
	}
	r.d.SetLink(false)
	if v := r.in(19, 1); v != 0 {
		t.Fatalf("ISR %#x without a change", v)
	}
	// Frames sent with the link down are dropped and their buffers
	// returned; frames arriving are dropped.
	r.put(bufBase, make([]byte, 12))
	r.put(bufBase+0x100, frame(testMAC, 60, 1))
	r.chain(&r.tx, seg{bufBase, 12, false}, seg{bufBase + 0x100, 60, false})
	r.kick(TxQueue)
	if r.usedIdx(&r.tx) != 1 || r.be.TxQueue().Len() != 0 || r.d.Stats().TxDropped.Load() != 1 {
		t.Fatal("frame sent with the link down")
	}
	r.deliver(frame(testMAC, 60, 2))
	deadline := time.Now().Add(10 * time.Second)
	for r.d.Stats().RxDropped.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("frame not dropped with the link down")
		}
		time.Sleep(50 * time.Microsecond)
	}
	r.d.SetLink(true)
	if !r.d.LinkUp() || r.in(26, 2) != StatusLinkUp || r.in(19, 1) != 3 {
		t.Fatal("link up not reported")
	}
}

func TestTx(t *testing.T) {
	for _, tc := range []struct {
		name     string
		features uint32
		hl       uint32
	}{{"legacy", fLegacyBase, 10}, {"mergeable", fLegacyBase | FMrgRxBuf, 12}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 16)
			r.legacy(tc.features)
			// Header and frame in one descriptor (ANY_LAYOUT), then
			// header apart and the frame in three pieces.
			f1 := frame([6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 342, 1)
			r.put(bufBase, append(make([]byte, tc.hl), f1...))
			r.chain(&r.tx, seg{bufBase, tc.hl + uint32(len(f1)), false})
			f2 := frame(testMAC, 1514, 2)
			r.put(bufBase+0x1000, make([]byte, tc.hl))
			r.put(bufBase+0x2000, f2[:100])
			r.put(bufBase+0x3000, f2[100:1000])
			r.put(bufBase+0x4000, f2[1000:])
			r.chain(&r.tx, seg{bufBase + 0x1000, tc.hl, false}, seg{bufBase + 0x2000, 100, false},
				seg{bufBase + 0x3000, 900, false}, seg{bufBase + 0x4000, 514, false})
			r.kick(TxQueue)
			if g := r.txPop(); !bytes.Equal(g, f1) {
				t.Fatalf("first frame % x", g[:20])
			}
			if g := r.txPop(); !bytes.Equal(g, f2) {
				t.Fatal("second frame differs")
			}
			if r.usedIdx(&r.tx) != 2 {
				t.Fatal("used index")
			}
			if id, l := r.used(&r.tx, 1); id != 1 || l != 0 {
				t.Fatalf("used element %d %d", id, l)
			}
			if v := r.in(19, 1); v != 1 {
				t.Fatalf("ISR %#x", v)
			}
			// A runt (13 bytes of frame) and a giant are dropped, their
			// buffers returned.
			r.put(bufBase, make([]byte, 64))
			r.chain(&r.tx, seg{bufBase, tc.hl + 13, false})
			r.chain(&r.tx, seg{bufBase, tc.hl, false}, seg{bufBase, 0xffff0000, false})
			r.kick(TxQueue)
			if r.usedIdx(&r.tx) != 4 || r.d.Stats().TxDropped.Load() != 2 || r.be.TxQueue().Len() != 0 {
				t.Fatalf("runt/giant: used %d dropped %d", r.usedIdx(&r.tx), r.d.Stats().TxDropped.Load())
			}
		})
	}
}

// TestTxBackPressure: a back-end that is full leaves chains in the ring;
// its tx wake-up sends them.
func TestTxBackPressure(t *testing.T) {
	r := newRig(t, 2)
	r.legacy(fLegacyBase | FMrgRxBuf)
	f := frame(testMAC, 100, 3)
	r.put(bufBase, append(make([]byte, 12), f...))
	for range 6 {
		r.chain(&r.tx, seg{bufBase, 112, false})
	}
	r.kick(TxQueue)
	if n := r.usedIdx(&r.tx); n != 2 {
		t.Fatalf("used %d with a back-end of depth 2", n)
	}
	for range 6 {
		if g := r.txPop(); !bytes.Equal(g, f) {
			t.Fatal("frame differs")
		}
	}
	r.waitUsed(&r.tx, 6)
	if r.be.Stats().TxRefused.Load() == 0 {
		t.Fatal("no refusal counted")
	}
}

func TestRx(t *testing.T) {
	r := newRig(t, 16)
	r.legacy(fLegacyBase)
	// Header apart, then the frame (legacy drivers' layout).
	r.chain(&r.rx, seg{bufBase, 10, true}, seg{bufBase + 0x1000, 1514, true})
	r.chain(&r.rx, seg{bufBase + 0x2000, 10 + 1514, true})
	r.kick(RxQueue)
	f1, f2 := frame(testMAC, 1514, 4), frame(testMAC, 64, 5)
	r.put(bufBase, bytes.Repeat([]byte{0xee}, 10))
	r.deliver(f1)
	r.deliver(f2)
	r.waitUsed(&r.rx, 2)
	if g := r.get(bufBase, 10); !bytes.Equal(g, make([]byte, 10)) {
		t.Fatalf("header % x", g)
	}
	if g := r.get(bufBase+0x1000, 1514); !bytes.Equal(g, f1) {
		t.Fatal("first frame differs")
	}
	if id, l := r.used(&r.rx, 0); id != 0 || l != 1524 {
		t.Fatalf("used %d %d", id, l)
	}
	if g := r.get(bufBase+0x2000+10, 64); !bytes.Equal(g, f2) {
		t.Fatal("second frame differs")
	}
	if id, l := r.used(&r.rx, 1); id != 2 || l != 74 {
		t.Fatalf("used %d %d", id, l)
	}
	if r.in(19, 1) != 1 {
		t.Fatal("no interrupt")
	}
	// Without buffers a frame waits in the back-end; a buffer too small
	// for it (not mergeable) drops it and stays the guest's.
	r.deliver(f1)
	time.Sleep(time.Millisecond)
	if r.be.RxQueue().Len() != 1 {
		t.Fatal("frame not held")
	}
	r.chain(&r.rx, seg{bufBase + 0x3000, 100, true})
	r.kick(RxQueue)
	deadline := time.Now().Add(10 * time.Second)
	for r.d.Stats().RxDropped.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("frame too large for the buffer not dropped")
		}
		time.Sleep(50 * time.Microsecond)
	}
	r.deliver(f2)
	r.waitUsed(&r.rx, 3)
	if id, l := r.used(&r.rx, 2); id != 3 || l != 74 {
		t.Fatalf("the small buffer: used %d %d", id, l)
	}
}

func TestRxMergeable(t *testing.T) {
	r := newRig(t, 16)
	r.legacy(fLegacyBase | FMrgRxBuf)
	// Two 512-byte buffers: a 1500-byte frame needs three, so it waits.
	for i := range uint64(2) {
		r.chain(&r.rx, seg{bufBase + i*0x1000, 512, true})
	}
	r.kick(RxQueue)
	f := frame(testMAC, 1500, 6)
	r.deliver(f)
	time.Sleep(time.Millisecond)
	if r.usedIdx(&r.rx) != 0 || r.be.RxQueue().Len() != 1 {
		t.Fatal("frame placed without enough buffers")
	}
	r.chain(&r.rx, seg{bufBase + 2*0x1000, 256, true}, seg{bufBase + 3*0x1000, 256, true})
	r.kick(RxQueue)
	r.waitUsed(&r.rx, 3)
	hdr := r.get(bufBase, 12)
	if n := binary.LittleEndian.Uint16(hdr[10:]); n != 3 || !bytes.Equal(hdr[:10], make([]byte, 10)) {
		t.Fatalf("header % x", hdr)
	}
	got := append(r.get(bufBase+12, 500), r.get(bufBase+0x1000, 512)...)
	got = append(got, r.get(bufBase+0x2000, 256)...)
	got = append(got, r.get(bufBase+0x3000, 1500-500-512-256)...)
	if !bytes.Equal(got, f) {
		t.Fatal("frame differs")
	}
	for i, want := range []uint32{512, 512, 1512 - 1024} {
		if _, l := r.used(&r.rx, uint16(i)); l != want {
			t.Fatalf("used %d length %d, want %d", i, l, want)
		}
	}
	// One frame that fits: num_buffers 1.
	r.chain(&r.rx, seg{bufBase + 0x5000, 2048, true})
	r.kick(RxQueue)
	r.deliver(frame(testMAC, 60, 7))
	r.waitUsed(&r.rx, 4)
	if n := binary.LittleEndian.Uint16(r.get(bufBase+0x5000+10, 2)); n != 1 {
		t.Fatalf("num_buffers %d", n)
	}
}

// TestVersion1Header: a modern driver's header is 12 bytes without
// mergeable buffers; num_buffers is 1.
func TestVersion1Header(t *testing.T) {
	r := newRig(t, 16)
	r.legacy(fLegacyBase)
	// Force VERSION_1 through the transport's negotiation as the
	// modern interface would: write the high half through BAR4.
	mod := r.d.Transport().ModernRegs()
	mod.Write(devices.Access{Offset: 0x08, Size: 4}, 1) // guest feature select 1
	mod.Write(devices.Access{Offset: 0x0c, Size: 4}, 1) // VERSION_1
	if r.d.Transport().Negotiated()&virtio.FVersion1 == 0 {
		t.Fatal("VERSION_1 not negotiated through the common configuration")
	}
	if r.d.hdrLen() != 12 {
		t.Fatalf("header length %d", r.d.hdrLen())
	}
}

func TestMalformedChainsBreakTheDevice(t *testing.T) {
	for _, tc := range []struct {
		name string
		mk   func(r *rig)
	}{
		{"tx header short", func(r *rig) {
			r.chain(&r.tx, seg{bufBase, 5, false})
			r.kick(TxQueue)
		}},
		{"tx loop", func(r *rig) {
			r.desc(&r.tx, 0, bufBase, 12, 1, 1)
			r.desc(&r.tx, 1, bufBase, 12, 1, 0)
			r.publish(&r.tx, 0)
			r.kick(TxQueue)
		}},
		{"tx head out of range", func(r *rig) {
			r.publish(&r.tx, 999)
			r.kick(TxQueue)
		}},
		{"tx avail index jump", func(r *rig) {
			if err := r.tx.ar.Store16(2, 5000); err != nil {
				panic(err)
			}
			r.kick(TxQueue)
		}},
		{"rx no writable buffer", func(r *rig) {
			r.chain(&r.rx, seg{bufBase, 100, false})
			r.kick(RxQueue)
			r.deliver(frame(testMAC, 60, 1))
		}},
		{"rx loop", func(r *rig) {
			r.desc(&r.rx, 0, bufBase, 12, 3, 0)
			r.publish(&r.rx, 0)
			r.kick(RxQueue)
			r.deliver(frame(testMAC, 60, 1))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 16)
			r.legacy(fLegacyBase | FMrgRxBuf)
			tc.mk(r)
			deadline := time.Now().Add(10 * time.Second)
			for !r.d.Transport().Broken() {
				if time.Now().After(deadline) {
					t.Fatal("device not broken")
				}
				time.Sleep(50 * time.Microsecond)
			}
			if r.d.Stats().GuestErrors.Load() == 0 {
				t.Fatal("no guest error counted")
			}
			// A reset brings it back: status 0, then a fresh bring-up
			// sends a frame.
			r.out(18, 1, 0)
			if r.d.Transport().Broken() {
				t.Fatal("still broken after reset")
			}
			r.tx, r.rx = ring{base: txRing, ar: r.tx.ar, ur: r.tx.ur}, ring{base: rxRing, ar: r.rx.ar, ur: r.rx.ur}
			for _, q := range []*ring{&r.tx, &r.rx} {
				r.put(q.base, make([]byte, 0x3000))
			}
			r.legacy(fLegacyBase | FMrgRxBuf)
			f := frame(testMAC, 80, 9)
			r.put(bufBase+0x8000, append(make([]byte, 12), f...))
			r.chain(&r.tx, seg{bufBase + 0x8000, 92, false})
			r.kick(TxQueue)
			for {
				g := r.txPop()
				if bytes.Equal(g, f) {
					break
				}
			}
		})
	}
}

// TestMergeableBufferFlood: a hostile driver offering one-byte buffers
// endlessly (the avail index ahead of what it wrote) cannot make the
// device walk more than a queue of them for one frame.
func TestMergeableBufferFlood(t *testing.T) {
	r := newRig(t, 16)
	r.legacy(fLegacyBase | FMrgRxBuf)
	for i := range uint16(QueueSize) {
		r.desc(&r.rx, i, bufBase+uint64(i), 1, 2, 0)
		if err := r.rx.ar.Store16(4+2*int(i), i); err != nil {
			panic(err)
		}
	}
	if err := r.rx.ar.Store16(2, QueueSize); err != nil {
		panic(err)
	}
	r.kick(RxQueue)
	r.deliver(frame(testMAC, 1514, 1))
	// 256 one-byte buffers hold less than the frame: it waits.
	time.Sleep(time.Millisecond)
	if r.usedIdx(&r.rx) != 0 || r.d.Transport().Broken() {
		t.Fatal("frame placed or device broken with too few buffers")
	}
	if r.be.RxQueue().Len() != 1 {
		t.Fatal("frame not held")
	}
}

func TestPauseAndSnapshot(t *testing.T) {
	r := newRig(t, 16)
	r.legacy(fLegacyBase | FMrgRxBuf)
	r.d.Pause()
	f := frame(testMAC, 100, 4)
	r.put(bufBase, append(make([]byte, 12), f...))
	r.chain(&r.tx, seg{bufBase, 112, false})
	r.kick(TxQueue)
	r.chain(&r.rx, seg{bufBase + 0x1000, 2048, true})
	r.kick(RxQueue)
	r.deliver(frame(testMAC, 70, 5))
	time.Sleep(time.Millisecond)
	if r.usedIdx(&r.tx) != 0 || r.usedIdx(&r.rx) != 0 {
		t.Fatal("a paused device moved")
	}
	r.d.SetLink(false)
	snap, err := r.d.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Restored into a second device: the link, the rings, the pending
	// transmit.
	r2 := newRig(t, 16)
	r2.d.Pause()
	if err := r2.d.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if r2.d.LinkUp() || r2.d.Transport().Negotiated()&FMrgRxBuf == 0 || !r2.d.st.txPending {
		t.Fatal("state not restored")
	}
	again, err := r2.d.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, snap) {
		t.Fatal("snapshot of the restored device differs")
	}
	// Damaged records are refused.
	for _, n := range []int{0, 10, len(snap) - 1} {
		if r2.d.Restore(snap[:n]) == nil {
			t.Fatalf("truncated record of %d bytes accepted", n)
		}
	}
	r.d.SetLink(true)
	r.d.Resume()
	if g := r.txPop(); !bytes.Equal(g, f) {
		t.Fatal("transmit after resume differs")
	}
	r.waitUsed(&r.rx, 1)
}

// TestLegacyMACWrite: a legacy driver may write the MAC; a reset
// restores mac=.
func TestLegacyMACWrite(t *testing.T) {
	r := newRig(t, 16)
	r.legacy(fLegacyBase)
	r.out(20, 1, 0x02)
	if v := r.in(20, 1); v != 0x02 {
		t.Fatalf("mac[0] %#x after a write", v)
	}
	r.out(18, 1, 0)
	if v := r.in(20, 1); v != uint64(testMAC[0]) {
		t.Fatalf("mac[0] %#x after reset", v)
	}
	if r.d.MAC() != testMAC {
		t.Fatal("MAC()")
	}
}

func TestNoAllocPerFrame(t *testing.T) {
	r := newRig(t, 64)
	r.legacy(fLegacyBase | FMrgRxBuf)
	f := frame(testMAC, 1514, 1)
	r.put(bufBase, append(make([]byte, 12), f...))
	tx := testing.AllocsPerRun(200, func() {
		r.chain(&r.tx, seg{bufBase, 12 + 1514, false})
		r.kick(TxQueue)
		r.be.TxQueue().Pop().Release()
	})
	if tx != 0 {
		t.Fatalf("%v allocations per transmitted frame", tx)
	}
	// Receive on the test's goroutine: the worker is paused.
	r.d.Pause()
	defer r.d.Resume()
	rx := testing.AllocsPerRun(200, func() {
		r.chain(&r.rx, seg{bufBase + 0x10000, 2048, true})
		g := r.be.Pool().Get()
		g.SetLen(copy(g.Buf(), f))
		r.be.Deliver(g)
		r.d.mu.Lock()
		r.d.rxLocked()
		r.d.mu.Unlock()
	})
	if rx != 0 {
		t.Fatalf("%v allocations per received frame", rx)
	}
	if r.d.Stats().RxFrames.Load() < 200 {
		t.Fatalf("%d frames received", r.d.Stats().RxFrames.Load())
	}
}

// ctrlRing is the control queue's legacy layout (64 entries: the avail
// ring at +0x400, the used ring at +0x1000).
const ctrlRing = 0x30000

// ctrl sends one control command (header, data, ack byte) as chain i and
// returns the ack.
func (r *rig) ctrl(i int, class, cmd byte, data []byte) byte {
	at := bufBase + 0x80000 + uint64(i)*0x100
	r.put(at, append([]byte{class, cmd}, data...))
	r.put(at+0x80, []byte{0xaa})
	q := &ring{base: ctrlRing}
	r.desc(q, uint16(2*i), at, uint32(2+len(data)), 1, uint16(2*i+1))
	r.desc(q, uint16(2*i+1), at+0x80, 1, 2, 0)
	var b [2]byte
	binary.LittleEndian.PutUint16(b[:], uint16(2*i))
	r.put(ctrlRing+0x400+4+2*uint64(i), b[:])
	binary.LittleEndian.PutUint16(b[:], uint16(i+1))
	r.put(ctrlRing+0x400+2, b[:])
	r.kick(CtrlQueue)
	if u := binary.LittleEndian.Uint16(r.get(ctrlRing+0x1000+2, 2)); u != uint16(i+1) {
		r.t.Fatalf("control used index %d, want %d", u, i+1)
	}
	return r.get(at+0x80, 1)[0]
}

// TestControlQueue: receive modes and the MAC table decide which frames
// reach the guest (QEMU receive_filter); malformed commands are answered
// VIRTIO_NET_ERR and leave the filter; the filter survives a snapshot and
// a reset makes the device promiscuous again.
func TestControlQueue(t *testing.T) {
	r := newRig(t, 16)
	r.legacy(fLegacyBase | FMrgRxBuf | FCtrlVQ | fCtrlRx)
	r.out(14, 2, CtrlQueue)
	r.out(8, 4, ctrlRing>>12)
	table := []byte{1, 0, 0, 0, 2, 0, 0, 0, 0, 9, 1, 0, 0, 0, 1, 0, 0x5e, 0, 0, 7}
	for i, c := range []struct {
		class, cmd byte
		data       []byte
		ack        byte
	}{
		{ctrlRx, rxPromisc, []byte{0}, ctrlOK},
		{ctrlRx, 42, []byte{1}, ctrlErr},
		{ctrlRx, rxAllMulti, nil, ctrlErr},
		{ctrlMAC, macTableSet, table, ctrlOK},
		{ctrlMAC, macTableSet, table[:len(table)-1], ctrlErr},
		{ctrlMAC, macTableSet, append(table, 0), ctrlErr},
		{ctrlMAC, macTableSet, []byte{0xff, 0xff, 0xff, 0x3f}, ctrlErr},
		{ctrlMAC, macAddrSet, []byte{2, 0, 0, 0, 0, 0xa, 0}, ctrlErr},
		{9, 0, nil, ctrlErr},
	} {
		if a := r.ctrl(i, c.class, c.cmd, c.data); a != c.ack {
			t.Fatalf("command %d/%d % x: ack %d, want %d", c.class, c.cmd, c.data, a, c.ack)
		}
	}
	f := &r.d.st.filter
	if f.promisc || f.nUni != 1 || f.nMulti != 1 || f.macs[1] != [6]byte{1, 0, 0x5e, 0, 0, 7} {
		t.Fatalf("filter %+v", *f)
	}
	// A table of 65 unicast addresses overflows: every unicast passes.
	big := binary.LittleEndian.AppendUint32(nil, 65)
	big = append(big, make([]byte, 65*6)...)
	big = binary.LittleEndian.AppendUint32(big, 0)
	if a := r.ctrl(9, ctrlMAC, macTableSet, big); a != ctrlOK || !r.d.st.filter.uniOverflow {
		t.Fatalf("overflowing table: ack %d filter %+v", a, r.d.st.filter)
	}
	if a := r.ctrl(10, ctrlMAC, macTableSet, table); a != ctrlOK {
		t.Fatal("table")
	}
	for i := range uint64(8) {
		r.chain(&r.rx, seg{bufBase + i*0x1000, 2048, true})
	}
	r.kick(RxQueue)
	pass := map[[6]byte]bool{
		testMAC: true, {2, 0, 0, 0, 0, 9}: true, {2, 0, 0, 0, 0, 8}: false,
		{1, 0, 0x5e, 0, 0, 7}: true, {1, 0, 0x5e, 0, 0, 8}: false, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}: true,
	}
	want := uint16(0)
	for dst, ok := range pass {
		seen := r.d.Stats().RxFrames.Load() + r.d.Stats().RxFiltered.Load()
		r.deliver(frame(dst, 64, 1))
		deadline := time.Now().Add(10 * time.Second)
		for r.d.Stats().RxFrames.Load()+r.d.Stats().RxFiltered.Load() == seen {
			if time.Now().After(deadline) {
				t.Fatal("frame neither received nor filtered")
			}
			time.Sleep(50 * time.Microsecond)
		}
		if ok {
			want++
		}
		if u := r.usedIdx(&r.rx); u != want {
			t.Fatalf("%x: used index %d, want %d", dst, u, want)
		}
	}
	if a := r.ctrl(11, ctrlRx, rxAllMulti, []byte{1}); a != ctrlOK || !r.d.accept([]byte{1, 0, 0x5e, 0, 0, 8}) {
		t.Fatal("allmulti")
	}
	r.d.Pause()
	snap, err := r.d.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r.d.Resume()
	r2 := newRig(t, 16)
	if err := r2.d.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if r2.d.st.filter != r.d.st.filter {
		t.Fatal("filter not restored")
	}
	r.out(18, 1, 0)
	if !r.d.st.filter.promisc || r.d.st.filter.nUni != 0 {
		t.Fatal("reset kept the filter")
	}
	// A command without its ack buffer breaks the device.
	r.legacy(fLegacyBase | FCtrlVQ | fCtrlRx)
	r.out(14, 2, CtrlQueue)
	r.out(8, 4, ctrlRing>>12)
	r.put(ctrlRing, make([]byte, 0x2000))
	r.put(bufBase, []byte{0, 0, 0})
	r.desc(&ring{base: ctrlRing}, 0, bufBase, 3, 0, 0)
	r.put(ctrlRing+0x400, []byte{0, 0, 1, 0, 0, 0})
	r.kick(CtrlQueue)
	if !r.d.Transport().Broken() {
		t.Fatal("control chain without an ack buffer accepted")
	}
}

// newOffloadRig is newRig on a back-end that carries virtio-net headers.
func newOffloadRig(t *testing.T) *rig {
	t.Helper()
	r := newRig(t, 16)
	be := portBE{netback.NewPort(netback.PortConfig{Depth: 16, Offloads: true})}
	d, err := New(Config{MAC: testMAC, Memory: r.mc, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Close()
		be.Close()
	})
	r.d.Close()
	r.d, r.be, r.leg = d, be, d.Transport().LegacyRegs()
	return r
}

// TestOffloads: on a back-end with virtio-net headers the offloads are
// offered; the guest's header goes with its frame; the back-end's GSO
// and partial-checksum frames reach a guest that took the features, are
// dropped (GSO) or finished (checksum) for one that did not.
func TestOffloads(t *testing.T) {
	if f := uint32(newRig(t, 4).in(0, 4)); f&offloads != 0 {
		t.Fatalf("offloads offered without a vnet header: %#x", f)
	}
	r := newOffloadRig(t)
	if f := uint32(r.in(0, 4)); f&offloads != offloads {
		t.Fatalf("features %#x lack the offloads", f)
	}
	r.legacy(fLegacyBase | FMrgRxBuf | FCsum | FHostTSO4 | FGuestCsum | FGuestTSO4)
	gso := netback.VnetHdr{Flags: netback.VnetFlagNeedsCsum, GSOType: netback.VnetGSOTCPv4, HdrLen: 54, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}
	var hb [12]byte
	gso.Encode(hb[:])
	big := frame(testMAC, 3000, 3)
	r.put(bufBase, append(hb[:], big...))
	r.chain(&r.tx, seg{bufBase, 12 + 3000, false})
	r.kick(TxQueue)
	g := r.be.TxQueue().Pop()
	if g == nil || g.Hdr != gso || !bytes.Equal(g.Bytes(), big) {
		t.Fatalf("transmitted %+v", g)
	}
	g.Release()
	// Toward the guest: a GSO frame it takes.
	for i := range uint64(4) {
		r.chain(&r.rx, seg{bufBase + 0x10000 + i*0x1000, 4096, true})
	}
	r.kick(RxQueue)
	f := r.be.Pool().Get()
	f.SetLen(copy(f.Buf(), big))
	f.Hdr = gso
	r.be.Deliver(f)
	r.waitUsed(&r.rx, 1)
	want := gso
	want.NumBuffers = 1
	want.Encode(hb[:])
	if got := r.get(bufBase+0x10000, 12); !bytes.Equal(got, hb[:]) {
		t.Fatalf("header % x, want % x", got, hb)
	}
	// A guest without GUEST_TSO4 and GUEST_CSUM: the GSO frame is
	// dropped, a partial checksum finished.
	r.out(18, 1, 0)
	r.rx, r.tx = ring{base: rxRing, ar: r.rx.ar, ur: r.rx.ur}, ring{base: txRing, ar: r.tx.ar, ur: r.tx.ur}
	r.put(rxRing, make([]byte, 0x3000))
	r.legacy(fLegacyBase | FMrgRxBuf)
	r.chain(&r.rx, seg{bufBase + 0x20000, 4096, true})
	r.kick(RxQueue)
	f = r.be.Pool().Get()
	f.SetLen(copy(f.Buf(), big))
	f.Hdr = gso
	r.be.Deliver(f)
	udp := frame(testMAC, 100, 4)
	udp[12], udp[13] = 0x08, 0x00
	f = r.be.Pool().Get()
	f.SetLen(copy(f.Buf(), udp))
	f.Hdr = netback.VnetHdr{Flags: netback.VnetFlagNeedsCsum, CsumStart: 34, CsumOffset: 6}
	r.be.Deliver(f)
	r.waitUsed(&r.rx, 1)
	if r.d.Stats().RxDropped.Load() != 1 {
		t.Fatalf("GSO frame to a guest without TSO: %d dropped", r.d.Stats().RxDropped.Load())
	}
	got := r.get(bufBase+0x20000, 12+100)
	if !bytes.Equal(got[:10], make([]byte, 10)) {
		t.Fatalf("header % x: offload flags given to a guest without GUEST_CSUM", got[:12])
	}
	// The checksum field holds the one's complement sum from 34 on.
	sum := bytes.Clone(udp)
	nic.FinishCsum(sum, 34, 6)
	if bytes.Equal(sum, udp) || !bytes.Equal(got[12:], sum) {
		t.Fatal("partial checksum not finished")
	}
}
