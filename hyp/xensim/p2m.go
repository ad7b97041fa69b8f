package xensim

import (
	"godm/hyp"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// vramTracker is the state of XEN_DMOP_track_dirty_vram: one tracked
// range and the pages the guest wrote since the last call.
type vramTracker struct {
	first uint64
	nr    uint32
	dirty []bool
}

// markDirty records a guest write to gfn for VRAM tracking. Called with
// s.mu held (shared is enough: only the flag for gfn changes, and each
// vCPU is one goroutine).
func (d *Domain) markDirty(gfn uint64) {
	t := d.vram
	if t == nil || gfn < t.first || gfn >= t.first+uint64(t.nr) {
		return
	}
	t.dirty[gfn-t.first] = true
}

// trackDirtyVRAM follows dm.c:track_dirty_vram and hap_track_dirty_vram:
// a new range reports every page dirty; later calls report the pages the
// guest wrote since; nr = 0 stops tracking.
func (d *Domain) trackDirtyVRAM(first uint64, nr uint32, bitmap []byte) unix.Errno {
	if nr > (1<<30)>>pageShift {
		return unix.EINVAL
	}
	if uint64(nr+7)/8 > uint64(len(bitmap)) {
		return unix.EINVAL
	}
	d.s.record(Event{Kind: EventTrackDirtyVRAM, Dom: d.id, First: first, Nr: uint64(nr)})
	if nr == 0 {
		d.vram = nil
		return 0
	}
	t := d.vram
	if t == nil || t.first != first || t.nr != nr {
		t = &vramTracker{first: first, nr: nr, dirty: make([]bool, nr)}
		for i := range t.dirty {
			t.dirty[i] = true
		}
		d.vram = t
	}
	clear(bitmap[:(nr+7)/8])
	for i, dirty := range t.dirty {
		if dirty {
			bitmap[i/8] |= 1 << (i % 8)
			t.dirty[i] = false
		}
	}
	return 0
}

// modifiedMemory follows dm.c:modified_memory (without continuations):
// extents are taken from the last to the first.
func (d *Domain) modifiedMemory(nrExtents, opaque uint32, bufs [][]byte) unix.Errno {
	if !d.cfg.LogDirty {
		// Xen returns 0 at once when the domain is not in log-dirty
		// mode; the call is still recorded for tests.
		if len(bufs) < 2 {
			return 0
		}
		n := uint64(len(bufs[1]) / 16)
		if uint64(nrExtents) < n {
			n = uint64(nrExtents)
		}
		for i := n; i > 0; i-- {
			b := bufs[1][(i-1)*16:]
			d.s.record(Event{Kind: EventModifiedMemory, Dom: d.id, First: le.Uint64(b[8:]), Nr: uint64(le.Uint32(b))})
		}
		return 0
	}
	if len(bufs) < 2 || uint64(len(bufs[1])/16) < uint64(nrExtents) {
		return unix.EINVAL
	}
	for ; nrExtents > 0; nrExtents-- {
		b := bufs[1][(nrExtents-1)*16:]
		nr, pad, first := le.Uint32(b), le.Uint32(b[4:]), le.Uint64(b[8:])
		if pad != 0 {
			return unix.EINVAL
		}
		end := first + uint64(nr)
		if end <= first || end > d.maxGPFN {
			return unix.EINVAL
		}
		if opaque >= nr {
			return unix.EINVAL
		}
		d.s.record(Event{Kind: EventModifiedMemory, Dom: d.id, First: first, Nr: uint64(nr)})
	}
	return 0
}

func isRAMType(t uint8) bool {
	return t == xenabi.HVMMEM_ram_rw || t == xenabi.HVMMEM_ram_ro || t == xenabi.HVMMEM_ioreq_server
}

// setMemType follows dm.c:set_mem_type and allow_p2m_type_change. Pages
// before a failing one keep their new type, as in Xen.
func (d *Domain) setMemType(first uint64, nr uint32, memType uint16) unix.Errno {
	last := first + uint64(nr) - 1
	if first > last || last > d.maxGPFN {
		return unix.EINVAL
	}
	if memType > xenabi.HVMMEM_ioreq_server || memType == xenabi.HVMMEM_unused {
		return unix.EINVAL
	}
	nt := uint8(memType)
	if nt == xenabi.HVMMEM_ioreq_server && d.memTypeSrv == nil {
		return unix.EINVAL
	}
	var rc unix.Errno
	done := uint64(0)
	for gfn := first; gfn <= last; gfn++ {
		old := d.memTypeOf(gfn)
		ok := false
		switch {
		case nt == xenabi.HVMMEM_ioreq_server:
			ok = old == xenabi.HVMMEM_ram_rw
		case old == xenabi.HVMMEM_ioreq_server:
			ok = nt == xenabi.HVMMEM_ram_rw
		default:
			ok = isRAMType(old) || (!d.isRAM(gfn) && nt == xenabi.HVMMEM_mmio_dm)
		}
		if !ok {
			rc = unix.EINVAL
			break
		}
		if d.isRAM(gfn) && nt == xenabi.HVMMEM_ram_rw || !d.isRAM(gfn) && nt == xenabi.HVMMEM_mmio_dm {
			delete(d.memType, gfn)
		} else {
			d.memType[gfn] = nt
		}
		done++
	}
	if done > 0 {
		d.s.record(Event{Kind: EventSetMemType, Dom: d.id, First: first, Nr: done, Type: uint32(memType)})
	}
	return rc
}

// mapMemType is ioreq_server_map_mem_type plus p2m_set_ioreq_server: one
// server at a time may claim writes to p2m_ioreq_server pages. Unmapping
// (flags 0) turns the remaining p2m_ioreq_server pages back to ram_rw.
func (d *Domain) mapMemType(caller hyp.DomID, id uint16, typ uint16, flags uint32, opaque uint64) unix.Errno {
	if opaque != 0 {
		return 0 // a continuation: nothing left to do here
	}
	if typ != xenabi.HVMMEM_ioreq_server || flags&^xenabi.XEN_DMOP_IOREQ_MEM_ACCESS_WRITE != 0 {
		return unix.EINVAL
	}
	srv, err := d.getServer(caller, id)
	if err != nil {
		return errno(err)
	}
	if flags == 0 {
		if d.memTypeSrv != srv {
			return unix.EINVAL
		}
		d.memTypeSrv, d.memTypeFlags = nil, 0
		for gfn, t := range d.memType {
			if t == xenabi.HVMMEM_ioreq_server {
				delete(d.memType, gfn)
			}
		}
	} else {
		if d.memTypeSrv != nil {
			return unix.EBUSY
		}
		d.memTypeSrv, d.memTypeFlags = srv, flags
	}
	d.s.record(Event{Kind: EventMapMemType, Dom: d.id, Server: id, Type: uint32(typ), Data: uint64(flags)})
	return 0
}

// relocate is XEN_DMOP_relocate_memory (xenmem_add_to_physmap with
// XENMAPSPACE_gmfn_range, done in one go): each source page moves to the
// destination gfn and the source becomes a hole.
func (d *Domain) relocate(src, dst uint64, size uint32, u []byte, constOp *bool) unix.Errno {
	if uint64(size) > d.maxGPFN+1 {
		// More pages than the guest has: Xen would grind through it with
		// continuations; the simulator refuses.
		return unix.EINVAL
	}
	moved := uint32(0)
	for ; moved < size; moved++ {
		s, t := src+uint64(moved), dst+uint64(moved)
		fd, off, ok := d.lookupGFN(s)
		if !ok || !d.isRAM(s) {
			break
		}
		mem := d.ram
		if e, ok := d.overlay[s]; ok {
			mem = e.mem
		}
		d.overlay[t] = p2mEntry{mem: mem, fd: fd, off: off, ram: true}
		d.overlay[s] = p2mEntry{hole: true}
		if t > d.maxGPFN {
			d.maxGPFN = t
		}
	}
	if moved > 0 {
		d.s.record(Event{Kind: EventRelocateMemory, Dom: d.id, First: src, Addr: dst, Nr: uint64(moved)})
	}
	if moved < size {
		// Report progress the way Xen's continuation does.
		*constOp = false
		le.PutUint32(u, size-moved)
		le.PutUint64(u[8:], src+uint64(moved))
		le.PutUint64(u[16:], dst+uint64(moved))
		return unix.EINVAL
	}
	return 0
}

// pinCacheAttr follows hvm_set_mem_pinned_cacheattr: a valid type adds a
// range (EBUSY on overlap), XEN_DMOP_DELETE_MEM_CACHEATTR removes the
// range with exactly these bounds (ENOENT if none).
func (d *Domain) pinCacheAttr(start, end uint64, typ uint32) unix.Errno {
	switch typ {
	case xenabi.XEN_DMOP_DELETE_MEM_CACHEATTR:
		for i, c := range d.cacheAttrs {
			if c.start == start && c.end == end {
				d.cacheAttrs = append(d.cacheAttrs[:i], d.cacheAttrs[i+1:]...)
				d.s.record(Event{Kind: EventPinCacheAttr, Dom: d.id, First: start, Nr: end, Type: typ})
				return 0
			}
		}
		return unix.ENOENT
	case xenabi.XEN_DMOP_MEM_CACHEATTR_UC, xenabi.XEN_DMOP_MEM_CACHEATTR_WC, xenabi.XEN_DMOP_MEM_CACHEATTR_WT,
		xenabi.XEN_DMOP_MEM_CACHEATTR_WP, xenabi.XEN_DMOP_MEM_CACHEATTR_WB, xenabi.XEN_DMOP_MEM_CACHEATTR_UCM:
	default:
		return unix.EINVAL
	}
	if end < start {
		return unix.EINVAL
	}
	for _, c := range d.cacheAttrs {
		if start <= c.end && c.start <= end {
			if c.start == start && c.end == end && c.typ == typ {
				return 0
			}
			return unix.EBUSY
		}
	}
	d.cacheAttrs = append(d.cacheAttrs, cacheAttr{start, end, typ})
	d.s.record(Event{Kind: EventPinCacheAttr, Dom: d.id, First: start, Nr: end, Type: typ})
	return 0
}
