package piix3

import (
	"fmt"

	"godm/devices"
	"godm/devices/savestate"
)

// StateVersion is the version of the bridge's snapshot record.
const StateVersion = 1

// RecordName names the bridge's records.
const RecordName = "PIIX3"

var _ devices.Snapshotter = (*Device)(nil)

// Snapshot implements devices.Snapshotter: the PCI function's state
// (with the PIRQ route registers) and the reset control register. The
// per-slot INTx wiring is not saved: it follows the other functions'
// INTx levels, which they restore themselves; the link routes already
// sent live in Xen's HVM context (hvm_irq's pci_link), saved with the
// domain.
func (d *Device) Snapshot() ([]byte, error) {
	var w savestate.Writer
	d.fn.WriteState(&w)
	d.rcr.mu.Lock()
	w.U8(d.rcr.rcr)
	d.rcr.mu.Unlock()
	return savestate.Record(RecordName, StateVersion, w.Out()), nil
}

// Restore implements devices.Snapshotter.
func (d *Device) Restore(b []byte) error {
	_, r, err := savestate.Open(b, RecordName, StateVersion)
	if err != nil {
		return err
	}
	if err := d.fn.ReadState(r); err != nil {
		return fmt.Errorf("piix3: %w", err)
	}
	rcr := r.U8()
	if rcr&^rcrSysReset != 0 {
		r.Fail(fmt.Errorf("reset control %#x: %w", rcr, savestate.ErrFormat))
	}
	if err := r.Done(); err != nil {
		return fmt.Errorf("piix3: restore: %w", err)
	}
	d.rcr.mu.Lock()
	d.rcr.rcr = rcr
	d.rcr.mu.Unlock()
	return nil
}
