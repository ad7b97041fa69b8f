package board

import (
	"errors"
	"fmt"

	"godm/devices/nvme"
	"godm/devices/savestate"
)

// NVMe is an nvme device (QEMU's -device nvme,drive=,serial=): the
// controller and the -drive its one namespace uses.
type NVMe struct {
	*nvme.Controller
	Drive *Drive
}

// nvmeRecord names the device's snapshot record.
const nvmeRecord = "nvme"

func newNVMe(b *Board, p Props, pl *Plugged) error {
	slot, fn, ok, err := pciAddr(p)
	if err != nil {
		return err
	}
	if b.env.Memory == nil {
		return errors.New("the machine has no guest memory access")
	}
	id := p.String("drive", "")
	serial := p.String("serial", "")
	drv := b.env.Drives[id]
	switch {
	case id == "":
		return errors.New("drive property not set")
	case drv == nil:
		return fmt.Errorf("Property 'nvme.drive' can't find value '%s'", id)
	case serial == "":
		// QEMU 7.2 nvme_check_constraints: "serial property not set".
		return errors.New("serial property not set")
	}
	bar32, err := p.Bool("x-godm-bar32", false)
	if err != nil {
		return err
	}
	if err := drv.claim(pl.ID); err != nil {
		return err
	}
	c, err := nvme.New(nvme.Config{Memory: b.env.Memory, Drive: drv.Block(), Serial: serial, Discard: drv.Opts.Discard, BAR32: bar32})
	if err != nil {
		return err
	}
	pl.Dev = &NVMe{Controller: c, Drive: drv}
	pl.onUnplug(func() error { return errors.Join(c.Close(), drv.Close()) })
	if err := b.addPCI(pl, c.Function(), slot, fn, !ok); err != nil {
		return err
	}
	pl.resetWith(nil, c.Reset) // Reset resets the PCI function too
	return nil
}

// Snapshot implements devices.Snapshotter: the PCI function and the
// controller (pause first: a command in flight refuses it; completions
// waiting for room in their queue are part of the record).
func (n *NVMe) Snapshot() ([]byte, error) {
	var w savestate.Writer
	n.Function().WriteState(&w)
	if err := n.WriteState(&w); err != nil {
		return nil, err
	}
	return savestate.Record(nvmeRecord, 1, w.Out()), nil
}

// Restore implements devices.Snapshotter.
func (n *NVMe) Restore(b []byte) error {
	_, r, err := savestate.Open(b, nvmeRecord, 1)
	if err != nil {
		return err
	}
	if err := n.Function().ReadState(r); err != nil {
		return err
	}
	if err := n.ReadState(r); err != nil {
		return err
	}
	return r.Done()
}
