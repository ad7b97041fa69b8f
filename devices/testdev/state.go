package testdev

import (
	"fmt"

	"godm/devices"
	"godm/devices/savestate"
)

// StateVersion is the version of the test device's snapshot record.
const StateVersion = 1

// RecordName names the test device's records.
const RecordName = "godm-testdev"

var (
	_ devices.Snapshotter = (*Device)(nil)
	_ devices.Pauser      = (*Device)(nil)
)

// Snapshot implements devices.Snapshotter: the PCI function's state
// (MSI-X table and pending bits included), the registers, and whether a
// doorbell waits for its fill. Take it paused: a fill under way is not
// part of any register until it completes.
func (d *Device) Snapshot() ([]byte, error) {
	var w savestate.Writer
	d.fn.WriteState(&w)
	d.mu.Lock()
	for _, v := range []uint32{d.scratch, d.dmaLen, d.seed, d.vector, d.ioScr, d.done.Load(), d.status.Load()} {
		w.U32(v)
	}
	w.U64(d.dmaAddr)
	w.Bool(d.intx)
	w.Bool(d.pending)
	d.mu.Unlock()
	return savestate.Record(RecordName, StateVersion, w.Out()), nil
}

// Restore implements devices.Snapshotter. A pending doorbell is rung
// again (its fill runs once the device is not paused).
func (d *Device) Restore(b []byte) error {
	_, r, err := savestate.Open(b, RecordName, StateVersion)
	if err != nil {
		return err
	}
	if err := d.fn.ReadState(r); err != nil {
		return fmt.Errorf("testdev: %w", err)
	}
	var v [7]uint32
	for i := range v {
		v[i] = r.U32()
	}
	addr := r.U64()
	intx, pending := r.Bool(), r.Bool()
	if v[6] > StatusBadLen {
		r.Fail(fmt.Errorf("status %d: %w", v[6], savestate.ErrFormat))
	}
	if err := r.Done(); err != nil {
		return fmt.Errorf("testdev: restore: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++ // a fill of the state replaced completes silently
	d.scratch, d.dmaLen, d.seed, d.vector, d.ioScr = v[0], v[1], v[2], v[3], v[4]
	d.done.Store(v[5])
	d.status.Store(v[6])
	d.dmaAddr = addr
	d.intx = intx
	if intx {
		d.fn.SetINTx(true)
	}
	d.pending = pending
	if pending {
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
	return nil
}
