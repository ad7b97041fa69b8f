package piix4pm

import (
	"fmt"

	"godm/devices"
	"godm/devices/savestate"
)

// StateVersion is the version of the PM function's snapshot record.
const StateVersion = 1

// RecordName names the PM function's records.
const RecordName = "piix4-pm"

var _ devices.Snapshotter = (*Device)(nil)

// Snapshot implements devices.Snapshotter: the PCI function's state, PM1a
// control, GPE0 status and enable, the hotplug up/down bits, the
// processors present and the debug bytes. SCI follows from GPE0.
func (d *Device) Snapshot() ([]byte, error) {
	var w savestate.Writer
	d.fn.WriteState(&w)
	d.mu.Lock()
	w.U16(d.pm1Cnt)
	w.U16(d.gpeSts)
	w.U16(d.gpeEn)
	w.U32(d.pciUp)
	w.U32(d.pciDown)
	w.Bytes(d.cpus[:])
	w.Bytes(d.debug[:])
	d.mu.Unlock()
	return savestate.Record(RecordName, StateVersion, w.Out()), nil
}

// Restore implements devices.Snapshotter.
func (d *Device) Restore(b []byte) error {
	_, r, err := savestate.Open(b, RecordName, StateVersion)
	if err != nil {
		return err
	}
	if err := d.fn.ReadState(r); err != nil {
		return fmt.Errorf("piix4pm: %w", err)
	}
	pm1, sts, en := r.U16(), r.U16(), r.U16()
	up, down := r.U32(), r.U32()
	var cpus [CPUPresentLen]byte
	var debug [DebugLen]byte
	r.Fixed(cpus[:])
	r.Fixed(debug[:])
	if err := r.Done(); err != nil {
		return fmt.Errorf("piix4pm: restore: %w", err)
	}
	d.mu.Lock()
	d.pm1Cnt, d.gpeSts, d.gpeEn, d.pciUp, d.pciDown = pm1, sts, en, up, down
	d.cpus, d.debug = cpus, debug
	d.updateSCILocked()
	d.mu.Unlock()
	return nil
}
