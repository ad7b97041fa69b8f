package virtionet

import (
	"fmt"

	"godm/devices"
	"godm/devices/savestate"
)

// StateVersion is the version of the device's snapshot record.
const StateVersion = 1

// RecordName names the device's records.
const RecordName = "virtio-net"

var (
	_ devices.Snapshotter = (*Device)(nil)
	_ devices.Pauser      = (*Device)(nil)
)

// Snapshot implements devices.Snapshotter: the PCI function, the
// transport (registers, ring positions, ISR), the configuration's MAC,
// the cable, a transmit or control kick waiting, the receive filter. No chain is held between frames, so
// a paused device has nothing in flight; frames waiting in the back-end
// are the back-end's (QEMU does not migrate its queues either). Take it
// paused.
func (d *Device) Snapshot() ([]byte, error) {
	var w savestate.Writer
	d.Function().WriteState(&w)
	d.t.WriteState(&w)
	d.mu.Lock()
	defer d.mu.Unlock()
	w.Bytes(d.st.cfgMAC[:])
	w.Bool(d.st.linkDown)
	w.Bool(d.st.txPending)
	w.Bool(d.st.ctrlPending)
	f := &d.st.filter
	for _, b := range []bool{f.promisc, f.allMulti, f.allUni, f.noMulti, f.noUni, f.noBcast, f.uniOverflow, f.multiOverflow} {
		w.Bool(b)
	}
	w.U8(uint8(f.nUni))
	w.U8(uint8(f.nMulti))
	for _, m := range f.macs[:f.nUni+f.nMulti] {
		w.Bytes(m[:])
	}
	return savestate.Record(RecordName, StateVersion, w.Out()), nil
}

// Restore implements devices.Snapshotter.
func (d *Device) Restore(b []byte) error {
	_, r, err := savestate.Open(b, RecordName, StateVersion)
	if err != nil {
		return err
	}
	if err := d.Function().ReadState(r); err != nil {
		return fmt.Errorf("virtio-net: restore: %w", err)
	}
	if err := d.t.ReadState(r); err != nil {
		return fmt.Errorf("virtio-net: restore: %w", err)
	}
	mac := r.Bytes(6)
	down := r.Bool()
	pending := r.Bool()
	ctrlPending := r.Bool()
	var f rxFilter
	for _, b := range []*bool{&f.promisc, &f.allMulti, &f.allUni, &f.noMulti, &f.noUni, &f.noBcast, &f.uniOverflow, &f.multiOverflow} {
		*b = r.Bool()
	}
	f.nUni, f.nMulti = int(r.U8()), int(r.U8())
	if len(mac) != 6 || f.nUni+f.nMulti > macTable {
		r.Fail(fmt.Errorf("virtio-net: mac or filter table: %w", savestate.ErrFormat))
	} else {
		for i := range f.nUni + f.nMulti {
			if m := r.Bytes(6); len(m) == 6 {
				copy(f.macs[i][:], m)
			} else {
				r.Fail(fmt.Errorf("virtio-net: filter table: %w", savestate.ErrFormat))
			}
		}
	}
	if err := r.Done(); err != nil {
		return fmt.Errorf("virtio-net: restore: %w", err)
	}
	d.mu.Lock()
	copy(d.st.cfgMAC[:], mac)
	d.st.linkDown = down
	d.st.txPending = pending
	d.st.ctrlPending = ctrlPending
	d.st.filter = f
	d.mu.Unlock()
	d.w.Wake()
	return nil
}
