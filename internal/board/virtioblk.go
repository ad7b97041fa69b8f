package board

import (
	"errors"
	"fmt"

	"godm/devices/savestate"
	"godm/devices/virtio"
	"godm/devices/virtioblk"
)

// VirtioBlk is a virtio-blk-pci device and the -drive it uses.
type VirtioBlk struct {
	*virtioblk.Device
	Drive *Drive
}

// virtioBlkRecord names the device's snapshot record.
const virtioBlkRecord = "virtio-blk"

func newVirtioBlk(b *Board, p Props, pl *Plugged) error {
	slot, fn, ok, err := pciAddr(p)
	if err != nil {
		return err
	}
	mem, pinnable := b.env.Memory.(virtio.Memory)
	if !pinnable {
		return errors.New("the machine has no pinnable guest memory for virtio rings")
	}
	id := p.String("drive", "")
	drv := b.env.Drives[id]
	switch {
	case id == "":
		return errors.New("drive property not set")
	case drv == nil:
		return fmt.Errorf("Property 'virtio-blk-pci.drive' can't find value '%s'", id)
	}
	bar32, err := p.Bool("x-godm-bar32", false)
	if err != nil {
		return err
	}
	if err := drv.claim(pl.ID); err != nil {
		return err
	}
	d, err := virtioblk.New(virtioblk.Config{Memory: mem, Drive: drv.Block(), Serial: p.String("serial", ""), ModernBAR32: bar32, Discard: drv.Opts.Discard})
	if err != nil {
		return err
	}
	pl.Dev = &VirtioBlk{Device: d, Drive: drv}
	pl.onUnplug(func() error { return errors.Join(d.Close(), drv.Close()) })
	if err := b.addPCI(pl, d.Function(), slot, fn, !ok); err != nil {
		return err
	}
	pl.resetWith(d.Function(), d.Transport().Reset)
	return nil
}

// Snapshot implements devices.Snapshotter: the PCI function and the
// transport's registers and rings (pause first: a request in flight
// refuses it).
func (v *VirtioBlk) Snapshot() ([]byte, error) {
	if v.Busy() {
		return nil, errors.New("virtio-blk: request in flight")
	}
	var w savestate.Writer
	v.Function().WriteState(&w)
	v.Transport().WriteState(&w)
	return savestate.Record(virtioBlkRecord, 1, w.Out()), nil
}

// Restore implements devices.Snapshotter.
func (v *VirtioBlk) Restore(b []byte) error {
	_, r, err := savestate.Open(b, virtioBlkRecord, 1)
	if err != nil {
		return err
	}
	if err := v.Function().ReadState(r); err != nil {
		return err
	}
	if err := v.Transport().ReadState(r); err != nil {
		return err
	}
	return r.Done()
}
