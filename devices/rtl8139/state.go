package rtl8139

import (
	"fmt"
	"time"

	"godm/devices"
	"godm/devices/savestate"
)

// StateVersion is the version of the device's snapshot record.
const StateVersion = 1

// RecordName names the device's records.
const RecordName = "rtl8139"

var (
	_ devices.Snapshotter = (*Device)(nil)
	_ devices.Pauser      = (*Device)(nil)
	_ devices.Resetter    = (*Device)(nil)
)

// Snapshot implements devices.Snapshotter: the PCI function, the
// register file, the EEPROM, the ring pointers, the tally counters, a C+
// frame being assembled. Frames waiting in the back-end are the
// back-end's (QEMU does not migrate its queues either). Take it paused.
func (d *Device) Snapshot() ([]byte, error) {
	var w savestate.Writer
	d.fn.WriteState(&w)
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &d.st
	w.Bytes(s.phys[:])
	w.Bytes(s.mult[:])
	for i := range 4 {
		w.U32(s.txStatus[i])
		w.U32(s.txAddr[i])
	}
	for _, v := range []uint32{s.rxBuf, s.rxBufSize, s.rxBufPtr, s.rxBufAddr, s.tcr, s.rcr, s.rxMissed,
		s.currTxDesc, s.cpRxDesc, s.cpTxDesc, s.rxRingLo, s.rxRingHi, s.timerInt} {
		w.U32(v)
	}
	for _, v := range []uint16{s.isr, s.imr, s.cscr, s.multiIntr, s.bmcr, s.bmsr, s.anar, s.anlpar, s.aner, s.cpCmd} {
		w.U16(v)
	}
	for _, v := range []uint8{s.cfg9346, s.config0, s.config1, s.config3, s.config4, s.config5, s.cmd, s.txThresh} {
		w.U8(v)
	}
	w.Bool(s.clockEnabled)
	w.Bool(s.cplus)
	w.Bool(s.txStalled)
	w.Bool(s.linkDown)
	// The timer as an offset from now, so it means the same on another
	// clock.
	w.U64(uint64(d.clk.Now() - s.tctrBase))
	e := &s.ee
	for _, c := range e.contents {
		w.U16(c)
	}
	w.U8(e.mode)
	w.U8(e.tick)
	w.U8(e.address)
	w.U16(e.input)
	w.U16(e.output)
	for _, b := range []bool{e.cs, e.sk, e.di, e.do} {
		w.Bool(b)
	}
	t := &s.tally
	for _, v := range []uint64{t.txOK, t.rxOK, t.txErr, t.rxOKPhy, t.rxOKBrd} {
		w.U64(v)
	}
	for _, v := range []uint32{t.rxErr, t.tx1Col, t.txMCol, t.rxOKMul} {
		w.U32(v)
	}
	for _, v := range []uint16{t.missPkt, t.fae, t.txAbt, t.txUndrn} {
		w.U16(v)
	}
	w.U32(uint32(s.cpTxLen))
	w.Bytes(d.txBuf[:min(s.cpTxLen, txStage)])
	return savestate.Record(RecordName, StateVersion, w.Out()), nil
}

// Restore implements devices.Snapshotter. The PCI function's state is
// loaded first (pci.Device.ReadState); the device's own registers change
// only if the whole record is valid. A refused record leaves the device
// to be reset, as the board's Restore says.
func (d *Device) Restore(b []byte) error {
	_, r, err := savestate.Open(b, RecordName, StateVersion)
	if err != nil {
		return err
	}
	var s state
	if err := d.fn.ReadState(r); err != nil {
		return fmt.Errorf("rtl8139: %w", err)
	}
	r.Fixed(s.phys[:])
	r.Fixed(s.mult[:])
	for i := range 4 {
		s.txStatus[i] = r.U32()
		s.txAddr[i] = r.U32()
	}
	for _, p := range []*uint32{&s.rxBuf, &s.rxBufSize, &s.rxBufPtr, &s.rxBufAddr, &s.tcr, &s.rcr, &s.rxMissed,
		&s.currTxDesc, &s.cpRxDesc, &s.cpTxDesc, &s.rxRingLo, &s.rxRingHi, &s.timerInt} {
		*p = r.U32()
	}
	for _, p := range []*uint16{&s.isr, &s.imr, &s.cscr, &s.multiIntr, &s.bmcr, &s.bmsr, &s.anar, &s.anlpar, &s.aner, &s.cpCmd} {
		*p = r.U16()
	}
	for _, p := range []*uint8{&s.cfg9346, &s.config0, &s.config1, &s.config3, &s.config4, &s.config5, &s.cmd, &s.txThresh} {
		*p = r.U8()
	}
	s.clockEnabled = r.Bool()
	s.cplus = r.Bool()
	s.txStalled = r.Bool()
	s.linkDown = r.Bool()
	elapsed := time.Duration(r.U64())
	e := &s.ee
	for i := range e.contents {
		e.contents[i] = r.U16()
	}
	e.mode, e.tick, e.address = r.U8(), r.U8(), r.U8()
	e.input, e.output = r.U16(), r.U16()
	e.cs, e.sk, e.di, e.do = r.Bool(), r.Bool(), r.Bool(), r.Bool()
	t := &s.tally
	for _, p := range []*uint64{&t.txOK, &t.rxOK, &t.txErr, &t.rxOKPhy, &t.rxOKBrd} {
		*p = r.U64()
	}
	for _, p := range []*uint32{&t.rxErr, &t.tx1Col, &t.txMCol, &t.rxOKMul} {
		*p = r.U32()
	}
	for _, p := range []*uint16{&t.missPkt, &t.fae, &t.txAbt, &t.txUndrn} {
		*p = r.U16()
	}
	s.cpTxLen = int(r.U32())
	staged := r.Bytes(txStage)
	// Invariants the device relies on: a power-of-two ring of 8-64 KiB
	// with pointers inside it, descriptor indices inside their rings,
	// the EEPROM state machine's ranges, the staged bytes' count.
	switch s.rxBufSize {
	case 8192, 16384, 32768, 65536:
	default:
		r.Fail(fmt.Errorf("rx ring size %d: %w", s.rxBufSize, savestate.ErrFormat))
	}
	if s.rxBufPtr >= s.rxBufSize || s.rxBufAddr >= s.rxBufSize || s.currTxDesc >= 4 ||
		s.cpRxDesc >= cpRxRing || s.cpTxDesc >= cpTxRing || e.mode > eeDataWriteAll || e.tick > 16 ||
		e.address >= eeWords || s.cpTxLen > 1<<20 || len(staged) != min(s.cpTxLen, txStage) || elapsed < 0 {
		r.Fail(fmt.Errorf("rtl8139: state out of range: %w", savestate.ErrFormat))
	}
	if err := r.Done(); err != nil {
		return fmt.Errorf("rtl8139: restore: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s.tctrBase = d.clk.Now() - elapsed
	d.st = s
	copy(d.txBuf[:], staged)
	d.armTimerLocked()
	d.updateIRQLocked()
	d.w.Wake()
	return nil
}
