package uhci

import (
	"fmt"
	"time"

	"godm/devices"
	"godm/devices/savestate"
)

// StateVersion is the version of the controller's snapshot record.
const StateVersion = 1

// RecordName names the controller's records.
const RecordName = "piix3-usb-uhci"

var (
	_ devices.Snapshotter = (*Controller)(nil)
	_ devices.Pauser      = (*Controller)(nil)
)

// Snapshot implements devices.Snapshotter: the PCI function and the
// register file (the devices on the ports are records of their own).
// Take it paused.
func (d *Controller) Snapshot() ([]byte, error) {
	var w savestate.Writer
	d.fn.WriteState(&w)
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &d.st
	for _, v := range []uint16{s.cmd, s.status, s.intr, s.frnum} {
		w.U16(v)
	}
	w.U32(s.flbase)
	w.U8(s.sof)
	w.U8(s.status2)
	w.U8(s.pending)
	for _, p := range s.ports {
		w.U16(p)
	}
	w.Bool(d.running)
	// How far into the current frame: the same on another clock.
	var since time.Duration
	if d.running {
		since = min(max(0, d.clk.Now()-s.lastRun), maxCatchUp*FrameTime)
	}
	w.U64(uint64(since))
	return savestate.Record(RecordName, StateVersion, w.Out()), nil
}

// Restore implements devices.Snapshotter. A record that does not read
// changes nothing.
func (d *Controller) Restore(b []byte) error {
	_, r, err := savestate.Open(b, RecordName, StateVersion)
	if err != nil {
		return err
	}
	fs := d.fn.Save()
	if err := d.fn.ReadState(r); err != nil {
		return err
	}
	var s state
	s.cmd, s.status, s.intr, s.frnum = r.U16(), r.U16(), r.U16(), r.U16()
	s.flbase = r.U32()
	s.sof = r.U8()
	s.status2 = r.U8()
	s.pending = r.U8()
	for i := range s.ports {
		s.ports[i] = r.U16()
	}
	running := r.Bool()
	since := time.Duration(r.U64())
	if err := r.Done(); err != nil {
		_ = d.fn.Restore(fs)
		return err
	}
	if s.frnum > 0x7ff || s.flbase&0xfff != 0 || s.status2 > 3 || s.pending > 3 || since < 0 || since > maxCatchUp*FrameTime {
		_ = d.fn.Restore(fs)
		return fmt.Errorf("uhci: restore: %w", savestate.ErrFormat)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s.lastRun = d.clk.Now() - since
	d.stopTimerLocked()
	d.st = s
	if running && s.cmd&CmdRS != 0 {
		d.armLocked()
	}
	d.updateIRQLocked()
	return nil
}
