package xensim

import (
	"fmt"
	"sort"

	"golang.org/x/sys/unix"
)

// RestoreMemoryFrom gives d the guest memory of src as a toolstack save
// and restore would: libxc's save stream carries every populated pfn up
// to the domain's maximum gpfn (RAM the device model populated, such as
// display VRAM, and pages moved into a PCI BAR included) and its restore
// populates each again at the same pfn with the same contents, before
// the new device model starts (tools/libs/guest/xg_sr_save.c and
// xg_sr_restore.c). Pages src had taken out of its RAM regions are holes
// in d too. d must be a fresh domain of the same Sim with the same RAM
// regions. The toolstack's populates are not recorded as
// EventPopulatePhysmap (they are not the device model's).
func (d *Domain) RestoreMemoryFrom(src *Domain) error {
	s := d.s
	if src.s != s {
		return fmt.Errorf("xensim: restore memory: domains of different simulators: %w", unix.EINVAL)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(d.overlay) != 0 {
		return fmt.Errorf("xensim: restore memory: %v is not fresh: %w", d.id, unix.EBUSY)
	}
	if len(d.regions) != len(src.regions) {
		return fmt.Errorf("xensim: restore memory: RAM regions differ: %w", unix.EINVAL)
	}
	for i, r := range src.regions {
		dr := d.regions[i]
		if dr.gpa != r.gpa || dr.size != r.size {
			return fmt.Errorf("xensim: restore memory: RAM region %d differs: %w", i, unix.EINVAL)
		}
		copy(d.ram.mem[dr.off:dr.off+int64(dr.size)], src.ram.mem[r.off:r.off+int64(r.size)])
	}
	var extra []uint64
	for gfn, e := range src.overlay {
		switch {
		case e.hole:
			d.overlay[gfn] = p2mEntry{hole: true}
		case e.ram:
			extra = append(extra, gfn)
		}
	}
	if len(extra) == 0 {
		return nil
	}
	sort.Slice(extra, func(i, j int) bool { return extra[i] < extra[j] })
	m, err := newShmem(fmt.Sprintf("xensim-restore-%v", d.id), len(extra)*pageSize)
	if err != nil {
		return err
	}
	d.extraMem = append(d.extraMem, m)
	for i, gfn := range extra {
		off := int64(i) * pageSize
		copy(m.mem[off:off+pageSize], src.ramBytes(gfn<<pageShift))
		d.overlay[gfn] = p2mEntry{mem: m, fd: m.fd, off: off, ram: true}
		if gfn > d.maxGPFN {
			d.maxGPFN = gfn
		}
	}
	return nil
}
