package passthrough

import (
	"errors"
	"fmt"

	"godm/hyp/domctl"
	"godm/hyp/hcall"
	"godm/hyp/xenabi"
)

// intxState is the legacy interrupt: the host GSI mapped to a PIRQ and
// bound to the guest's INTx pin (QEMU's xen_pt_realize).
type intxState struct {
	pirq  int // -1: not bound
	bound domctl.IRQBinding
}

// setupINTxLocked maps the host GSI and binds it to the guest pin. On failure
// the host's INTx is disabled (the device can still use MSI) and the
// guest sees no pin. Called with mu held.
func (d *Device) setupINTxLocked() {
	pin := d.t.get(0x3d, 1)
	if pin < 1 || pin > 4 {
		d.disableHostINTxLocked()
		return
	}
	gsi := d.cfg.Host.GSI
	pirq, err := d.cfg.Xen.MapPIRQ(d.cfg.Dom, hcall.MapPIRQRequest{Type: xenabi.MAP_PIRQ_TYPE_GSI, Index: int32(gsi), PIRQ: int32(gsi)})
	if err != nil {
		_ = d.fail(fmt.Sprintf("mapping GSI %d; INTx disabled", gsi), err)
		d.noINTxLocked()
		return
	}
	b := domctl.IRQBinding{Kind: domctl.PCI, MachineIRQ: uint32(pirq), Bus: 0, Device: d.cfg.Slot, Intx: uint8(pin - 1)}
	if err := d.cfg.Xen.BindPtIRQ(d.cfg.Dom, b); err != nil {
		_ = d.fail(fmt.Sprintf("binding GSI %d (pirq %d) to INT%c; INTx disabled", gsi, pirq, 'A'+pin-1), err)
		if uerr := d.cfg.Xen.UnmapPIRQ(d.cfg.Dom, pirq); uerr != nil {
			_ = d.fail("unmapping the INTx pirq", uerr)
		}
		d.noINTxLocked()
		return
	}
	d.intx = intxState{pirq: pirq, bound: b}
}

// noINTxLocked hides the pin from the guest and disables INTx on the host.
func (d *Device) noINTxLocked() {
	d.t.set(0x3d, 1, 0)
	d.disableHostINTxLocked()
}

func (d *Device) disableHostINTxLocked() {
	var c [2]byte
	if _, err := d.cfg.Host.Config.ReadAt(c[:], 0x04); err != nil {
		d.hostErrors.Add(1)
		return
	}
	if c[1]&(cmdINTxDisable>>8) != 0 {
		return
	}
	c[1] |= cmdINTxDisable >> 8
	if _, err := d.cfg.Host.Config.WriteAt(c[1:], 0x05); err != nil {
		d.hostErrors.Add(1)
	}
}

// teardownINTxLocked unbinds and unmaps the INTx PIRQ. Called with mu held.
func (d *Device) teardownINTxLocked() error {
	if d.intx.pirq < 0 {
		return nil
	}
	var errs []error
	if err := d.cfg.Xen.UnbindPtIRQ(d.cfg.Dom, d.intx.bound); err != nil {
		errs = append(errs, d.fail("unbinding INTx", err))
	}
	if err := d.cfg.Xen.UnmapPIRQ(d.cfg.Dom, d.intx.pirq); err != nil {
		errs = append(errs, d.fail("unmapping the INTx pirq", err))
	}
	d.intx = intxState{pirq: -1}
	return errors.Join(errs...)
}
