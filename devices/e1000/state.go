package e1000

import (
	"fmt"
	"time"

	"godm/devices"
	"godm/devices/savestate"
)

// StateVersion is the version of the device's snapshot record.
const StateVersion = 1

// RecordName names the device's records.
const RecordName = "e1000"

var (
	_ devices.Snapshotter = (*Device)(nil)
	_ devices.Pauser      = (*Device)(nil)
	_ devices.Resetter    = (*Device)(nil)
)

// Snapshot implements devices.Snapshotter: the PCI function, the register
// file (the non-zero registers), the PHY, the EEPROM and its wire state,
// the interrupt mitigation and autonegotiation timers as time left, a
// frame being assembled with its offload setup. Frames waiting in the
// back-end are the back-end's (QEMU does not migrate its queues either).
// Take it paused.
func (d *Device) Snapshot() ([]byte, error) {
	var w savestate.Writer
	d.fn.WriteState(&w)
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &d.st
	n := 0
	for _, v := range s.r {
		if v != 0 {
			n++
		}
	}
	w.U32(uint32(n))
	for i, v := range s.r {
		if v != 0 {
			w.U32(uint32(i))
			w.U32(v)
		}
	}
	for _, v := range s.phy {
		w.U16(v)
	}
	for _, v := range s.ee {
		w.U16(v)
	}
	for _, v := range []uint32{s.eeValIn, s.eeOld, s.rxBufSize, s.rxMinShft} {
		w.U32(v)
	}
	w.U16(s.eeBitIn)
	w.U16(s.eeBitOut)
	now := d.clk.Now()
	left := func(at time.Duration) uint64 {
		if at == 0 {
			return 0
		}
		return uint64(max(at-now, 1))
	}
	for _, b := range []bool{s.eeReading, s.mitOn, s.mitLevel, s.mitIDE, s.txStalled, s.linkDown} {
		w.Bool(b)
	}
	w.U64(left(s.mitAt))
	w.U64(left(s.autonegAt))
	t := &d.tx
	for _, p := range []*txProps{&t.props, &t.tso} {
		w.U8(p.ipcss)
		w.U8(p.ipcso)
		w.U16(p.ipcse)
		w.U8(p.tucss)
		w.U8(p.tucso)
		w.U16(p.tucse)
		w.U32(p.paylen)
		w.U8(p.hdrLen)
		w.U16(p.mss)
		w.Bool(p.ip)
		w.Bool(p.tcp)
	}
	w.U32(uint32(t.size))
	w.U8(t.sumNeeded)
	w.Bool(t.cptse)
	w.Bool(t.vlanNeeded)
	w.Bytes(t.vlanHdr[:])
	w.U16(t.tsoFrames)
	w.Bytes(d.txHdr[:])
	w.Bytes(d.txDataBuf()[:t.size])
	return savestate.Record(RecordName, StateVersion, w.Out()), nil
}

// Restore implements devices.Snapshotter. The PCI function's state is
// loaded first (pci.Device.ReadState); the device's own state changes
// only if the whole record is valid. A refused record leaves the device
// to be reset, as the board's Restore says.
func (d *Device) Restore(b []byte) error {
	_, r, err := savestate.Open(b, RecordName, StateVersion)
	if err != nil {
		return err
	}
	if err := d.fn.ReadState(r); err != nil {
		return fmt.Errorf("e1000: %w", err)
	}
	s := new(state)
	n := r.U32()
	bad := n > nregs
	for range min(n, nregs) {
		i, v := r.U32(), r.U32()
		if i >= nregs {
			bad = true
			break
		}
		s.r[i] = v
	}
	for i := range s.phy {
		s.phy[i] = r.U16()
	}
	for i := range s.ee {
		s.ee[i] = r.U16()
	}
	for _, p := range []*uint32{&s.eeValIn, &s.eeOld, &s.rxBufSize, &s.rxMinShft} {
		*p = r.U32()
	}
	s.eeBitIn, s.eeBitOut = r.U16(), r.U16()
	for _, p := range []*bool{&s.eeReading, &s.mitOn, &s.mitLevel, &s.mitIDE, &s.txStalled, &s.linkDown} {
		*p = r.Bool()
	}
	mitLeft, anLeft := time.Duration(r.U64()), time.Duration(r.U64())
	var t txState
	for _, p := range []*txProps{&t.props, &t.tso} {
		p.ipcss, p.ipcso, p.ipcse = r.U8(), r.U8(), r.U16()
		p.tucss, p.tucso, p.tucse = r.U8(), r.U8(), r.U16()
		p.paylen, p.hdrLen, p.mss = r.U32(), r.U8(), r.U16()
		p.ip, p.tcp = r.Bool(), r.Bool()
	}
	t.size = int(r.U32())
	t.sumNeeded = r.U8()
	t.cptse, t.vlanNeeded = r.Bool(), r.Bool()
	vh := r.Bytes(4)
	t.tsoFrames = r.U16()
	hdr := r.Bytes(256)
	staged := r.Bytes(txData)
	// Invariants the device relies on: the staged frame inside its
	// buffer, the receive buffer size one RCTL gives, timers in range.
	switch s.rxBufSize {
	case 0, 256, 512, 1024, 2048, 4096, 8192, 16384:
	default:
		bad = true
	}
	if bad || len(vh) != 4 || len(hdr) != 256 || t.size > txData || len(staged) != t.size ||
		s.rxMinShft < 1 || s.rxMinShft > 4 || mitLeft < 0 || anLeft < 0 || mitLeft > time.Second ||
		anLeft > time.Second {
		r.Fail(fmt.Errorf("e1000: state out of range: %w", savestate.ErrFormat))
	}
	if err := r.Done(); err != nil {
		return fmt.Errorf("e1000: restore: %w", err)
	}
	copy(t.vlanHdr[:], vh)
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clk.Now()
	d.st = *s
	if mitLeft > 0 {
		d.st.mitAt = now + mitLeft
		d.armLocked(&d.mit, mitLeft)
	}
	if anLeft > 0 {
		d.st.autonegAt = now + anLeft
		d.armLocked(&d.autoneg, anLeft)
	}
	d.tx = t
	copy(d.txHdr[:], hdr)
	copy(d.txDataBuf(), staged)
	d.fn.SetINTx(d.st.mitLevel)
	d.w.Wake()
	return nil
}
