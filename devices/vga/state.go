package vga

import (
	"fmt"

	"godm/devices/savestate"
)

// RecordName and StateVersion name the VGA's snapshot record. Version 2
// starts with where VRAM's frames are in the guest's p2m (a gfn, 0 for
// VRAM the device owns); version 1 records have no such field and are
// restored as 0.
const (
	RecordName   = "VGA"
	StateVersion = 2
)

// Snapshot implements devices.Snapshotter: where VRAM's frames are in the
// guest's p2m, the PCI function, the legacy registers, the DISPI
// registers and the whole of VRAM.
func (d *Device) Snapshot() ([]byte, error) {
	var w savestate.Writer
	d.mu.Lock()
	w.U64(d.p2mWhereLocked())
	d.mu.Unlock()
	d.fn.WriteState(&w)
	d.VBE.save(&w)
	d.mu.Lock()
	d.saveRegsLocked(&w)
	d.mu.Unlock()
	return savestate.Record(RecordName, StateVersion, w.Out()), nil
}

// saveRegsLocked writes the legacy registers and VRAM.
func (c *Core) saveRegsLocked(w *savestate.Writer) {
	r := &c.r
	w.U32(r.latch)
	for _, b := range []byte{r.srIndex, r.grIndex, r.arIndex, r.crIndex, r.msr, r.fcr, r.st00, r.st01,
		r.dacState, r.dacSub, r.dacRead, r.dacWrite} {
		w.U8(b)
	}
	w.Bool(r.arFlip)
	w.Bytes(r.sr[:])
	w.Bytes(r.gr[:])
	w.Bytes(r.ar[:])
	w.Bytes(r.cr[:])
	w.Bytes(r.dacCache[:])
	w.Bytes(r.palette[:])
	w.Bytes(c.vram)
}

// loadRegs reads what saveRegsLocked wrote (errors stay in rd); the
// values are not masked yet.
func (c *Core) loadRegs(rd *savestate.Reader) (r regs, vram []byte) {
	r.latch = rd.U32()
	for _, p := range []*byte{&r.srIndex, &r.grIndex, &r.arIndex, &r.crIndex, &r.msr, &r.fcr, &r.st00, &r.st01,
		&r.dacState, &r.dacSub, &r.dacRead, &r.dacWrite} {
		*p = rd.U8()
	}
	r.arFlip = rd.Bool()
	for _, f := range [][]byte{r.sr[:], r.gr[:], r.ar[:], r.cr[:], r.dacCache[:], r.palette[:]} {
		if got := rd.Bytes(len(f)); len(got) != len(f) && rd.Err() == nil {
			rd.Fail(fmt.Errorf("vga: register block of %d bytes, want %d: %w", len(got), len(f), savestate.ErrFormat))
		} else {
			copy(f, got)
		}
	}
	vram = rd.Bytes(len(c.vram))
	if rd.Err() == nil && len(vram) != len(c.vram) {
		rd.Fail(fmt.Errorf("vga: %d bytes of VRAM, this device has %d: %w", len(vram), len(c.vram), savestate.ErrFormat))
	}
	return r, vram
}

// maskRegs masks restored values as guest writes would have.
func maskRegs(r *regs) {
	r.arIndex &= 0x3f
	r.dacSub %= 3
	for i := range r.sr {
		r.sr[i] &= srMask[i]
	}
	for i := range r.gr {
		r.gr[i] &= grMask[i]
	}
}

// Restore implements devices.Snapshotter. A record of another VRAM size
// is refused; register values are masked as guest writes would be. p2m
// VRAM first takes over the frames the record says the guest has (before
// the PCI function's BAR is restored onto them).
func (d *Device) Restore(b []byte) error {
	ver, rd, err := savestate.Open(b, RecordName, StateVersion)
	if err != nil {
		return err
	}
	if err := d.adoptFrom(ver, rd); err != nil {
		return fmt.Errorf("vga: restore: %w", err)
	}
	if err := d.fn.ReadState(rd); err != nil {
		return fmt.Errorf("vga: restore: %w", err)
	}
	vbe := NewVBE(uint32(len(d.vram)), nil)
	vbe.load(rd)
	r, vram := d.loadRegs(rd)
	if err := rd.Done(); err != nil {
		return fmt.Errorf("vga: restore: %w", err)
	}
	r.srIndex &= 7
	r.grIndex &= 0x0f
	maskRegs(&r)
	var vw savestate.Writer
	vbe.save(&vw)
	d.VBE.load(savestate.NewReader(vw.Out()))
	d.mu.Lock()
	d.r = r
	copy(d.vram, vram)
	d.wroteLocked(0, uint64(len(d.vram)))
	d.gen++
	d.vbeUpdateLocked()
	d.settleP2MLocked()
	d.mu.Unlock()
	return nil
}

// adoptFrom reads a version 2 record's frame location and has p2m VRAM
// take over the frames there (P2M.Adopt; version 1: none recorded). A
// device keeping VRAM trapped has them released instead (Drop), or its
// LFB BAR would stay guest RAM no one shows; a place Drop refuses fails
// the restore.
func (c *Core) adoptFrom(ver uint32, rd *savestate.Reader) error {
	var where uint64
	if ver >= 2 {
		where = rd.U64()
		if err := rd.Err(); err != nil {
			return err
		}
	}
	c.mu.Lock()
	trapped, drop := c.p2m == nil, c.drop
	c.mu.Unlock()
	if trapped {
		if where != 0 && drop != nil {
			if err := drop(where); err != nil {
				return fmt.Errorf("the record's VRAM frames: %w", err)
			}
		}
		return nil
	}
	c.adoptP2M(where)
	return nil
}
