package xensim

import (
	"encoding/binary"
	"fmt"

	"godm/hyp"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// Limits of the simulated memory_op.
const (
	// memopCmdMask keeps the sub-op; Xen encodes a continuation's start
	// extent above MEMOP_EXTENT_SHIFT (xen/include/public/memory.h).
	memopCmdMask = 1<<6 - 1
	// maxPopulatePages bounds one populate_physmap call (1 GiB).
	maxPopulatePages = 1 << 18
	maxExtentOrder   = 18
)

// memoryOp is HYPERVISOR_memory_op for the reservation ops and
// add_to_physmap. It returns the number of extents done (reservations)
// or 0.
func (s *Sim) memoryOp(caller hyp.DomID, cmd, arg uint64) (uintptr, error) {
	le := binary.LittleEndian
	switch cmd & memopCmdMask {
	case xenabi.XENMEM_populate_physmap, xenabi.XENMEM_decrease_reservation:
		b := guestBytes(arg, 32)
		if b == nil {
			return 0, unix.EFAULT
		}
		extStart, nr, order, domid := le.Uint64(b), le.Uint64(b[8:]), le.Uint32(b[16:]), hyp.DomID(le.Uint16(b[24:]))
		start := cmd >> 6
		if order > maxExtentOrder || nr > maxPopulatePages || start > nr {
			return 0, unix.EINVAL
		}
		if domid == xenabi.DOMID_SELF {
			domid = caller
		}
		ext := guestBytes(extStart, int(8*nr))
		if nr > 0 && ext == nil {
			return 0, unix.EFAULT
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		d := s.domains[domid]
		if d == nil || d.dead {
			return 0, unix.ESRCH
		}
		if !d.hvm || !d.dmPriv(caller) && caller != d.id {
			return 0, unix.EPERM
		}
		if cmd&memopCmdMask == xenabi.XENMEM_populate_physmap {
			return d.populate(ext, start, nr, order)
		}
		return d.decrease(ext, start, nr, order), nil

	case xenabi.XENMEM_add_to_physmap:
		b := guestBytes(arg, 24)
		if b == nil {
			return 0, unix.EFAULT
		}
		domid, size, space, idx, gpfn := hyp.DomID(le.Uint16(b)), le.Uint16(b[2:]), le.Uint32(b[4:]), le.Uint64(b[8:]), le.Uint64(b[16:])
		if domid == xenabi.DOMID_SELF {
			domid = caller
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		d := s.domains[domid]
		if d == nil || d.dead {
			return 0, unix.ESRCH
		}
		if !d.dmPriv(caller) && caller != d.id {
			return 0, unix.EPERM
		}
		n := uint64(1)
		switch space {
		case xenabi.XENMAPSPACE_gmfn:
		case xenabi.XENMAPSPACE_gmfn_range:
			n = uint64(size)
		default:
			return 0, unix.ENOSYS // shared_info, grant tables, foreign: not simulated
		}
		for i := uint64(0); i < n; i++ {
			if !d.movePage(idx+i, gpfn+i) {
				// Report progress like Xen: size counts what is left.
				if space == xenabi.XENMAPSPACE_gmfn_range {
					le.PutUint16(b[2:], uint16(n-i))
					le.PutUint64(b[8:], idx+i)
					le.PutUint64(b[16:], gpfn+i)
				}
				return 0, unix.EINVAL
			}
		}
		if space == xenabi.XENMAPSPACE_gmfn_range {
			le.PutUint16(b[2:], 0)
		}
		d.mapcacheInvalidate = true
		s.record(Event{Kind: EventAddToPhysmap, Dom: d.id, First: idx, Addr: gpfn, Nr: n})
		return 0, nil
	}
	return 0, unix.ENOSYS
}

// populate backs the extents with new zeroed RAM (populate_physmap). It
// stops at the first extent it cannot populate and returns how many were
// done, as Xen does.
func (d *Domain) populate(ext []byte, start, nr uint64, order uint32) (uintptr, error) {
	pages := (nr - start) << order
	if pages > maxPopulatePages {
		return 0, unix.ENOMEM
	}
	if pages == 0 {
		return uintptr(start), nil
	}
	m, err := newShmem(fmt.Sprintf("xensim-populate-%v", d.id), int(pages*pageSize))
	if err != nil {
		return 0, unix.ENOMEM
	}
	d.extraMem = append(d.extraMem, m)
	done := start
	off := int64(0)
	tot := d.totPages()
	for i := start; i < nr; i++ {
		gpfn := binary.LittleEndian.Uint64(ext[8*i:])
		if gpfn&(1<<order-1) != 0 || gpfn+(1<<order) < gpfn {
			break
		}
		// Each page populated is a new page of the domain's, also over
		// a gfn that had one (Xen then drops the old mapping, not the
		// page's count).
		if max := d.cfg.MaxPages; max != 0 && tot+1<<order > max {
			break
		}
		tot += 1 << order
		for j := uint64(0); j < 1<<order; j++ {
			gfn := gpfn + j
			d.overlay[gfn] = p2mEntry{mem: m, fd: m.fd, off: off, ram: true}
			delete(d.memType, gfn)
			off += pageSize
			if gfn > d.maxGPFN {
				d.maxGPFN = gfn
			}
		}
		d.s.record(Event{Kind: EventPopulatePhysmap, Dom: d.id, First: gpfn, Nr: 1 << order})
		done++
	}
	return uintptr(done), nil
}

// totPages counts the domain's RAM pages: its regions but the holes
// made in them, and the pages populated or moved outside them. Called
// with s.mu held.
func (d *Domain) totPages() uint64 {
	var n uint64
	for _, r := range d.regions {
		n += r.size / pageSize
	}
	for gfn, e := range d.overlay {
		in := d.region(gfn<<pageShift) != nil
		switch {
		case in && e.hole:
			n--
		case !in && !e.hole && e.ram:
			n++
		}
	}
	return n
}

// decrease removes the extents from the p2m (decrease_reservation),
// stopping at the first page that is not RAM, and asks for a map-cache
// invalidation like Xen (ioreq_signal_mapcache_invalidate).
func (d *Domain) decrease(ext []byte, start, nr uint64, order uint32) uintptr {
	done := start
	for i := start; i < nr; i++ {
		gpfn := binary.LittleEndian.Uint64(ext[8*i:])
		ok := true
		for j := uint64(0); j < 1<<order; j++ {
			if !d.isRAM(gpfn + j) {
				ok = false
				break
			}
		}
		if !ok {
			break
		}
		for j := uint64(0); j < 1<<order; j++ {
			d.overlay[gpfn+j] = p2mEntry{hole: true}
			delete(d.memType, gpfn+j)
		}
		d.s.record(Event{Kind: EventDecreaseReservation, Dom: d.id, First: gpfn, Nr: 1 << order})
		done++
	}
	if done > start {
		d.mapcacheInvalidate = true
	}
	return uintptr(done)
}

// movePage moves RAM page src to gfn dst (XENMAPSPACE_gmfn).
func (d *Domain) movePage(src, dst uint64) bool {
	if !d.isRAM(src) {
		return false
	}
	e, ok := d.overlay[src]
	if !ok {
		fd, off, _ := d.lookupGFN(src)
		e = p2mEntry{mem: d.ram, fd: fd, off: off, ram: true}
	}
	d.overlay[dst] = e
	d.overlay[src] = p2mEntry{hole: true}
	if dst > d.maxGPFN {
		d.maxGPFN = dst
	}
	return true
}

// multicall runs nr struct multicall_entry in caller memory, storing each
// result (negative errno on failure), as Xen's do_multicall.
func (s *Sim) multicall(caller hyp.DomID, arg, nr uint64) (uintptr, error) {
	if nr > 64 {
		return 0, unix.EINVAL
	}
	b := guestBytes(arg, int(64*nr))
	if nr > 0 && b == nil {
		return 0, unix.EFAULT
	}
	le := binary.LittleEndian
	for i := uint64(0); i < nr; i++ {
		e := b[64*i:]
		var a [5]uint64
		for j := range a {
			a[j] = le.Uint64(e[16+8*j:])
		}
		op := le.Uint64(e)
		var r uintptr
		var err error
		if op == xenabi.HYPERVISOR_multicall {
			err = unix.EINVAL
		} else {
			r, err = s.hypercall(caller, op, a)
		}
		if err != nil {
			le.PutUint64(e[8:], uint64(-int64(errno(err))))
		} else {
			le.PutUint64(e[8:], uint64(r))
		}
	}
	return 0, nil
}

// GuestHypercall stands for the guest finishing any hypercall on this
// vCPU: as in Xen's hvm_hypercall, a pending map-cache invalidation
// (after decrease_reservation or add_to_physmap) is then broadcast to the
// ioreq servers. It reports whether one was sent.
func (v *VCPU) GuestHypercall() (bool, error) {
	d := v.d
	d.s.mu.Lock()
	pending := d.mapcacheInvalidate
	d.mapcacheInvalidate = false
	d.s.mu.Unlock()
	if !pending {
		return false, nil
	}
	return true, v.InvalidateMapCache()
}

// MapCacheInvalidatePending reports whether Xen owes the ioreq servers a
// map-cache invalidation (sent at the guest's next hypercall).
func (d *Domain) MapCacheInvalidatePending() bool {
	d.s.mu.RLock()
	defer d.s.mu.RUnlock()
	return d.mapcacheInvalidate
}
