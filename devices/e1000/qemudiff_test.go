package e1000

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	"godm/devices"
	"godm/internal/qtest/qnic"
	"godm/internal/testfake"
	"godm/memory"
	"godm/netback"
)

// The differential test drives QEMU 7.2's e1000 (qtest, "pc" machine, the
// NIC at 00:04.0 on a UDP socket netdev the test holds the other end of)
// and godm's device (on a PCI bus, flat memory, a bare netback.Port) with
// one script, and compares every observation: register reads, EEPROM and
// PHY words, guest memory the device wrote (descriptors, buffers), frames
// it sent, and the edges of its interrupt line. godm runs on a fake clock
// the script moves; QEMU's runs (see step).

type nicTarget interface {
	rd(off uint32, size uint8) uint64
	wr(off uint32, size uint8, v uint64)
	cfgRead(off uint8) uint32
	memWrite(addr uint64, b []byte)
	memRead(addr uint64, n int) []byte
	edges() []bool
	// step moves the clock and runs the timers that came due.
	step(d time.Duration)
	// inject gives the NIC a frame from the network and waits until the
	// NIC has dealt with it.
	inject(frame []byte)
	sent() []byte
}

const (
	diffMMIO = 0xe0000000
	diffIO   = 0xc000
	diffSlot = 4
	diffIRQ  = 11
)

// --- QEMU

type qemuNIC struct{ *qnic.NIC }

func startQEMUNIC(t *testing.T) *qemuNIC {
	t.Helper()
	q := &qemuNIC{qnic.Start(t, qnic.Config{Device: "e1000", MAC: testMAC, Slot: diffSlot, IRQ: diffIRQ})}
	q.CfgWrite(0x10, 4, diffMMIO)
	q.CfgWrite(0x14, 4, diffIO)
	q.CfgWrite(0x04, 2, 0x7)
	return q
}

func (q *qemuNIC) rd(off uint32, size uint8) uint64    { return q.Read(diffMMIO+uint64(off), size) }
func (q *qemuNIC) wr(off uint32, size uint8, v uint64) { q.Write(diffMMIO+uint64(off), size, v) }
func (q *qemuNIC) cfgRead(off uint8) uint32            { return q.CfgRead(off) }
func (q *qemuNIC) memWrite(addr uint64, b []byte)      { q.MemWrite(addr, b) }
func (q *qemuNIC) memRead(addr uint64, n int) []byte   { return q.MemRead(addr, n) }
func (q *qemuNIC) edges() []bool                       { return q.Edges() }
func (q *qemuNIC) sent() []byte                        { return q.Sent() }

// step lets QEMU's virtual clock run d: under TCG with the guest halted
// (qtest.Options.Running, which the network layer needs) it follows the
// host's clock, so the script only observes what does not depend on
// when within a window a command lands.
func (q *qemuNIC) step(d time.Duration) { time.Sleep(d + 2*time.Millisecond) }

func (q *qemuNIC) inject(frame []byte) {
	// RDH and ICS (ICR's value without its read side effect) move when
	// QEMU took the frame; a filtered one moves nothing.
	look := func() uint64 { return q.rd(regRDH, 4)<<32 | q.rd(regICS, 4) }
	before := look()
	q.Send(frame)
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); {
		if look() != before {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
}

// --- godm

type godmNIC struct {
	t   *testing.T
	d   *Device
	bus *devices.Bus
	mem *memory.Flat
	be  portBE
	irq *testfake.Recorder
	clk *testfake.Clock
}

func startGodmNIC(t *testing.T) *godmNIC {
	t.Helper()
	g := &godmNIC{t: t, mem: memory.NewFlat(0, 16<<20), irq: &testfake.Recorder{}, clk: &testfake.Clock{}}
	g.be = portBE{netback.NewPort(netback.PortConfig{Depth: 16})}
	t.Cleanup(func() { g.be.Close() })
	d, err := New(Config{MAC: testMAC, Memory: g.mem, Backend: g.be, Clock: g.clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	g.bus = qnic.PlugGodm(t, d.Function(), diffSlot, g.irq)
	fn := d.Function()
	fn.Write(devices.Access{Offset: 0x10, Size: 4}, diffMMIO)
	fn.Write(devices.Access{Offset: 0x14, Size: 4}, diffIO)
	fn.Write(devices.Access{Offset: 0x04, Size: 2}, 7)
	g.d = d
	return g
}

func (g *godmNIC) rd(off uint32, size uint8) uint64 {
	return g.bus.MMIO.Read(diffMMIO+uint64(off), size, 0)
}
func (g *godmNIC) wr(off uint32, size uint8, v uint64) {
	g.bus.MMIO.Write(diffMMIO+uint64(off), size, 0, v)
}
func (g *godmNIC) cfgRead(off uint8) uint32 {
	return uint32(g.d.Function().Read(devices.Access{Offset: uint64(off), Size: 4}))
}
func (g *godmNIC) memWrite(addr uint64, b []byte) { g.mem.Write(memory.GPA(addr), b) }
func (g *godmNIC) memRead(addr uint64, n int) []byte {
	b := make([]byte, n)
	g.mem.Read(memory.GPA(addr), b)
	return b
}
func (g *godmNIC) edges() []bool { return g.irq.TakeEdges() }
func (g *godmNIC) step(d time.Duration) {
	g.clk.Advance(d)
	// The timers only wake the worker: run what they would, now.
	g.d.mu.Lock()
	g.d.timersLocked()
	g.d.mu.Unlock()
}
func (g *godmNIC) inject(frame []byte) {
	s := g.d.Stats()
	seen := func() uint64 { return s.RxFrames.Load() + s.RxFiltered.Load() + s.RxMissed.Load() }
	before := seen()
	f := g.be.Pool().Get()
	f.SetLen(copy(f.Buf(), frame))
	g.be.Deliver(f)
	testfake.Until(2*time.Second, func() bool { return seen() > before })
}
func (g *godmNIC) sent() []byte {
	f := g.be.TxQueue().Pop()
	if f == nil {
		return nil
	}
	defer f.Release()
	return slices.Clone(f.Bytes())
}

// --- the script

type observer struct {
	x   nicTarget
	log []string
}

func (o *observer) note(format string, args ...any) {
	o.log = append(o.log, fmt.Sprintf(format, args...))
}

func (o *observer) rd(what string, off uint32) uint32 {
	v := uint32(o.x.rd(off, 4))
	o.note("%s: %#05x = %#x", what, off, v)
	return v
}

func (o *observer) irq(what string) { o.note("%s: irq edges %v", what, o.x.edges()) }

func (o *observer) mem(what string, addr uint64, n int) {
	o.note("%s: mem %#x+%d = %x", what, addr, n, o.x.memRead(addr, n))
}

// regs are the registers the script reads after each step.
var diffRegs = []uint32{regCTRL, regSTATUS, regICS, regIMS, regRCTL, regTCTL, regRDH, regRDT, regTDH, regTDT,
	regMDIC, regEERD}

var diffStats = []uint32{regMPC, regPRC64, regPRC64 + 4, regPRC64 + 8, regPRC64 + 12, regPRC64 + 16, regPRC1522,
	regGPRC, regBPRC, regMPRC, regGPTC, regGORCL, regGORCH, regGOTCL, regGOTCH, regRNBC, regROC, regTORL, regTORH,
	regTOTL, regTOTH, regTPR, regTPT, regPTC64, regPTC64 + 4, regPTC64 + 8, regPTC64 + 12, regPTC64 + 16, regPTC1522,
	regMPTC, regBPTC, regTSCTC}

func (o *observer) snapshot(what string) {
	for _, r := range diffRegs {
		o.rd(what, r)
	}
	o.rd(what, regICR) // clears
	o.irq(what)
	for _, r := range diffStats {
		o.rd(what+" stats", r)
	}
	// Close any mitigation window, so the next step starts alike.
	o.x.step(time.Millisecond)
	o.irq(what + " window")
}

func diffScript(x nicTarget) []string {
	o := &observer{x: x}
	for off := 0; off < 0x40; off += 4 {
		o.note("config %#02x = %#08x", off, x.cfgRead(uint8(off)))
	}
	// Reset values of every register up to the filter tables, and a few
	// beyond; every width at the first registers.
	for off := uint32(0); off < 0x5c00; off += 4 {
		if off == regICR || off >= regCRCERRS && off < 0x4100 {
			continue // read-to-clear: read below
		}
		if v := x.rd(off, 4); v != 0 || off < 0x100 {
			o.note("reset %#05x = %#x", off, v)
		}
	}
	for _, off := range []uint32{regFFMT, regFFVT, regPBM, regPBM + 0xfffc, 0x1fffc} {
		o.rd("reset", off)
	}
	for off := uint32(0); off < 0x20; off++ {
		for _, size := range []uint8{1, 2, 4, 8} {
			o.note("reset %#x/%d = %#x", off, size, x.rd(off, size))
		}
	}
	for _, off := range diffStats {
		o.rd("reset stats", off)
	}
	// EEPROM through EERD, and through EECD bit-banging.
	for a := uint32(0); a < 66; a++ {
		x.wr(regEERD, 4, uint64(eerdStart|a<<eerdAddrShift))
		o.rd(fmt.Sprintf("eerd %d", a), regEERD)
	}
	for _, a := range []uint32{0, 1, 2, 11, 62, 63} {
		x.wr(regEECD, 4, eecdCS)
		clock := func(di bool) {
			v := uint64(eecdCS)
			if di {
				v |= eecdDI
			}
			x.wr(regEECD, 4, v)
			x.wr(regEECD, 4, v|eecdSK)
			x.wr(regEECD, 4, v)
		}
		cmd := uint32(eepromReadOp)<<6 | a
		for i := 8; i >= 0; i-- {
			clock(cmd&(1<<i) != 0)
		}
		for range 17 {
			x.wr(regEECD, 4, eecdCS|eecdSK)
			o.rd(fmt.Sprintf("eecd %d", a), regEECD)
			x.wr(regEECD, 4, eecdCS)
		}
		x.wr(regEECD, 4, 0)
	}
	// PHY registers through MDIC, reads of all, writes, other PHY
	// addresses, the MDAC interrupt.
	x.wr(regIMS, 4, IntMDAC)
	o.irq("ims")
	for reg := uint32(0); reg < 32; reg++ {
		x.wr(regMDIC, 4, uint64(mdicOpRead|1<<mdicPHYShift|reg<<mdicRegShift))
		o.rd(fmt.Sprintf("phy %d", reg), regMDIC)
	}
	for _, w := range []uint32{
		mdicOpWrite | 1<<mdicPHYShift | phyANAR<<mdicRegShift | 0x1234,
		mdicOpWrite | 1<<mdicPHYShift | phyBMSR<<mdicRegShift | 0xffff,
		mdicOpWrite | 1<<mdicPHYShift | phySpecCtrl<<mdicRegShift | 0xffff,
		mdicOpWrite | 2<<mdicPHYShift | phyANAR<<mdicRegShift | 0x1,
		mdicOpRead | 1<<mdicPHYShift | phyANAR<<mdicRegShift | mdicIntEn,
		mdicOpRead | 1<<mdicPHYShift | phySpecCtrl<<mdicRegShift,
	} {
		x.wr(regMDIC, 4, uint64(w))
		o.rd("mdic", regMDIC)
		o.rd("mdic", regICS)
		o.irq("mdic")
	}
	o.rd("mdic", regICR)
	o.irq("mdic icr")
	x.step(time.Millisecond)
	o.irq("mdic window")
	x.wr(regIMC, 4, IntMDAC)
	// Autonegotiation restart: the link drops, comes back 500 ms later
	// with LSC.
	x.wr(regIMS, 4, IntLSC)
	x.wr(regMDIC, 4, uint64(mdicOpWrite|1<<mdicPHYShift|phyBMCR<<mdicRegShift|bmcrAutoEn|bmcrANRestart|bmcrSpeed1000|bmcrFD))
	o.rd("autoneg", regSTATUS)
	x.step(600 * time.Millisecond)
	o.rd("autoneg 600ms", regSTATUS)
	x.wr(regMDIC, 4, uint64(mdicOpRead|1<<mdicPHYShift|phyBMSR<<mdicRegShift))
	o.rd("autoneg bmsr", regMDIC)
	o.snapshot("autoneg")

	// Register writes: masks, read-only ones, self-clearing bits.
	for _, w := range []struct {
		off uint32
		v   uint32
	}{
		{regCTRL, 0xffffffff}, {regCTRL, 0x00140240}, {regSTATUS, 0}, {regEECD, 0xffffffff}, {regEECD, 0},
		{regVET, 0xffffffff}, {regVET, 0x8100}, {regITR, 0xffffffff}, {regITR, 0}, {regRDTR, 0xffffffff},
		{regRADV, 0xffffffff}, {regTADV, 0xffffffff}, {regRDTR, 0}, {regRADV, 0}, {regTADV, 0},
		{regAIT, 0xffffffff}, {regTDFH, 0xffffffff}, {regTDFHS, 0xffffffff}, {regRDFPC, 0xffffffff},
		{regRDLEN, 0xffffffff}, {regTDLEN, 0xffffffff}, {regRDLEN, 0}, {regTDLEN, 0},
		{regRDH, 0xffffffff}, {regTDH, 0xffffffff}, {regRDH, 0}, {regTDH, 0}, {regRDT, 0xffffffff}, {regRDT, 0},
		{regPBA, 0xffffffff}, {regLEDCTL, 0xffffffff}, {regSWSM, 0xffffffff}, {regTXDCTL, 0xffffffff},
		{regFFLT, 0xffffffff}, {regFFMT, 0xffffffff}, {regFFVT, 0xffffffff}, {regWUC, 0xffffffff},
		{regMANC, 0}, {regTORL, 5}, {regMPC, 7}, {regIP4AT, 0x0a000001}, {regRA + 8, 0x44332211},
		{regRA + 12, 0x80006655}, {regMTA + 4, 0xffffffff}, {regVFTA, 0xffffffff}, {regPBM, 0x12345678},
		{0x00004, 0xffffffff}, {0x0018, 0xffffffff}, {0x0170, 0xffffffff}, {0x2828, 0xffffffff},
	} {
		x.wr(w.off, 4, uint64(w.v))
		o.rd(fmt.Sprintf("after %#x<-%#x", w.off, w.v), w.off)
	}
	// Narrow and unaligned writes.
	x.wr(regMTA+9, 1, 0xab)
	x.wr(regMTA+14, 2, 0xcdef)
	x.wr(regMTA+17, 2, 0xcdef)
	x.wr(regMTA+20, 8, 0x1122334455667788)
	for off := uint32(regMTA + 8); off < regMTA+24; off += 4 {
		o.rd("narrow", off)
	}
	// Interrupt causes and masks (mitigation windows closed between
	// steps: the unit tests time them).
	x.wr(regIMC, 4, 0xffffffff)
	o.irq("imc")
	x.wr(regICS, 4, IntTXDW|IntRXT0)
	o.rd("ics", regICS)
	o.irq("ics masked")
	x.wr(regIMS, 4, IntRXT0)
	o.irq("ims unmasks")
	x.step(time.Millisecond)
	x.wr(regICR, 4, IntRXT0) // write-one-to-clear
	o.irq("icr write")
	o.rd("icr write", regICS)
	x.step(time.Millisecond)
	x.wr(regICS, 4, IntRXT0)
	o.irq("ics again")
	o.rd("ics", regICR)
	o.irq("icr read")
	x.step(time.Millisecond)
	o.snapshot("ics")

	// Transmit: legacy descriptors.
	const txr, txb = 0x100000, 0x110000
	x.wr(regTDBAL, 4, txr)
	x.wr(regTDBAH, 4, 0)
	x.wr(regTDLEN, 4, 128)
	x.wr(regTDH, 4, 0)
	x.wr(regTDT, 4, 0)
	x.wr(regTCTL, 4, tctlEN|0x0f<<4|0x40<<12)
	x.wr(regIMS, 4, IntTXDW|IntTXQE|IntRXT0|IntRXO|IntRXDMT0|IntLSC)
	o.irq("tx setup")
	for i := range 10 {
		dst := [6]byte{0x02, 1, 2, 3, 4, 5}
		if i%3 == 1 {
			dst = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		} else if i%3 == 2 {
			dst = [6]byte{0x01, 0, 0x5e, 0, 0, 9}
		}
		f := frame(dst, 60+141*i, byte(i))
		slot := uint64(i % 8)
		x.memWrite(txb+0x1000*slot, f)
		lower := uint32(len(f)) | txdEOP | 0x02000000 // IFCS
		if i != 4 {
			lower |= txdRS
		}
		x.memWrite(txr+16*slot, txDesc(txb+0x1000*slot, lower, 0))
		x.wr(regTDT, 4, uint64((i+1)%8))
		o.note("tx %d sent % x", i, x.sent())
		o.mem("tx desc", txr+16*slot, 16)
		o.snapshot(fmt.Sprintf("tx %d", i))
	}
	// Checksum offload over two data descriptors, then TSO over three;
	// VLAN insertion.
	x.wr(regTDH, 4, 0)
	x.wr(regTDT, 4, 0)
	u := udpFrame(300)
	x.memWrite(txb, u[:40])
	x.memWrite(txb+0x1000, u[40:])
	x.memWrite(txr, ctxDesc(14, 24, 33, 34, 40, 0, 0, 0, 0))
	x.memWrite(txr+16, txDesc(txb, 40|txdDEXT|txdDTYPD, (poptsIXSM|poptsTXSM)<<8))
	x.memWrite(txr+32, txDesc(txb+0x1000, uint32(len(u)-40)|txdDEXT|txdDTYPD|txdEOP|txdRS, 0))
	x.wr(regTDT, 4, 3)
	o.note("csum sent % x", x.sent())
	o.mem("csum desc", txr, 48)
	o.snapshot("csum")
	tf := tcpFrame(2500)
	binary.BigEndian.PutUint16(tf[50:], 0x1f2e)
	x.memWrite(txb+0x2000, tf)
	x.memWrite(txr+48, ctxDesc(14, 24, 33, 34, 50, 0, txdTSE|txdIP|txdTCP|2500, 54, 1000))
	x.memWrite(txr+64, txDesc(txb+0x2000, 100|txdDEXT|txdDTYPD|txdTSE|txdIDE, (poptsIXSM|poptsTXSM)<<8))
	x.memWrite(txr+80, txDesc(txb+0x2000+100, 1500|txdDEXT|txdDTYPD|txdTSE, 0))
	x.memWrite(txr+96, txDesc(txb+0x2000+1600, uint32(len(tf)-1600)|txdDEXT|txdDTYPD|txdTSE|txdEOP|txdRS, 0))
	x.wr(regTDT, 4, 7)
	for i := range 3 {
		o.note("tso segment %d % x", i, x.sent())
	}
	o.mem("tso desc", txr+48, 64)
	o.snapshot("tso")
	x.wr(regCTRL, 4, 0x00140240|ctrlVME)
	x.memWrite(txr+112, txDesc(txb, uint32(len(u))|txdEOP|txdRS|txdVLE, 0x0123<<16))
	x.memWrite(txb, u)
	x.wr(regTDT, 4, 0)
	o.note("vlan sent % x", x.sent())
	o.snapshot("vlan tx")
	x.wr(regCTRL, 4, 0x00140240)

	// Receive: an 8-descriptor ring of 2 KiB buffers, then 256-byte ones.
	const rxr, rxb = 0x200000, 0x210000
	for i := range uint64(8) {
		x.memWrite(rxr+16*i, txDesc(rxb+0x1000*i, 0, 0))
	}
	x.wr(regRDBAL, 4, rxr)
	x.wr(regRDBAH, 4, 0)
	x.wr(regRDLEN, 4, 128)
	x.wr(regRDH, 4, 0)
	x.wr(regRDT, 4, 7)
	x.wr(regRA+8, 4, 0)
	x.wr(regRA+12, 4, 0)
	mc := [6]byte{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}
	f := (uint32(mc[5])<<8 | uint32(mc[4])) >> 4 & 0xfff
	x.wr(regMTA+4*(f>>5), 4, 1<<(f&31))
	x.wr(regRCTL, 4, rctlEN|rctlBAM|rctlRDMTS&0x100)
	x.step(1100 * time.Millisecond) // QEMU holds frames 1 s after an RCTL write
	o.snapshot("rx setup")
	rxCases := []struct {
		dst [6]byte
		n   int
	}{
		{testMAC, 100}, {[6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 342}, {[6]byte{0x02, 1, 2, 3, 4, 5}, 100},
		{mc, 200}, {testMAC, 30}, {testMAC, 1514}, {testMAC, 1000},
	}
	for i, c := range rxCases {
		x.inject(frame(c.dst, c.n, byte(i)))
		o.snapshot(fmt.Sprintf("rx %d", i))
	}
	o.mem("rx ring", rxr, 128)
	for i := range uint64(6) {
		o.mem("rx buf", rxb+0x1000*i, 1520)
	}
	// Ring full: RDH 6 = RDT 7 - 1... the driver gives 3 more.
	x.wr(regRDT, 4, 2)
	// VLAN stripping, and 256-byte buffers over several descriptors,
	// and a frame too big for the buffers left (RXO).
	x.wr(regCTRL, 4, 0x00140240|ctrlVME)
	x.wr(regRCTL, 4, rctlEN|rctlUPE|0x30000|rctlSECRC)
	x.step(1100 * time.Millisecond)
	in := frame(testMAC, 300, 7)
	tagged := append(append(append([]byte{}, in[:12]...), 0x81, 0x00, 0x40, 0x05), in[12:]...)
	x.inject(tagged)
	o.snapshot("rx vlan")
	x.inject(frame(testMAC, 700, 9))
	o.snapshot("rx big")
	o.mem("rx ring 2", rxr, 128)
	for i := range uint64(8) {
		o.mem("rx buf 2", rxb+0x1000*i, 300)
	}
	x.wr(regCTRL, 4, 0x00140240)

	// PHY loopback: a frame sent comes back.
	x.wr(regRDT, 4, 7)
	x.wr(regRCTL, 4, rctlEN|rctlUPE)
	x.step(1100 * time.Millisecond)
	x.wr(regMDIC, 4, uint64(mdicOpWrite|1<<mdicPHYShift|phyBMCR<<mdicRegShift|bmcrLoopback|bmcrSpeed1000|bmcrFD))
	lf := frame(testMAC, 200, 0x33)
	x.memWrite(txb, lf)
	x.memWrite(txr, txDesc(txb, uint32(len(lf))|txdEOP|txdRS, 0))
	x.wr(regTDH, 4, 0)
	x.wr(regTDT, 4, 1)
	o.snapshot("loopback")
	o.mem("loopback ring", rxr, 128)
	return o.log
}

func TestQEMUDiff(t *testing.T) {
	q := startQEMUNIC(t)
	g := startGodmNIC(t)
	want := diffScript(q)
	got := diffScript(g)
	bad := 0
	for i := 0; i < max(len(want), len(got)); i++ {
		var w, gl string
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			gl = got[i]
		}
		if w != gl {
			bad++
			if bad <= 40 {
				t.Errorf("observation %d:\n  QEMU: %s\n  godm: %s", i, w, gl)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d observations differ", bad, len(want))
	}
	t.Logf("%d observations compared", len(want))
}
