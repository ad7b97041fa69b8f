package e1000

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"godm/devices"
	"godm/devices/devicetest"
	"godm/devices/nic"
	"godm/internal/testfake"
	"godm/memory"
	"godm/netback"
	"godm/pci"
)

// portBE is a back-end made of a bare netback.Port: the test plays the
// far side (TxQueue().Pop for frames the guest sent, Deliver for frames
// toward it).
type portBE struct{ *netback.Port }

func (p portBE) Close() error { p.Shutdown(); return nil }

type rig struct {
	t   testing.TB
	d   *Device
	mem *memory.Flat
	be  portBE
	irq *testfake.Recorder
	clk *testfake.Clock
}

var testMAC = [6]byte{0x00, 0x16, 0x3e, 0x12, 0x34, 0x56}

const memSize = 4 << 20

func newRig(t testing.TB, depth int) *rig {
	t.Helper()
	r := &rig{t: t, mem: memory.NewFlat(0, memSize), irq: &testfake.Recorder{}, clk: &testfake.Clock{}}
	r.be = portBE{netback.NewPort(netback.PortConfig{Depth: depth})}
	t.Cleanup(func() { r.be.Close() })
	d, err := New(Config{MAC: testMAC, Memory: r.mem, Backend: r.be, Clock: r.clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	bus, err := pci.NewBus(pci.BusConfig{Spaces: devices.NewBus(), INTx: testfake.AllPins{Line: r.irq}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Add(d.Function(), 4, 0); err != nil {
		t.Fatal(err)
	}
	// Bus mastering on, as a driver sets it.
	d.Function().Write(devices.Access{Offset: 4, Size: 2}, 7)
	r.d = d
	return r
}

func (r *rig) rd(off uint32) uint32 {
	return uint32(mmio{r.d}.Read(devices.Access{Offset: uint64(off), Size: 4}))
}

func (r *rig) wr(off uint32, v uint32) {
	mmio{r.d}.Write(devices.Access{Offset: uint64(off), Size: 4}, uint64(v))
}

func (r *rig) poke(gpa uint64, b []byte) {
	if err := r.mem.Write(memory.GPA(gpa), b); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) peek(gpa uint64, n int) []byte {
	b := make([]byte, n)
	if err := r.mem.Read(memory.GPA(gpa), b); err != nil {
		r.t.Fatal(err)
	}
	return b
}

// deliver queues a frame toward the guest.
func (r *rig) deliver(frame []byte) {
	r.t.Helper()
	f := r.be.Pool().Get()
	if f == nil {
		r.t.Fatal("pool empty")
	}
	f.SetLen(copy(f.Buf(), frame))
	if !r.be.Deliver(f) {
		r.t.Fatal("deliver refused")
	}
}

func (r *rig) rxSeen() uint64 {
	s := r.d.Stats()
	return s.RxFrames.Load() + s.RxFiltered.Load() + s.RxMissed.Load()
}

func (r *rig) waitRx(n uint64) {
	r.t.Helper()
	testfake.WaitFor(r.t, 5*time.Second, "frames received", func() bool { return r.rxSeen() >= n })
}

func frame(dst [6]byte, n int, seed byte) []byte {
	b := make([]byte, n)
	copy(b, dst[:])
	copy(b[6:], []byte{0x02, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	for i := 14; i < n; i++ {
		b[i] = seed + byte(i)
	}
	return b
}

// txDesc writes a legacy or data transmit descriptor.
func txDesc(buf uint64, lower, upper uint32) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint64(b, buf)
	binary.LittleEndian.PutUint32(b[8:], lower)
	binary.LittleEndian.PutUint32(b[12:], upper)
	return b
}

// ctxDesc writes a context descriptor.
func ctxDesc(ipcss, ipcso uint8, ipcse uint16, tucss, tucso uint8, tucse uint16, cmdLen uint32, hdrLen uint8, mss uint16) []byte {
	b := make([]byte, 16)
	b[0], b[1] = ipcss, ipcso
	binary.LittleEndian.PutUint16(b[2:], ipcse)
	b[4], b[5] = tucss, tucso
	binary.LittleEndian.PutUint16(b[6:], tucse)
	binary.LittleEndian.PutUint32(b[8:], cmdLen|txdDEXT)
	b[13] = hdrLen
	binary.LittleEndian.PutUint16(b[14:], mss)
	return b
}

// tcpFrame is a TCP/IPv4 frame with n payload bytes, PSH and FIN set,
// checksums zero.
func tcpFrame(n int) []byte {
	b := make([]byte, 14+20+20+n)
	copy(b, []byte{0x02, 9, 9, 9, 9, 9})
	copy(b[6:], testMAC[:])
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(40+n))
	binary.BigEndian.PutUint16(ip[4:], 0x1234)
	ip[8], ip[9] = 64, 6
	copy(ip[12:], []byte{10, 0, 2, 15, 10, 0, 2, 2})
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 80)
	binary.BigEndian.PutUint32(tcp[4:], 0x01020304)
	tcp[12] = 5 << 4
	tcp[13] = 0x18 | 0x01
	binary.BigEndian.PutUint16(tcp[14:], 8192)
	for i := range n {
		tcp[20+i] = byte(i * 7)
	}
	return b
}

// udpFrame is a UDP/IPv4 frame with n payload bytes, checksums zero.
func udpFrame(n int) []byte {
	b := make([]byte, 14+20+8+n)
	copy(b, []byte{0x02, 9, 9, 9, 9, 9})
	copy(b[6:], testMAC[:])
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(28+n))
	ip[8], ip[9] = 64, 17
	copy(ip[12:], []byte{10, 0, 2, 15, 10, 0, 2, 2})
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], 5000)
	binary.BigEndian.PutUint16(udp[2:], 53)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+n))
	for i := range n {
		udp[8+i] = byte(i*3 + 1)
	}
	return b
}

// csumOK reports whether an IPv4 frame's header and TCP/UDP checksums
// verify.
func csumOK(b []byte) bool {
	ip := b[14:]
	hl := int(ip[0]&0xf) * 4
	if nic.Fold(nic.Sum(0, ip[:hl])) != 0xffff {
		return false
	}
	total := int(binary.BigEndian.Uint16(ip[2:]))
	l4 := ip[hl:total]
	var ph [12]byte
	copy(ph[:8], ip[12:20])
	ph[9] = ip[9]
	binary.BigEndian.PutUint16(ph[10:], uint16(len(l4)))
	return nic.Fold(nic.Sum(nic.Sum(0, ph[:]), l4)) == 0xffff
}

func TestResetValues(t *testing.T) {
	r := newRig(t, 8)
	fn := r.d.Function()
	if v := fn.ConfigRead(0, 4); v != 0x100e8086 {
		t.Errorf("IDs %#x", v)
	}
	if v := fn.ConfigRead(8, 4); v != 0x02000003 {
		t.Errorf("class/revision %#x", v)
	}
	for _, c := range []struct {
		off, want uint32
	}{
		{regCTRL, 0x00140240}, {regSTATUS, 0x80080783}, {regPBA, 0x00100030}, {regLEDCTL, 0x602},
		{regRA, 0x123e1600}, {regRA + 4, 0x80005634}, {regMANC, mancDefault}, {regVET, 0x8100},
		{regEECD, eecdPRES | eecdGNT | eecdDO},
	} {
		if got := r.rd(c.off); got != c.want {
			t.Errorf("reg %#x = %#x, want %#x", c.off, got, c.want)
		}
	}
}

// eeprom reads word a through EERD.
func (r *rig) eeprom(a uint32) uint16 {
	r.wr(regEERD, eerdStart|a<<eerdAddrShift)
	v := r.rd(regEERD)
	if v&eerdDone == 0 {
		r.t.Fatalf("EERD %#x not done", v)
	}
	return uint16(v >> 16)
}

// eecdWord reads word a by bit-banging EECD as Linux's e1000 does
// (e1000_shift_out_ee_bits / e1000_shift_in_ee_bits).
func (r *rig) eecdWord(a uint32) uint16 {
	r.wr(regEECD, eecdCS)
	clock := func(di bool) {
		v := uint32(eecdCS)
		if di {
			v |= eecdDI
		}
		r.wr(regEECD, v)
		r.wr(regEECD, v|eecdSK)
		r.wr(regEECD, v)
	}
	cmd := uint32(eepromReadOp)<<6 | a
	for i := 8; i >= 0; i-- {
		clock(cmd&(1<<i) != 0)
	}
	var w uint16
	for range 16 {
		r.wr(regEECD, eecdCS|eecdSK)
		w = w<<1 | uint16(r.rd(regEECD)>>3&1)
		r.wr(regEECD, eecdCS)
	}
	r.wr(regEECD, 0)
	return w
}

func TestEEPROM(t *testing.T) {
	r := newRig(t, 8)
	var sum uint16
	for a := range uint32(64) {
		w := r.eeprom(a)
		sum += w
		if e := r.eecdWord(a); e != w {
			t.Errorf("word %d: EECD %#x, EERD %#x", a, e, w)
		}
	}
	if sum != eepromSum {
		t.Errorf("checksum %#x, want %#x", sum, eepromSum)
	}
	if w := [3]uint16{r.eeprom(0), r.eeprom(1), r.eeprom(2)}; w != [3]uint16{0x1600, 0x123e, 0x5634} {
		t.Errorf("MAC words %#x", w)
	}
	if r.eeprom(11) != DeviceID {
		t.Error("device ID word")
	}
	// Past the checksum word: DONE, no data.
	r.wr(regEERD, eerdStart|64<<eerdAddrShift)
	if v := r.rd(regEERD); v != eerdDone|64<<eerdAddrShift {
		t.Errorf("EERD past the end %#x", v)
	}
}

// mdic reads PHY register reg.
func (r *rig) mdic(reg uint32) (uint16, bool) {
	r.wr(regMDIC, mdicOpRead|1<<mdicPHYShift|reg<<mdicRegShift)
	v := r.rd(regMDIC)
	return uint16(v), v&mdicReady != 0 && v&mdicError == 0
}

func TestPHYAndAutoneg(t *testing.T) {
	r := newRig(t, 8)
	if v, ok := r.mdic(phyID1); !ok || v != 0x141 {
		t.Errorf("PHY ID1 %#x %v", v, ok)
	}
	if _, ok := r.mdic(0x07); ok {
		t.Error("PHY register 7 read without error")
	}
	r.wr(regMDIC, mdicOpRead|2<<mdicPHYShift)
	if r.rd(regMDIC)&mdicError == 0 {
		t.Error("PHY address 2 answered")
	}
	r.wr(regIMS, IntLSC)
	// Restart autonegotiation: the link drops, then comes back 500 ms
	// later with LSC.
	r.wr(regMDIC, mdicOpWrite|1<<mdicPHYShift|phyBMCR<<mdicRegShift|bmcrAutoEn|bmcrANRestart)
	if r.rd(regSTATUS)&statusLU != 0 {
		t.Fatal("link up during autonegotiation")
	}
	r.clk.Advance(autonegDelay)
	testfake.WaitFor(t, 5*time.Second, "autonegotiation", func() bool { return r.rd(regSTATUS)&statusLU != 0 })
	if v, _ := r.mdic(phyBMSR); v&(bmsrANComp|bmsrLinkSt) != bmsrANComp|bmsrLinkSt {
		t.Errorf("BMSR %#x after autonegotiation", v)
	}
	if !r.irq.Level() || r.rd(regICR)&IntLSC == 0 {
		t.Error("no LSC interrupt")
	}
	if r.irq.Level() {
		t.Error("ICR read left the line up")
	}
	// set_link down and up.
	r.d.SetLink(false)
	if r.rd(regSTATUS)&statusLU != 0 || r.rd(regICR)&IntLSC == 0 {
		t.Error("link down not reported")
	}
	// Up again: autonegotiation runs again (the link went down with it).
	r.d.SetLink(true)
	if r.rd(regSTATUS)&statusLU != 0 {
		t.Error("link up before autonegotiation")
	}
	r.clk.Advance(autonegDelay)
	testfake.WaitFor(t, 5*time.Second, "link up", func() bool { return r.rd(regSTATUS)&statusLU != 0 })
}

// setupTx points the transmit ring at base with n descriptors.
func (r *rig) setupTx(base uint64, n uint32) {
	r.wr(regTDBAL, uint32(base))
	r.wr(regTDBAH, 0)
	r.wr(regTDLEN, 16*n)
	r.wr(regTDH, 0)
	r.wr(regTDT, 0)
	r.wr(regTCTL, tctlEN)
}

func (r *rig) sent() []byte {
	f := r.be.TxQueue().Pop()
	if f == nil {
		return nil
	}
	defer f.Release()
	return bytes.Clone(f.Bytes())
}

func TestTxLegacy(t *testing.T) {
	r := newRig(t, 16)
	const ring = 0x10000
	r.setupTx(ring, 8)
	r.wr(regIMS, IntTXDW|IntTXQE)
	for i := range 10 {
		f := frame([6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 60+100*i, byte(i))
		buf := uint64(0x20000 + 0x1000*(i%8))
		r.poke(buf, f)
		slot := uint64(i % 8)
		r.poke(ring+16*slot, txDesc(buf, uint32(len(f))|txdEOP|txdRS, 0))
		r.wr(regTDT, uint32((i+1)%8))
		got := r.sent()
		if !bytes.Equal(got, f) {
			t.Fatalf("frame %d: sent %d bytes, want %d", i, len(got), len(f))
		}
		if st := r.peek(ring+16*slot+12, 1)[0]; st&txdStatDD == 0 {
			t.Errorf("frame %d: DD not written back", i)
		}
		if r.rd(regICR)&(IntTXDW|IntTXQE) != IntTXDW|IntTXQE {
			t.Errorf("frame %d: causes", i)
		}
		r.clk.Advance(time.Millisecond) // close the mitigation window
		r.d.mu.Lock()
		r.d.timersLocked()
		r.d.mu.Unlock()
	}
	if v := r.rd(regTPT); v != 10 {
		t.Errorf("TPT %d", v)
	}
	if v := r.rd(regBPTC); v != 10 {
		t.Errorf("BPTC %d", v)
	}
	if v := r.rd(regTPT); v != 0 {
		t.Errorf("TPT not cleared by its read: %d", v)
	}
}

func TestTxChecksumAndTSO(t *testing.T) {
	r := newRig(t, 16)
	const ring = 0x10000
	r.setupTx(ring, 16)
	// Checksum offload of a UDP frame split over two data descriptors.
	u := udpFrame(300)
	// The driver seeds the checksum with the pseudo-header sum.
	var uph [12]byte
	copy(uph[:8], u[26:34])
	uph[9] = 17
	binary.BigEndian.PutUint16(uph[10:], 308)
	binary.BigEndian.PutUint16(u[40:], nic.Fold(nic.Sum(0, uph[:])))
	r.poke(0x20000, u[:40])
	r.poke(0x21000, u[40:])
	r.poke(ring, ctxDesc(14, 24, 33, 34, 40, 0, 0, 0, 0))
	r.poke(ring+16, txDesc(0x20000, 40|txdDEXT|txdDTYPD, (poptsIXSM|poptsTXSM)<<8))
	r.poke(ring+32, txDesc(0x21000, uint32(len(u)-40)|txdDEXT|txdDTYPD|txdEOP|txdRS, 0))
	r.wr(regTDT, 3)
	got := r.sent()
	if len(got) != len(u) || !csumOK(got) {
		t.Fatalf("UDP frame %d bytes, checksums ok %v", len(got), len(got) == len(u) && csumOK(got))
	}
	// TSO: 2500 payload bytes at an MSS of 1000 over three descriptors.
	tf := tcpFrame(2500)
	// The driver seeds the TCP checksum with the pseudo-header sum
	// without the length.
	var ph [12]byte
	copy(ph[:8], tf[26:34])
	ph[9] = 6
	binary.BigEndian.PutUint16(tf[14+20+16:], nic.Fold(nic.Sum(0, ph[:])))
	r.poke(0x30000, tf)
	r.poke(ring+48, ctxDesc(14, 24, 33, 34, 50, 0, txdTSE|txdIP|txdTCP|2500, 54, 1000))
	r.poke(ring+64, txDesc(0x30000, 100|txdDEXT|txdDTYPD|txdTSE, (poptsIXSM|poptsTXSM)<<8))
	r.poke(ring+80, txDesc(0x30000+100, 1500|txdDEXT|txdDTYPD|txdTSE, 0))
	r.poke(ring+96, txDesc(0x30000+1600, uint32(len(tf)-1600)|txdDEXT|txdDTYPD|txdTSE|txdEOP|txdRS, 0))
	r.wr(regTDT, 7)
	var payload []byte
	for i := range 3 {
		s := r.sent()
		if s == nil {
			t.Fatalf("segment %d missing", i)
		}
		if !csumOK(s) {
			t.Errorf("segment %d: bad checksums", i)
		}
		if seq := binary.BigEndian.Uint32(s[38:]); seq != 0x01020304+uint32(1000*i) {
			t.Errorf("segment %d: seq %#x", i, seq)
		}
		if fl := s[47] & 0x09; (i == 2) != (fl == 0x09) {
			t.Errorf("segment %d: FIN/PSH %#x", i, fl)
		}
		payload = append(payload, s[54:]...)
	}
	if r.sent() != nil {
		t.Error("an extra segment")
	}
	if !bytes.Equal(payload, tf[54:]) {
		t.Error("payload differs")
	}
}

// setupRx points the receive ring at base with n descriptors whose
// buffers are at bufs, every descriptor given to the device but one.
func (r *rig) setupRx(base, bufs uint64, n uint32, rctl uint32) {
	for i := range uint64(n) {
		r.poke(base+16*i, txDesc(bufs+0x1000*i, 0, 0))
	}
	r.wr(regRDBAL, uint32(base))
	r.wr(regRDBAH, 0)
	r.wr(regRDLEN, 16*n)
	r.wr(regRDH, 0)
	r.wr(regRDT, n-1)
	r.wr(regRCTL, rctl)
}

func TestRxAndFilters(t *testing.T) {
	r := newRig(t, 16)
	r.setupRx(0x10000, 0x100000, 8, rctlEN|rctlBAM|rctlSECRC)
	r.wr(regIMS, IntRXT0)
	mc := [6]byte{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}
	// MTA bit for mc with MO=0: bits 47:36 of the address.
	f := (uint32(mc[5])<<8 | uint32(mc[4])) >> 4 & 0xfff
	r.wr(regMTA+4*(f>>5), 1<<(f&31))
	cases := []struct {
		dst  [6]byte
		n    int
		want bool
	}{
		{testMAC, 100, true},
		{[6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 342, true},
		{[6]byte{0x02, 1, 2, 3, 4, 5}, 100, false},
		{mc, 200, true},
		{[6]byte{0x01, 0x00, 0x5e, 0x00, 0x00, 0x02}, 200, false},
		{testMAC, 30, true}, // a runt, padded
	}
	slot := uint64(0)
	for i, c := range cases {
		before := r.rxSeen()
		fr := frame(c.dst, c.n, byte(i))
		r.deliver(fr)
		r.waitRx(before + 1)
		if !c.want {
			if r.d.Stats().RxFiltered.Load() == 0 {
				t.Errorf("case %d: not filtered", i)
			}
			continue
		}
		desc := r.peek(0x10000+16*slot, 16)
		n := int(binary.LittleEndian.Uint16(desc[8:]))
		if desc[12]&(rxdDD|rxdEOP) != rxdDD|rxdEOP || n != max(c.n, minFrame) {
			t.Errorf("case %d: status %#x length %d", i, desc[12], n)
		}
		if got := r.peek(0x100000+0x1000*slot, c.n); !bytes.Equal(got, fr) {
			t.Errorf("case %d: buffer differs", i)
		}
		slot++
	}
	if r.rd(regICR)&IntRXT0 == 0 {
		t.Error("no RXT0")
	}
	if v := r.rd(regGPRC); v != 4 {
		t.Errorf("GPRC %d", v)
	}
	if v := r.rd(regRDH); uint64(v) != slot {
		t.Errorf("RDH %d, want %d", v, slot)
	}
}

func TestRxSpansDescriptorsAndHoldsFrames(t *testing.T) {
	r := newRig(t, 16)
	// 256-byte buffers, 3 descriptors given: a 600-byte frame takes all
	// 3 (600+4 FCS bytes).
	r.setupRx(0x10000, 0x100000, 8, rctlEN|rctlUPE|0x30000)
	r.wr(regRDT, 3)
	fr := frame(testMAC, 600, 3)
	r.deliver(fr)
	r.waitRx(1)
	var got []byte
	for i := range uint64(3) {
		desc := r.peek(0x10000+16*i, 16)
		n := int(binary.LittleEndian.Uint16(desc[8:]))
		eop := desc[12]&rxdEOP != 0
		if eop != (i == 2) {
			t.Errorf("descriptor %d: EOP %v", i, eop)
		}
		got = append(got, r.peek(0x100000+0x1000*i, n)...)
	}
	if !bytes.Equal(got[:600], fr) || len(got) != 604 {
		t.Errorf("frame over descriptors: %d bytes", len(got))
	}
	// The ring is now out of buffers (RDH 3 = RDT 3): a frame waits in
	// the back-end until the driver gives one.
	r.deliver(frame(testMAC, 100, 4))
	time.Sleep(50 * time.Millisecond)
	if r.rxSeen() != 1 || r.be.RxQueue().Len() != 1 {
		t.Fatalf("frame not held: seen %d, queued %d", r.rxSeen(), r.be.RxQueue().Len())
	}
	r.wr(regRDT, 4)
	r.waitRx(2)
	if r.d.Stats().RxFrames.Load() != 2 {
		t.Error("held frame not delivered")
	}
}

func TestTxBackPressure(t *testing.T) {
	r := newRig(t, 2)
	const ring = 0x10000
	r.setupTx(ring, 8)
	f := frame(testMAC, 200, 1)
	r.poke(0x20000, f)
	for i := range uint64(6) {
		r.poke(ring+16*i, txDesc(0x20000, 200|txdEOP|txdRS, 0))
	}
	r.wr(regTDT, 6)
	if r.d.Stats().TxStalls.Load() == 0 {
		t.Fatal("no stall with a 2-deep back-end")
	}
	head := r.rd(regTDH)
	if head >= 6 {
		t.Fatalf("TDH %d moved past frames not sent", head)
	}
	n := 0
	testfake.WaitFor(t, 5*time.Second, "all frames sent", func() bool {
		for r.sent() != nil {
			n++
		}
		return n == 6
	})
	if r.rd(regTDH) != 6 || r.d.Stats().TxDropped.Load() != 0 {
		t.Errorf("TDH %d, dropped %d", r.rd(regTDH), r.d.Stats().TxDropped.Load())
	}
}

func TestHostileRings(t *testing.T) {
	r := newRig(t, 8)
	// Rings and buffers outside guest memory, lengths at their maxima,
	// heads outside the rings: every walk ends, nothing crashes.
	r.wr(regTDBAL, 0xfffff000)
	r.wr(regTDBAH, 0xffffffff)
	r.wr(regTDLEN, 0xfffff)
	r.wr(regTCTL, tctlEN)
	r.wr(regTDT, 0xffff)
	r.wr(regTDH, 0xfff0)
	r.wr(regTDT, 3)
	r.setupRx(0x10000, 0xffff000000, 4, rctlEN|rctlUPE)
	r.deliver(frame(testMAC, 500, 1))
	r.waitRx(1)
	r.wr(regRDH, 0x8000)
	r.wr(regRDT, 0x8001)
	r.deliver(frame(testMAC, 500, 1))
	r.waitRx(2)
	if r.d.Stats().DMAErrors.Load() == 0 {
		t.Error("no DMA errors counted")
	}
	// A context descriptor with offsets at their maxima.
	r.setupTx(0x20000, 4)
	r.poke(0x20000, ctxDesc(255, 255, 0xffff, 255, 255, 0xffff, txdTSE|0xfffff, 255, 0xffff))
	r.poke(0x20010, txDesc(0x30000, 0xffff|txdDEXT|txdDTYPD|txdTSE|txdEOP, 3<<8))
	r.poke(0x20020, ctxDesc(200, 250, 3, 255, 254, 2, 0, 0, 0))
	r.poke(0x20030, txDesc(0x30000, 20|txdDEXT|txdDTYPD|txdEOP, 3<<8))
	r.wr(regTDT, 4)
	if h := r.rd(regTDH); h != 0 {
		t.Errorf("TDH %d", h)
	}
}

func TestSnapshotRestore(t *testing.T) {
	r := newRig(t, 8)
	r.setupRx(0x10000, 0x100000, 8, rctlEN|rctlBAM)
	r.wr(regIMS, IntRXT0|IntLSC)
	r.wr(regMTA+8, 0x1234)
	r.setupTx(0x20000, 8)
	// A frame half assembled.
	r.poke(0x20000, txDesc(0x30000, 40, 0))
	r.poke(0x30000, frame(testMAC, 40, 1))
	r.wr(regTDT, 1)
	r.d.Pause()
	snap, err := r.d.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r.d.Resume()
	r2 := newRig(t, 8)
	if err := r2.d.Restore(snap); err != nil {
		t.Fatal(err)
	}
	for _, off := range []uint32{regRCTL, regIMS, regMTA + 8, regRDLEN, regTDH, regRA, regRA + 4, regSTATUS} {
		if a, b := r.rd(off), r2.rd(off); a != b {
			t.Errorf("reg %#x: %#x restored as %#x", off, a, b)
		}
	}
	if r2.d.tx.size != 40 {
		t.Errorf("staged %d bytes", r2.d.tx.size)
	}
	// Corrupt records are refused without touching the device.
	for _, cut := range []int{1, len(snap) / 2, len(snap) - 1} {
		if err := r2.d.Restore(snap[:cut]); err == nil {
			t.Errorf("record cut at %d accepted", cut)
		}
	}
}

func TestPauseHoldsRx(t *testing.T) {
	r := newRig(t, 8)
	r.setupRx(0x10000, 0x100000, 8, rctlEN|rctlUPE)
	r.d.Pause()
	r.deliver(frame(testMAC, 100, 1))
	time.Sleep(30 * time.Millisecond)
	if r.rxSeen() != 0 {
		t.Fatal("paused device took a frame")
	}
	r.d.Resume()
	r.waitRx(1)
}

func TestNarrowAndBadAccesses(t *testing.T) {
	r := newRig(t, 8)
	m := mmio{r.d}
	// A byte read anywhere in a register reads its low byte (QEMU's
	// widened access); an unaligned word is two such bytes; 8 bytes are
	// two registers.
	if v := m.Read(devices.Access{Offset: regRA + 1, Size: 1}); v != 0x00 {
		t.Errorf("byte at RA+1 %#x", v)
	}
	if v := m.Read(devices.Access{Offset: regRA + 2, Size: 2}); v != 0x1600 {
		t.Errorf("word at RA+2 %#x", v)
	}
	if v := m.Read(devices.Access{Offset: regRA + 1, Size: 2}); v != 0x0000 {
		t.Errorf("unaligned word %#x", v)
	}
	if v := m.Read(devices.Access{Offset: regRA, Size: 8}); v != 0x80005634123e1600 {
		t.Errorf("8-byte read %#x", v)
	}
	m.Write(devices.Access{Offset: regMTA + 1, Size: 1}, 0xab)
	if v := r.rd(regMTA); v != 0xab {
		t.Errorf("byte write: MTA %#x", v)
	}
}

func TestNoAllocPerFrame(t *testing.T) {
	r := newRig(t, 64)
	const ring = 0x10000
	r.setupTx(ring, 64)
	r.setupRx(0x20000, 0x100000, 64, rctlEN|rctlUPE)
	// Causes unmasked: the interrupt and mitigation paths run too.
	r.wr(regIMS, IntTXDW|IntTXQE|IntRXT0|IntRXDMT0)
	f := frame(testMAC, 1514, 1)
	r.poke(0x40000, f)
	for i := range uint64(64) {
		r.poke(ring+16*i, txDesc(0x40000, 1514|txdEOP|txdRS, 0))
	}
	tail := uint32(0)
	tx := testing.AllocsPerRun(200, func() {
		tail = (tail + 1) % 64
		r.wr(regTDT, tail)
		r.be.TxQueue().Pop().Release()
		r.rd(regICR)
		r.clk.Advance(time.Millisecond)
		r.d.mu.Lock()
		r.d.timersLocked()
		r.d.mu.Unlock()
	})
	rx := testing.AllocsPerRun(200, func() {
		r.d.mu.Lock()
		r.d.receiveFrameLocked(f)
		r.d.st.r[ix(regRDT)] = (r.d.st.r[ix(regRDH)] + 63) % 64
		r.d.mu.Unlock()
		r.rd(regICR)
	})
	if tx != 0 || rx != 0 {
		t.Errorf("allocations per frame: tx %v rx %v", tx, rx)
	}
}

// conformant is BAR0 as devicetest sees it: a fresh device per call,
// reset and closed with it (the registers up to the multicast and VLAN
// tables; the filter tables beyond are plain storage).
type conformant struct{ mmio }

func (c conformant) Reset()       { c.d.Reset() }
func (c conformant) Close() error { return c.d.Close() }

func TestConformance(t *testing.T) {
	devicetest.Run(t, func() devices.Handler {
		r := newRig(t, 8)
		return conformant{mmio{r.d}}
	}, 0x5800)
}

// TestMitigation: a rising edge opens a window (at least 500×256 ns, ITR
// when larger) in which a new cause raises no edge; when it closes, the
// line follows the causes (QEMU set_interrupt_cause / e1000_mit_timer).
func TestMitigation(t *testing.T) {
	r := newRig(t, 8)
	fire := func(d time.Duration) {
		r.clk.Advance(d)
		r.d.mu.Lock()
		r.d.timersLocked()
		r.d.mu.Unlock()
	}
	r.wr(regIMS, IntRXT0)
	r.wr(regICS, IntRXT0)
	if !r.irq.Level() {
		t.Fatal("first cause raised no edge")
	}
	r.rd(regICR)
	r.wr(regICS, IntRXT0)
	if r.irq.Level() {
		t.Fatal("edge inside the window")
	}
	fire(mitMin*mitUnit - time.Nanosecond)
	if r.irq.Level() {
		t.Fatal("window closed early")
	}
	fire(time.Nanosecond)
	if !r.irq.Level() {
		t.Fatal("no edge when the window closed")
	}
	// ITR = 4000 (1.024 ms).
	r.wr(regITR, 4000)
	r.rd(regICR)
	fire(time.Second)
	r.wr(regICS, IntRXT0)
	r.rd(regICR)
	r.wr(regICS, IntRXT0)
	fire(1000 * time.Microsecond)
	if r.irq.Level() {
		t.Fatal("ITR window closed early")
	}
	fire(24 * time.Microsecond)
	if !r.irq.Level() {
		t.Fatal("no edge after the ITR window")
	}
}
