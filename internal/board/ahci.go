package board

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"godm/devices/ahci"
	"godm/devices/savestate"
)

// AHCI is the ahci device (QEMU's ich9-ahci): the controller, whose buses
// are <id>.0 .. <id>.5, one disk each.
type AHCI struct {
	*ahci.Controller
}

func newAHCI(b *Board, p Props, pl *Plugged) error {
	slot, fn, ok, err := pciAddr(p)
	if err != nil {
		return err
	}
	if b.env.Memory == nil {
		return errors.New("the machine has no guest memory access")
	}
	c, err := ahci.New(ahci.Config{Memory: b.env.Memory})
	if err != nil {
		return err
	}
	pl.Dev = &AHCI{c}
	pl.onUnplug(c.Close)
	if err := b.addPCI(pl, c.Function(), slot, fn, !ok); err != nil {
		return err
	}
	pl.resetWith(c.Function(), c.Reset)
	return nil
}

// AHCIDrive is an ide-hd or ide-cd on an AHCI port.
type AHCIDrive struct {
	Ctl        *ahci.Controller
	Port       int
	Drive      *Drive
	Controller string // the controller's device id
	CD         bool   // an ide-cd (ATAPI)
}

// ahciBus finds the AHCI controller a bus=<id>.<port> names; ok false if
// bus names no AHCI controller.
func (b *Board) ahciBus(bus string) (cp *Plugged, c *ahci.Controller, port int, ok bool, err error) {
	id, ps, found := strings.Cut(bus, ".")
	if !found {
		return nil, nil, 0, false, nil
	}
	q := b.Device(id)
	if q == nil {
		return nil, nil, 0, false, nil
	}
	a, isAHCI := q.Dev.(*AHCI)
	if !isAHCI {
		return nil, nil, 0, false, nil
	}
	n, perr := strconv.Atoi(ps)
	if perr != nil || n < 0 || n >= ahci.Ports {
		return nil, nil, 0, true, fmt.Errorf("Bus '%s' not found (an AHCI controller's buses are %s.0 to %s.%d)", bus, id, id, ahci.Ports-1)
	}
	return q, a.Controller, n, true, nil
}

// newAHCIDrive plugs an ide-hd or ide-cd on an AHCI port (unit must be
// 0: one device per SATA port).
func (b *Board) newAHCIDrive(p Props, pl *Plugged, cp *Plugged, ctl *ahci.Controller, port int, cd bool) error {
	unit, err := p.Uint("unit", 0)
	if err != nil {
		return err
	}
	if unit != 0 {
		return fmt.Errorf("property 'unit': %d: an AHCI port has unit 0 only", unit)
	}
	kind := "ide-hd"
	if cd {
		kind = "ide-cd"
	}
	id := p.String("drive", "")
	drv := b.env.Drives[id]
	switch {
	case id == "" && !cd:
		return errors.New("drive property not set")
	case id != "" && drv == nil:
		return fmt.Errorf("Property '%s.drive' can't find value '%s'", kind, id)
	}
	if drv != nil {
		if err := drv.claim(pl.ID); err != nil {
			return err
		}
	} else {
		drv = &Drive{Opts: DriveOptions{ID: pl.ID, Media: "cdrom", ReadOnly: true}}
	}
	if err := ctl.Attach(port, ahci.DriveConfig{Drive: drv.Block(), CD: cd}); err != nil {
		return err
	}
	pl.Dev = &AHCIDrive{Ctl: ctl, Port: port, Drive: drv, Controller: cp.ID, CD: cd}
	pl.onUnplug(func() error {
		_, derr := ctl.Detach(port)
		return errors.Join(derr, drv.Close())
	})
	return nil
}

// AHCIDrives returns the board's disks and CD-ROM drives on AHCI ports.
func (b *Board) AHCIDrives() []*Plugged {
	var out []*Plugged
	for _, p := range b.Devices() {
		if _, ok := p.Dev.(*AHCIDrive); ok {
			out = append(out, p)
		}
	}
	return out
}

// ahciDriveRecord names an AHCI disk's snapshot record: its state lives
// in the controller's; this checks the position.
const ahciDriveRecord = "ahci-drive"

// Snapshot implements devices.Snapshotter.
func (d *AHCIDrive) Snapshot() ([]byte, error) {
	var w savestate.Writer
	w.U8(byte(d.Port))
	return savestate.Record(ahciDriveRecord, 1, w.Out()), nil
}

// Restore implements devices.Snapshotter.
func (d *AHCIDrive) Restore(b []byte) error {
	_, r, err := savestate.Open(b, ahciDriveRecord, 1)
	if err != nil {
		return err
	}
	port := r.U8()
	if err := r.Done(); err != nil {
		return err
	}
	if int(port) != d.Port {
		return fmt.Errorf("ahci drive: the snapshot's is at port %d: %w", port, savestate.ErrFormat)
	}
	return nil
}
