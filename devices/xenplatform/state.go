package xenplatform

import (
	"fmt"

	"godm/devices"
	"godm/devices/savestate"
)

// StateVersion is the version of the platform device's snapshot record.
const StateVersion = 1

// RecordName names the platform device's records.
const RecordName = "xen-platform"

var _ devices.Snapshotter = (*Device)(nil)

// Snapshot implements devices.Snapshotter: the PCI function's state, the
// platform flags, the PV driver's product and build numbers, the unplug
// mask and the partial log line. The log's rate limiter is host policy
// and starts afresh.
func (d *Device) Snapshot() ([]byte, error) {
	var w savestate.Writer
	d.fn.WriteState(&w)
	d.mu.Lock()
	w.U8(d.flags)
	w.U16(d.product)
	w.U32(d.build)
	w.U16(uint16(d.unplugged))
	w.Bytes(d.logBuf[:d.logLen])
	d.mu.Unlock()
	return savestate.Record(RecordName, StateVersion, w.Out()), nil
}

// Restore implements devices.Snapshotter. The ROM lock flag is taken as
// saved without asking Xen again: the memory types of the ROM area are
// the domain's, saved and restored with it.
func (d *Device) Restore(b []byte) error {
	_, r, err := savestate.Open(b, RecordName, StateVersion)
	if err != nil {
		return err
	}
	if err := d.fn.ReadState(r); err != nil {
		return fmt.Errorf("xenplatform: %w", err)
	}
	flags, product, build, unplugged := r.U8(), r.U16(), r.U32(), UnplugMask(r.U16())
	line := r.Bytes(logBufferSize - 1)
	if flags&^FlagROMLock != 0 {
		r.Fail(fmt.Errorf("flags %#x: %w", flags, savestate.ErrFormat))
	}
	if err := r.Done(); err != nil {
		return fmt.Errorf("xenplatform: restore: %w", err)
	}
	d.romMu.Lock()
	defer d.romMu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.flags, d.product, d.build, d.unplugged = flags, product, build, unplugged
	d.logLen = copy(d.logBuf[:], line)
	return nil
}
