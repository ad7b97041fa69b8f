package ahci

import (
	"errors"
	"fmt"

	"godm/devices"
	"godm/devices/savestate"
)

// StateVersion is the version of the controller's snapshot record.
const StateVersion = 2

// RecordName names the controller's records.
const RecordName = "ahci"

var (
	_ devices.Snapshotter = (*Controller)(nil)
	_ devices.Pauser      = (*Controller)(nil)
)

// ErrBusy is returned by Snapshot while a command runs (pause first:
// Pause waits for the I/O, and a paused port starts nothing new).
var ErrBusy = errors.New("ahci: command in flight")

// Snapshot implements devices.Snapshotter: the PCI function, the host
// registers and each port's registers, task file and IDENTIFY page. The
// media are not in it.
func (d *Controller) Snapshot() ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.p {
		if d.p[i].running || d.p[i].inflight {
			return nil, ErrBusy
		}
	}
	var w savestate.Writer
	d.fn.WriteState(&w)
	w.U32(d.ghc)
	w.U32(d.idx)
	w.Bool(d.line)
	for i := range d.p {
		p := &d.p[i]
		w.Bool(p.present)
		w.Bool(p.cd)
		w.Bool(p.atapiDMA)
		p.cds.SaveState(&w)
		for _, v := range []uint32{p.clb, p.clbu, p.fb, p.fbu, p.is, p.ie, p.cmd, p.tfd, p.sig, p.sctl, p.serr, p.sact, p.ci, p.finished, p.tf.nsector} {
			w.U32(v)
		}
		t := &p.tf
		for _, v := range []uint8{t.feature, t.sector, t.lcyl, t.hcyl, t.sel, t.hobFeature, t.hobSector, t.hobLcyl, t.hobHcyl, t.status, t.err} {
			w.U8(v)
		}
		for _, v := range []bool{p.srst, p.initD2H, p.wcache, p.identSet} {
			w.Bool(v)
		}
		w.Bytes(p.ident[:])
	}
	return savestate.Record(RecordName, StateVersion, w.Out()), nil
}

// Restore implements devices.Snapshotter. The controller must have disks
// on the same ports; a record that does not fit is refused before any
// state changes. Commands the guest left issued start on Resume.
func (d *Controller) Restore(b []byte) error {
	_, r, err := savestate.Open(b, RecordName, StateVersion)
	if err != nil {
		return err
	}
	if err := d.fn.ReadState(r); err != nil {
		return fmt.Errorf("ahci: %w", err)
	}
	ghc, idx, line := r.U32(), r.U32(), r.Bool()
	var ps [Ports]port
	for i := range ps {
		p := &ps[i]
		has, cd := r.Bool(), r.Bool()
		p.atapiDMA = r.Bool()
		p.cds.LoadState(r)
		if r.Err() == nil && (has != d.p[i].present || has && cd != d.p[i].cd) {
			r.Fail(fmt.Errorf("port %d: device present %v (CD-ROM %v) in the snapshot: %w", i, has, cd, savestate.ErrFormat))
		}
		for _, v := range []*uint32{&p.clb, &p.clbu, &p.fb, &p.fbu, &p.is, &p.ie, &p.cmd, &p.tfd, &p.sig, &p.sctl, &p.serr, &p.sact, &p.ci, &p.finished, &p.tf.nsector} {
			*v = r.U32()
		}
		t := &p.tf
		for _, v := range []*uint8{&t.feature, &t.sector, &t.lcyl, &t.hcyl, &t.sel, &t.hobFeature, &t.hobSector, &t.hobLcyl, &t.hobHcyl, &t.status, &t.err} {
			*v = r.U8()
		}
		for _, v := range []*bool{&p.srst, &p.initD2H, &p.wcache, &p.identSet} {
			*v = r.Bool()
		}
		r.Fixed(p.ident[:])
	}
	if err := r.Done(); err != nil {
		return fmt.Errorf("ahci: restore: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ghc, d.idx = ghc&(ghcIE)|ghcAE, idx&((BARSize-1)&^3)
	for i := range d.p {
		p, s := &d.p[i], &ps[i]
		p.gen++
		p.running, p.busy = false, -1
		p.clb, p.clbu, p.fb, p.fbu = s.clb, s.clbu, s.fb, s.fbu
		p.is, p.ie, p.cmd, p.tfd, p.sig = s.is, s.ie&ieMask, s.cmd, s.tfd, s.sig
		p.sctl, p.serr, p.sact, p.ci, p.finished = s.sctl, s.serr, s.sact, s.ci, s.finished
		p.tf = s.tf
		p.tf.status &^= stBUSY | stDRQ // nothing runs after a restore
		p.srst, p.initD2H, p.wcache, p.identSet = s.srst, s.initD2H, s.wcache, s.identSet
		p.ident = s.ident
		p.atapiDMA = s.atapiDMA
		p.cds.CopyStateFrom(&s.cds)
	}
	d.line = line
	d.fn.SetINTx(line)
	d.checkIRQ()
	return nil
}
