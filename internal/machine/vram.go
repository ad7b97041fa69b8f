package machine

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"godm/devices/vga"
	"godm/hyp/foreign"
	"godm/hyp/hcall"
	"godm/hyp/xenabi"
	"godm/memory/layout"

	"golang.org/x/sys/unix"
)

// vramAllocator places display devices' VRAM in the guest's p2m (the
// board's Env.VRAM), as QEMU-xen does for vga.vram (hw/i386/xen/xen-hvm.c
// xen_ram_alloc): its frames are populated at a range reserved above the
// guest's RAM, where QEMU's ram_addr for it lies (the xen.ram block covers
// the RAM, 4 GiB plus the RAM above it when there is some, and vga.vram
// follows), and godm maps them for the device.
type vramAllocator struct {
	m    *Machine
	lay  layout.Layout
	hc   *hcall.Caller
	mu   sync.Mutex
	next uint64 // the next free gfn of the reserved range
}

func newVRAMAllocator(m *Machine, hc *hcall.Caller, lay layout.Layout) *vramAllocator {
	a := &vramAllocator{m: m, hc: hc, lay: lay}
	if r := lay.Regions(); len(r) > 0 {
		a.next = r[len(r)-1].End() / vramPage
	}
	return a
}

const vramPage = 4096

// AllocVRAM populates size bytes of frames and maps them.
func (a *vramAllocator) AllocVRAM(size uint32) (vga.P2M, error) {
	if a.next == 0 {
		return nil, errors.New("the guest's RAM size is not known: no place above it for VRAM")
	}
	if size == 0 || size%vramPage != 0 {
		return nil, fmt.Errorf("VRAM of %d bytes is not a page multiple", size)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	pages := uint64(size / vramPage)
	gfns := make([]uint64, pages)
	for i := range gfns {
		gfns[i] = a.next + uint64(i)
	}
	v := &p2mVRAM{m: a.m, hc: a.hc, lay: a.lay, home: a.next, pages: uint32(pages), gfns: gfns,
		wrote: make([]atomic.Uint64, (pages+63)/64)}
	if a.m.Spec.Incoming {
		// The frames came back with the domain's RAM: Adopt, called by
		// the device's restore, finds them.
		v.pending = make([]byte, size)
	} else if err := v.populate(); err != nil {
		return nil, err
	}
	v.where.Store(v.home)
	a.next += pages
	a.m.vrams.add(v)
	return v, nil
}

// populate backs the home range with new frames and maps them.
func (v *p2mVRAM) populate() error {
	dom := v.m.Spec.Dom
	if err := v.hc.PopulatePhysmap(dom, 0, 0, v.gfns); err != nil {
		// Xen populates in order and stops at the first failure (seen
		// on the box: 260 of 4096 pages, then ENOMEM at the domain's
		// maxmem): give the ones it did back.
		_ = v.hc.DecreaseReservation(dom, 0, v.gfns)
		return err
	}
	mp, err := foreign.Map(v.m.priv, dom, true, v.gfns)
	if err == nil && mp.Holes() > 0 {
		mp.Close()
		err = fmt.Errorf("%d of %d VRAM pages could not be mapped", mp.Holes(), v.pages)
	}
	if err != nil {
		_ = v.hc.DecreaseReservation(dom, 0, v.gfns)
		return err
	}
	v.mp = mp
	return nil
}

// Adopt takes over the frames a restored domain has at gfn (see
// vga.P2M): they must all be there, at the home range or at a place Map
// would accept (a hostile record naming guest RAM is refused: its pages
// would become VRAM and move with the BAR). Where none are, new frames
// are populated at home, as for a domain that did not have them.
func (v *p2mVRAM) Adopt(gfn uint64) error {
	if v.pending == nil {
		return nil
	}
	v.pending = nil
	if gfn != 0 {
		err := recordPlace(v.lay, v.home, v.pages, gfn)
		if err == nil {
			err = v.adopt(gfn)
		}
		if err == nil {
			return nil
		}
		v.m.Spec.Log.Warn("VRAM: the restored domain's frames are not where its device state says; populating new ones",
			"gpa", fmt.Sprintf("%#x", gfn*vramPage), "err", err)
	}
	if err := v.populate(); err != nil {
		v.m.Spec.Log.Warn("VRAM stays trapped: placing it in the restored guest's p2m failed", "err", err)
		v.m.vrams.remove(v)
		return err
	}
	return nil
}

// adopt maps the frames at gfn; away from home they are the LFB BAR's,
// pinned write-back again (the pin is the device model's, not part of
// the domain's saved state).
func (v *p2mVRAM) adopt(gfn uint64) error {
	if gfn+uint64(v.pages) < gfn {
		return errors.New("range wraps")
	}
	gfns := make([]uint64, v.pages)
	for i := range gfns {
		gfns[i] = gfn + uint64(i)
	}
	mp, err := foreign.Map(v.m.priv, v.m.Spec.Dom, true, gfns)
	if err != nil {
		return err
	}
	if mp.Holes() > 0 {
		mp.Close()
		return fmt.Errorf("%d of %d pages are not guest RAM", mp.Holes(), v.pages)
	}
	v.mp = mp
	if gfn != v.home {
		v.at = gfn
		_ = v.m.DM.PinMemoryCacheattr(gfn, gfn+uint64(v.pages)-1, xenabi.XEN_DMOP_MEM_CACHEATTR_WB)
	}
	v.where.Store(gfn)
	v.m.Spec.Log.Info("VRAM taken over from the restored domain", "gpa", fmt.Sprintf("%#x", gfn*vramPage), "pages", v.pages)
	return nil
}

// pciMemEnd is where hvmloader's PCI memory window ends (tools/firmware/
// hvmloader/pci.c pci_mem_end = RESERVED_MEMBASE, config.h 0xFC000000):
// above it are Xen's and hvmloader's special pages, never a BAR.
const pciMemEnd = 0xfc000000

// recordPlace checks a place a device-state record gives for VRAM
// frames of pages pages: their home, or where hvmloader could have put
// the LFB BAR (inside the PCI window below pciMemEnd, over no guest RAM).
// A record is untrusted: taking over or releasing pages elsewhere would
// take the guest's RAM or Xen's special pages.
func recordPlace(lay layout.Layout, home uint64, pages uint32, gfn uint64) error {
	if gfn == home {
		return nil
	}
	base, size := gfn*vramPage, uint64(pages)*vramPage
	if gfn >= pciMemEnd/vramPage || base+size > pciMemEnd || base < 1<<20 {
		return fmt.Errorf("VRAM at %#x is outside the PCI memory window", base)
	}
	for _, r := range lay.Regions() {
		if base < r.End() && r.GPA < base+size {
			return fmt.Errorf("VRAM at %#x overlaps guest RAM", base)
		}
	}
	if h := home * vramPage; base < h+size && h < base+size {
		return fmt.Errorf("VRAM at %#x overlaps the VRAM's own frames", base)
	}
	return nil
}

// DropVRAM is for a display that keeps VRAM trapped in a restored
// domain whose saved device model had it in the p2m: the frames Xen
// brought back at gfn are released, so its LFB BAR traps again (the
// device's VRAM comes from its record). A place recordPlace refuses is
// an error.
func (a *vramAllocator) DropVRAM(gfn uint64, size uint32) error {
	if size == 0 || size%vramPage != 0 {
		return fmt.Errorf("VRAM of %d bytes is not a page multiple", size)
	}
	a.mu.Lock()
	home := a.next
	a.mu.Unlock()
	pages := size / vramPage
	if err := recordPlace(a.lay, home, pages, gfn); err != nil {
		return err
	}
	gfns := make([]uint64, pages)
	for i := range gfns {
		gfns[i] = gfn + uint64(i)
	}
	// Pages that are not there (a saved godm with trapped VRAM) stop
	// Xen's decrease_reservation early: nothing to release.
	_ = a.hc.DecreaseReservation(a.m.Spec.Dom, 0, gfns)
	a.m.Spec.Log.Info("VRAM kept trapped: released the restored domain's VRAM frames", "gpa", fmt.Sprintf("%#x", gfn*vramPage), "pages", pages)
	return nil
}

// checkPlace refuses a place for the frames over guest RAM or over their
// own home (Map's rules).
func (v *p2mVRAM) checkPlace(base uint64) error {
	size := uint64(v.pages) * vramPage
	for _, r := range v.lay.Regions() {
		if base < r.End() && r.GPA < base+size {
			return fmt.Errorf("VRAM at %#x overlaps guest RAM", base)
		}
	}
	if home := v.home * vramPage; base < home+size && home < base+size {
		return fmt.Errorf("VRAM at %#x overlaps the VRAM's own frames", base)
	}
	return nil
}

// p2mVRAM is one device's VRAM frames: at home (the reserved range)
// or at the BAR (at != 0).
type p2mVRAM struct {
	m     *Machine
	lay   layout.Layout
	hc    *hcall.Caller
	home  uint64
	pages uint32
	gfns  []uint64         // home's gfns, for decrease_reservation
	mp    *foreign.Mapping // nil until Adopt for an incoming domain
	// pending is Bytes until Adopt (an incoming domain's VRAM, not
	// mapped yet), nil otherwise
	pending []byte
	at      uint64 // the gfn the frames are at while mapped at a BAR, else 0
	// where is the gfn of the first frame now (home or at), for the
	// dirty reporter's goroutine
	where atomic.Uint64
	// wrote has a bit per page the device wrote while log-dirty was on,
	// not yet reported
	wrote []atomic.Uint64
	// warned: a failed move was logged (once per device)
	warned bool
}

func (v *p2mVRAM) Bytes() []byte {
	if v.mp == nil {
		return v.pending
	}
	return v.mp.Bytes()
}

// Where is the frames' gfn now.
func (v *p2mVRAM) Where() uint64 { return v.where.Load() }

// Map relocates the frames to base with XEN_DMOP_relocate_memory (Xen's
// dm.c: xenmem_add_to_physmap with XENMAPSPACE_gmfn_range, what QEMU's
// xen_add_to_physmap asks through xendevicemodel_relocate_memory), then
// pins the range write-back as QEMU does (the guest's MTRRs make the PCI
// hole uncachable).
func (v *p2mVRAM) Map(base uint64) error {
	if base%vramPage != 0 {
		return fmt.Errorf("VRAM BAR at %#x is not page aligned", base)
	}
	// A guest placing the BAR over its own RAM would have Xen drop those
	// pages (add_to_physmap frees what was at the destination): that
	// BAR stays trapped instead.
	if err := v.checkPlace(base); err != nil {
		return fmt.Errorf("BAR: %w", err)
	}
	if v.mp == nil {
		return errors.New("VRAM frames not taken over yet")
	}
	dst := base / vramPage
	if v.at == dst {
		return nil // adopted there (a restore)
	}
	if v.at != 0 {
		v.Unmap()
	}
	if err := v.m.DM.RelocateMemory(v.pages, v.home, dst); err != nil {
		// Xen moves what it can before failing; take it back.
		_ = v.m.DM.RelocateMemory(v.pages, dst, v.home)
		if !v.warned {
			v.warned = true
			v.m.Spec.Log.Warn("VRAM BAR trapped: moving its frames into the guest's p2m failed", "gpa", fmt.Sprintf("%#x", base), "err", err)
		}
		return err
	}
	v.at = dst
	v.where.Store(dst)
	v.m.Spec.Log.Info("VRAM in the guest's p2m at the LFB BAR", "gpa", fmt.Sprintf("%#x", base), "pages", v.pages)
	_ = v.m.DM.PinMemoryCacheattr(dst, dst+uint64(v.pages)-1, xenabi.XEN_DMOP_MEM_CACHEATTR_WB)
	return nil
}

// Unmap moves the frames home (QEMU's xen_remove_from_physmap) and stops
// dirty tracking on them.
func (v *p2mVRAM) Unmap() {
	if v.at == 0 {
		return
	}
	dst := v.at
	_ = v.m.DM.TrackDirtyVRAM(0, 0, nil)
	_ = v.m.DM.PinMemoryCacheattr(dst, dst+uint64(v.pages)-1, xenabi.XEN_DMOP_DELETE_MEM_CACHEATTR)
	_ = v.m.DM.RelocateMemory(v.pages, dst, v.home)
	v.at = 0
	v.where.Store(v.home)
}

// Wrote marks the pages of a device-side write while log-dirty is on
// (what the machine's DirtyLog does for the devices' DMA): the dirty
// reporter sends them as modified memory where the frames are then.
func (v *p2mVRAM) Wrote(off, n uint64) {
	if n == 0 || v.m.dirty == nil || !v.m.dirty.Enabled() {
		return
	}
	last := min((off+n-1)/vramPage, uint64(v.pages)-1)
	for p := off / vramPage; p <= last; p++ {
		w := &v.wrote[p/64]
		if bit := uint64(1) << (p % 64); w.Load()&bit == 0 {
			w.Or(bit)
		}
	}
}

// collectWrote calls visit for each run of pages written since the last
// call, at the frames' current place.
func (v *p2mVRAM) collectWrote(visit func(gfn, n uint64)) {
	base := v.where.Load()
	run, start := uint64(0), uint64(0)
	for i := range v.wrote {
		bits := v.wrote[i].Swap(0)
		for j := uint64(0); j < 64; j++ {
			p := uint64(i)*64 + j
			if bits&(1<<j) != 0 {
				if run == 0 {
					start = p
				}
				run++
				continue
			}
			if run > 0 {
				visit(base+start, run)
				run = 0
			}
		}
	}
	if run > 0 {
		visit(base+start, run)
	}
}

// vramList is the machine's p2m VRAMs, for the dirty reporter.
type vramList struct {
	mu sync.Mutex
	vs []*p2mVRAM
}

func (l *vramList) add(v *p2mVRAM) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.vs = append(l.vs, v)
}

func (l *vramList) remove(v *p2mVRAM) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, x := range l.vs {
		if x == v {
			l.vs = append(l.vs[:i], l.vs[i+1:]...)
			return
		}
	}
}

func (l *vramList) collect(visit func(gfn, n uint64)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range l.vs {
		v.collectWrote(visit)
	}
}

// Dirty is XEN_DMOP_track_dirty_vram over the frames at the BAR.
func (v *p2mVRAM) Dirty(bitmap []byte) error {
	if v.at == 0 {
		return unix.EINVAL
	}
	return v.m.DM.TrackDirtyVRAM(v.at, v.pages, bitmap)
}

// Close unmaps the frames from godm and releases them in Xen. The
// release is best effort: when godm closes because the domain is being
// destroyed the moves fail and the frames go with the domain (seen on the
// box: decrease_reservation then finds holes and refuses).
func (v *p2mVRAM) Close() error {
	v.m.vrams.remove(v)
	if v.mp == nil {
		return nil // never adopted or populated: nothing of ours in Xen
	}
	v.Unmap()
	err := v.mp.Close()
	v.mp = nil
	_ = v.hc.DecreaseReservation(v.m.Spec.Dom, 0, v.gfns)
	return err
}
