package netback

import (
	"testing"
	"time"
)

func TestVnetHdrRoundTrip(t *testing.T) {
	h := VnetHdr{Flags: VnetFlagNeedsCsum, GSOType: VnetGSOTCPv4, HdrLen: 54, GSOSize: 1448, CsumStart: 34, CsumOffset: 16, NumBuffers: 3}
	var b [12]byte
	if h.Encode(b[:]) != 12 {
		t.Fatal("Encode wrote not 12")
	}
	// virtio 1.2 5.1.6: flags, gso_type, then little-endian hdr_len...
	if b[0] != 1 || b[1] != 1 || b[2] != 54 || b[3] != 0 || b[4] != 0xa8 || b[5] != 0x05 || b[10] != 3 {
		t.Fatalf("layout % x", b)
	}
	var g VnetHdr
	if !g.Decode(b[:]) || g != h {
		t.Fatalf("decoded %+v, want %+v", g, h)
	}
	if g.Decode(b[:9]) {
		t.Fatal("decoded a 9-byte header")
	}
	if !h.Valid(2000) {
		t.Fatal("a sane TSO header is not valid")
	}
	for _, bad := range []VnetHdr{
		{GSOType: 2},            // unknown type
		{GSOType: VnetGSOTCPv4}, // no gso_size
		{GSOType: VnetGSOECN},   // ECN without GSO
		{Flags: 4},              // unknown flag
		{Flags: 1, CsumStart: 1990, CsumOffset: 16}, // past the frame
		{GSOType: VnetGSOTCPv4, GSOSize: 1, HdrLen: 2001},
	} {
		if bad.Valid(2000) {
			t.Errorf("%+v valid", bad)
		}
	}
}

func TestQueueBoundedAndFIFO(t *testing.T) {
	p := NewPool(8, 64)
	q := NewQueue(4)
	var fs []*Frame
	for i := 0; i < 8; i++ {
		f := p.Get()
		if f == nil {
			t.Fatalf("pool empty after %d", i)
		}
		f.Buf()[0] = byte(i)
		f.SetLen(1)
		fs = append(fs, f)
	}
	if p.Get() != nil {
		t.Fatal("pool of 8 gave a 9th frame")
	}
	for i, f := range fs {
		ok := q.Push(f)
		if ok != (i < 4) {
			t.Fatalf("push %d: %v", i, ok)
		}
	}
	if q.Len() != 4 {
		t.Fatalf("len %d", q.Len())
	}
	if q.Peek().Bytes()[0] != 0 {
		t.Fatal("peek not first")
	}
	for i := 0; i < 4; i++ {
		f := q.Pop()
		if f.Bytes()[0] != byte(i) {
			t.Fatalf("pop %d got %d", i, f.Bytes()[0])
		}
		f.Release()
	}
	select {
	case <-q.Room:
	default:
		t.Fatal("no room wake-up after popping a full queue")
	}
	if q.Pop() != nil {
		t.Fatal("pop of empty queue")
	}
	for _, f := range fs[4:] {
		f.Release()
	}
	if p.Free() != 8 {
		t.Fatalf("free %d", p.Free())
	}
}

// The guest floods: a NIC transmitting with no back-end draining gets
// refused once the queue is full; memory stays the pool's.
func TestPortTxFloodRefused(t *testing.T) {
	p := NewPort(PortConfig{Depth: 16})
	defer p.Shutdown()
	accepted := 0
	for i := 0; i < 10000; i++ {
		f := p.TxFrame()
		if f == nil {
			continue
		}
		f.SetLen(MinFrame)
		p.Transmit(f)
		accepted++
	}
	if accepted != 16 || p.TxQueue().Len() != 16 {
		t.Fatalf("accepted %d, queued %d, want 16", accepted, p.TxQueue().Len())
	}
	if got := p.Stats().TxRefused.Load(); got != 10000-16 {
		t.Fatalf("refused %d", got)
	}
	if p.Pool().Free() != p.Pool().Size()-16 {
		t.Fatalf("pool free %d of %d", p.Pool().Free(), p.Pool().Size())
	}
}

// The peer floods: frames toward a guest that takes none are dropped with
// a counter once the receive queue is full.
func TestPortRxFloodDropped(t *testing.T) {
	p := NewPort(PortConfig{Depth: 16})
	defer p.Shutdown()
	for i := 0; i < 10000; i++ {
		f := p.Pool().Get()
		if f == nil {
			t.Fatalf("pool ran dry at %d: a dropped frame was not released", i)
		}
		f.SetLen(100)
		p.Deliver(f)
	}
	if p.RxQueue().Len() != 16 || p.Stats().RxDropped.Load() != 10000-16 {
		t.Fatalf("queued %d dropped %d", p.RxQueue().Len(), p.Stats().RxDropped.Load())
	}
}

func TestPortRejectsHostileFrames(t *testing.T) {
	p := NewPort(PortConfig{Depth: 4, Offloads: true})
	defer p.Shutdown()
	for _, c := range []struct {
		n   int
		hdr VnetHdr
	}{
		{13, VnetHdr{}},              // runt: no Ethernet header
		{MaxGSOFrame + 1, VnetHdr{}}, // giant
		{100, VnetHdr{GSOType: 9}},   // bad header
		{100, VnetHdr{Flags: 1, CsumStart: 90, CsumOffset: 10}},
	} {
		f := p.TxFrame()
		f.n = c.n // past SetLen's check on purpose: a NIC bug
		f.Hdr = c.hdr
		p.Transmit(f)
	}
	if p.Stats().Bad.Load() != 4 || p.TxQueue().Len() != 0 {
		t.Fatalf("bad %d queued %d", p.Stats().Bad.Load(), p.TxQueue().Len())
	}
}

// No allocation per frame through the port, either way.
func TestPortNoAllocPerFrame(t *testing.T) {
	p := NewPort(PortConfig{Depth: 8})
	defer p.Shutdown()
	a := testing.AllocsPerRun(1000, func() {
		f := p.TxFrame()
		f.SetLen(MinFrame)
		p.Transmit(f)
		g := p.TxQueue().Pop()
		g.Release()
		h := p.Pool().Get()
		h.SetLen(MinFrame)
		p.Deliver(h)
		if p.RxPeek() == nil {
			panic("nothing to peek")
		}
		p.RxPop().Release()
	})
	if a != 0 {
		t.Fatalf("%v allocations per frame pair", a)
	}
}

// FuzzPortFrames: whatever length and header a NIC hands over, the port
// either queues a frame within bounds or drops it counted, and never
// loses a pool buffer.
func FuzzPortFrames(f *testing.F) {
	f.Add(uint32(60), []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(uint32(70000), []byte{1, 1, 54, 0, 0xa8, 5, 34, 0, 16, 0, 0, 0})
	f.Add(uint32(3), []byte{})
	f.Fuzz(func(t *testing.T, n uint32, hdr []byte) {
		p := NewPort(PortConfig{Depth: 2, Offloads: len(hdr)%2 == 0})
		defer p.Shutdown()
		fr := p.TxFrame()
		var h VnetHdr
		h.Decode(hdr)
		fr.Hdr = h
		if !fr.SetLen(int(n)) {
			fr.n = int(n) % (2 * len(fr.buf))
		}
		p.Transmit(fr)
		if q := p.TxQueue().Pop(); q != nil {
			if q.n < 14 || q.n > p.MaxLen() || (p.Offloads() && !q.Hdr.Valid(q.n)) {
				t.Fatalf("queued a bad frame n=%d hdr=%+v", q.n, q.Hdr)
			}
			q.Release()
		}
		if p.Pool().Free() != p.Pool().Size() {
			t.Fatalf("leaked a buffer")
		}
	})
}

// The wake-ups that carry back-pressure: rx when a frame waits for the
// guest, tx when a full transmit queue has room again.
func TestPortWakeups(t *testing.T) {
	p := NewPort(PortConfig{Depth: 2})
	defer p.Shutdown()
	rx, tx := make(chan struct{}, 8), make(chan struct{}, 8)
	p.SetNotify(func() { rx <- struct{}{} }, func() { tx <- struct{}{} })
	f := p.Pool().Get()
	f.SetLen(MinFrame)
	p.Deliver(f)
	select {
	case <-rx:
	case <-time.After(10 * time.Second):
		t.Fatal("no rx wake-up for a delivered frame")
	}
	for i := 0; i < 2; i++ {
		g := p.TxFrame()
		g.SetLen(MinFrame)
		p.Transmit(g)
	}
	if p.TxFrame() != nil {
		t.Fatal("room in a full transmit queue")
	}
	select {
	case <-tx:
		t.Fatal("tx wake-up before any room")
	default:
	}
	p.TxQueue().Pop().Release()
	select {
	case <-tx:
	case <-time.After(10 * time.Second):
		t.Fatal("no tx wake-up once the full queue had room")
	}
	if g := p.TxFrame(); g == nil {
		t.Fatal("no frame after the wake-up")
	} else {
		g.Release()
	}
}

func TestParseMAC(t *testing.T) {
	for s, want := range map[string][6]byte{
		"00:16:3e:01:02:0a": {0, 0x16, 0x3e, 1, 2, 0xa},
		"52-54-00-AB-cd-EF": {0x52, 0x54, 0, 0xab, 0xcd, 0xef},
	} {
		if m, err := ParseMAC(s); err != nil || m != want {
			t.Errorf("%s: %x, %v", s, m, err)
		}
	}
	for _, s := range []string{"", "00:16:3e:01:02", "00:16:3e:01:02:0g", "00:16:3e:01:02:03:04", "01:00:5e:00:00:01", "00163e010203xxxxx", "00:16:3e;01:02:03"} {
		if _, err := ParseMAC(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}
