package i440fx

import (
	"fmt"

	"godm/devices"
	"godm/devices/savestate"
)

// StateVersion is the version of the host bridge's snapshot record.
const StateVersion = 1

// RecordName names the host bridge's records.
const RecordName = "i440FX"

var _ devices.Snapshotter = (*Device)(nil)

// Snapshot implements devices.Snapshotter: the PCI function's state and
// CONFIG_ADDRESS.
func (d *Device) Snapshot() ([]byte, error) {
	var w savestate.Writer
	d.fn.WriteState(&w)
	w.U32(d.addr.v.Load())
	return savestate.Record(RecordName, StateVersion, w.Out()), nil
}

// Restore implements devices.Snapshotter.
func (d *Device) Restore(b []byte) error {
	_, r, err := savestate.Open(b, RecordName, StateVersion)
	if err != nil {
		return err
	}
	if err := d.fn.ReadState(r); err != nil {
		return fmt.Errorf("i440fx: %w", err)
	}
	addr := r.U32()
	if err := r.Done(); err != nil {
		return fmt.Errorf("i440fx: restore: %w", err)
	}
	d.addr.v.Store(addr)
	return nil
}
