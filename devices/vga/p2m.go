package vga

import (
	"errors"
	"fmt"
)

// P2M is VRAM that lives in the guest's p2m, as QEMU-xen keeps its
// framebuffer (hw/i386/xen/xen-hvm.c: xen_ram_alloc populates vga.vram's
// frames above guest RAM, xen_add_to_physmap moves them to the LFB BAR
// when the guest maps it, xen_remove_from_physmap moves them back,
// xen_sync_dirty_bitmap asks Xen's XEN_DMOP_track_dirty_vram which pages
// the guest wrote). The device model reads and writes the same frames
// through Bytes, a foreign mapping that stays valid wherever the frames
// are placed.
type P2M interface {
	// Bytes is VRAM (its length is the VRAM size).
	Bytes() []byte
	// Map places the frames at guest-physical base (the LFB BAR): the
	// guest then reads and writes them without trapping.
	Map(base uint64) error
	// Unmap takes them back to their reserved place.
	Unmap()
	// Dirty fills bitmap (bit i: VRAM page i) with the pages the guest
	// wrote since the previous call while they were mapped. The first
	// call after Map reports every page.
	Dirty(bitmap []byte) error
	// Wrote records a device-side write of n bytes at VRAM offset off
	// (the window, a mode set's clear, a restore): while log-dirty is on
	// (live migration) they are reported to Xen as modified memory, as
	// the devices' DMA is. Called with the VGA's lock held; it must be
	// cheap and not allocate.
	Wrote(off, n uint64)
	// Close unmaps the frames from the device model and gives them back
	// to the hypervisor.
	Close() error
	// Where is the gfn of the frames' first page now (the BAR's while
	// mapped, else their reserved place), for the device's state record.
	Where() uint64
	// Adopt is for a device model started for a restored or migrated-in
	// domain: the save stream of Xen carries the frames like any guest
	// RAM and the restore populates them again where they were (libxc
	// restore: every populated pfn), so populating VRAM anew would add a
	// second copy. Adopt takes over the frames at gfn, the source's
	// Where (0: its VRAM was not in the p2m, or a record from before the
	// location was saved), and populates new ones at the reserved place
	// only when none are there. Until Adopt, Bytes is a placeholder of the
	// right size; after it, Bytes may be another slice. A P2M that
	// populated its own frames ignores Adopt. As QEMU-xen: xen_ram_alloc
	// populates nothing for an incoming migration, and finds the frames
	// through its physmap records.
	Adopt(gfn uint64) error
}

// pageSize is the p2m's page (x86: 4 KiB).
const pageSize = 4096

// useP2M makes p the VRAM of c. Called once, before the device is used.
func (c *Core) useP2M(p P2M) error {
	b := p.Bytes()
	if len(b) != len(c.vram) {
		return fmt.Errorf("vga: p2m VRAM of %d bytes, want %d", len(b), len(c.vram))
	}
	copy(b, c.vram)
	c.vram = b
	c.scan.vram = b
	c.p2m = p
	c.dirtyBits = make([]byte, (len(b)/pageSize+7)/8)
	c.scan.gen = &c.gen
	c.scan.track = c.trackLocked
	c.scan.wrote = p.Wrote
	return nil
}

// adoptP2M takes over the restored domain's VRAM frames at gfn (see
// P2M.Adopt) and makes them the device's VRAM. When that fails the
// device keeps a heap VRAM, trapped, as a device without p2m VRAM (the
// caller logs nothing: the P2M's maker warns).
func (c *Core) adoptP2M(gfn uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.p2m
	if p == nil {
		return
	}
	if err := p.Adopt(gfn); err != nil {
		v := make([]byte, len(c.vram))
		c.vram, c.scan.vram = v, v
		c.p2m, c.scan.track, c.scan.wrote = nil, nil, nil
		c.lfbIn = false
		c.gen++
		_ = p.Close()
		return
	}
	// The frames hold what the guest saw; the record's VRAM, restored
	// next, is the same picture.
	if b := p.Bytes(); len(b) == len(c.vram) && &b[0] != &c.vram[0] {
		c.vram, c.scan.vram = b, b
		c.gen++
	}
}

// settleP2MLocked ends a restore: frames the record placed somewhere the
// restored BAR does not map (a record that lied, or a BAR that could not
// be mapped) go back to their reserved place. Called with mu held.
func (c *Core) settleP2MLocked() {
	if c.p2m != nil && !c.lfbIn {
		c.p2m.Unmap()
	}
}

// p2mWhereLocked is the frames' gfn for the state record (0: VRAM not
// in the p2m). Called with mu held.
func (c *Core) p2mWhereLocked() uint64 {
	if c.p2m == nil {
		return 0
	}
	return c.p2m.Where()
}

// InP2M reports whether the LFB's frames are in the guest's p2m at the
// BAR's address now (false: the BAR is trapped or not decoding).
func (c *Core) InP2M() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lfbIn
}

// trackLocked asks which VRAM pages the guest wrote through the LFB
// since the last call; ok=false when the LFB is not in the p2m or Xen
// cannot tell. Called with mu held.
func (c *Core) trackLocked() (bitmap []byte, ok bool) {
	if !c.lfbIn {
		return nil, false
	}
	if err := c.p2m.Dirty(c.dirtyBits); err != nil {
		return nil, false
	}
	return c.dirtyBits, true
}

var errNoP2M = errors.New("vga: VRAM is no longer in the p2m")

// lfbRAM is the LFB BAR's pci.RAMBacking.
type lfbRAM struct{ c *Core }

func (l lfbRAM) MapRAM(base uint64) error {
	c := l.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p2m == nil {
		return errNoP2M
	}
	if err := c.p2m.Map(base); err != nil {
		return err
	}
	c.lfbIn = true
	c.gen++
	return nil
}

func (l lfbRAM) UnmapRAM() {
	c := l.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lfbIn {
		c.p2m.Unmap()
		c.lfbIn = false
		c.gen++
	}
}

// ReleaseP2M ends p2m VRAM (unplug, close): VRAM becomes a heap copy of
// the frames, so a display still holding the device reads what was last
// shown and never an unmapped page, then the frames are released. Call it
// after the PCI function left the bus (the BAR is no longer mapped). It
// is idempotent and does nothing without p2m VRAM.
func (c *Core) ReleaseP2M() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.p2m
	if p == nil {
		return nil
	}
	if c.lfbIn {
		p.Unmap()
		c.lfbIn = false
	}
	v := make([]byte, len(c.vram))
	copy(v, c.vram)
	c.vram, c.scan.vram = v, v
	c.p2m, c.scan.track, c.scan.wrote = nil, nil, nil
	c.lfbDecode = false
	c.gen++
	return p.Close()
}

// wroteLocked reports a device-side VRAM write to the p2m backing.
// Called with mu held.
func (c *Core) wroteLocked(off, n uint64) {
	if c.p2m != nil {
		c.p2m.Wrote(off, n)
	}
}

// clLFBRAM is the Cirrus LFB BAR's pci.RAMBacking (with RAMOverlay: the
// BAR stays on the bus). The BAR's place is recorded; whether VRAM is in
// the p2m there follows QEMU's cirrus_update_memory_access (clMapped),
// re-checked after every guest write to the device.
type clLFBRAM struct{ c *Core }

func (l clLFBRAM) MapRAM(base uint64) error {
	c := l.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p2m == nil {
		return errNoP2M
	}
	c.lfbBase, c.lfbDecode = base, true
	c.clSyncP2MLocked()
	return nil
}

func (l clLFBRAM) UnmapRAM() {
	c := l.c
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lfbDecode = false
	c.clSyncP2MLocked()
}

// clSyncP2MLocked puts the Cirrus VRAM into the p2m at the LFB or takes
// it out, as clMapped says; it also reports the device's own writes
// while log-dirty is on, coarsely (all of VRAM after any write that
// changed the picture: blits, the banked window, trapped LFB bytes).
// Called with mu held after each guest write; nothing without p2m VRAM.
func (c *Core) clSyncP2MLocked() {
	if c.p2m == nil || c.cl == nil {
		return
	}
	if c.gen != c.p2mGen {
		c.p2mGen = c.gen
		c.p2m.Wrote(0, uint64(len(c.vram)))
	}
	want := c.lfbDecode && c.clMapped()
	switch {
	case want == c.lfbIn:
	case want:
		if c.p2m.Map(c.lfbBase) == nil {
			c.lfbIn = true
			c.gen++
		}
	default:
		c.p2m.Unmap()
		c.lfbIn = false
		c.gen++
	}
	c.p2mGen = c.gen
}
