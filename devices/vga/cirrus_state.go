package vga

import (
	"fmt"

	"godm/devices/savestate"
)

// CirrusRecordName and CirrusStateVersion name the Cirrus VGA's
// snapshot record. Version 2 starts with where VRAM's frames are in the
// guest's p2m (as the VGA's record; version 1: none recorded).
const (
	CirrusRecordName   = "cirrus_vga"
	CirrusStateVersion = 2
)

// Snapshot implements devices.Snapshotter: the PCI function, the VGA
// registers and VRAM, and the CL-GD5446 registers. As in QEMU, a blit
// waiting for system-to-screen data is not saved: it is dropped.
func (d *Cirrus) Snapshot() ([]byte, error) {
	var w savestate.Writer
	d.mu.Lock()
	w.U64(d.p2mWhereLocked())
	d.mu.Unlock()
	d.fn.WriteState(&w)
	d.mu.Lock()
	d.saveRegsLocked(&w)
	cl := d.cl
	w.Bytes(cl.sr[:])
	w.Bytes(cl.gr[:])
	w.Bytes(cl.shadowGR[:])
	w.U8(cl.dacLock)
	w.U8(cl.dacData)
	w.Bytes(cl.cursorPal[:])
	w.U16(cl.cursorX)
	w.U16(cl.cursorY)
	d.mu.Unlock()
	return savestate.Record(CirrusRecordName, CirrusStateVersion, w.Out()), nil
}

// Restore implements devices.Snapshotter. A record of another VRAM size
// is refused; register values are masked as guest writes would be.
func (d *Cirrus) Restore(b []byte) error {
	ver, rd, err := savestate.Open(b, CirrusRecordName, CirrusStateVersion)
	if err != nil {
		return err
	}
	if err := d.adoptFrom(ver, rd); err != nil {
		return fmt.Errorf("cirrus-vga: restore: %w", err)
	}
	if err := d.fn.ReadState(rd); err != nil {
		return fmt.Errorf("cirrus-vga: restore: %w", err)
	}
	r, vram := d.loadRegs(rd)
	var cl cirrus
	for _, f := range [][]byte{cl.sr[:], cl.gr[:], cl.shadowGR[:]} {
		rd.Fixed(f)
	}
	cl.dacLock = rd.U8()
	cl.dacData = rd.U8()
	rd.Fixed(cl.cursorPal[:])
	cl.cursorX = rd.U16()
	cl.cursorY = rd.U16()
	if err := rd.Done(); err != nil {
		return fmt.Errorf("cirrus-vga: restore: %w", err)
	}
	gr5 := r.gr[5] & 0x7f
	maskRegs(&r)
	r.gr[5] = gr5
	d.mu.Lock()
	defer d.mu.Unlock()
	d.r = r
	copy(d.vram, vram)
	old := d.cl
	*old = cl
	old.gr[0x21] &= 0x1f
	old.gr[0x23] &= 0x1f
	old.gr[0x25] &= 0x1f
	old.gr[0x27] &= 0x1f
	old.gr[0x2a] &= 0x3f
	old.gr[0x2e] &= 0x3f
	old.gr[0x31] &^= bltStart | bltBusy | bltFIFOUsed
	d.clUpdateBanksLocked()
	d.gen++
	d.clSyncP2MLocked()
	d.settleP2MLocked()
	return nil
}
