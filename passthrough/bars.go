package passthrough

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"

	"godm/devices"
	"godm/pci"

	"golang.org/x/sys/unix"
)

const pageSize = 4096

type barKind uint8

const (
	barNone barKind = iota
	barIO
	barMem32
	barMem64
	barMem64Hi // upper half of the previous BAR
)

// Mapping is a range of a host BAR mapped into the guest: frames for
// MMIO (XEN_DOMCTL_memory_mapping), ports for I/O
// (XEN_DOMCTL_ioport_mapping).
type Mapping struct {
	BAR   int
	IO    bool
	Guest uint64 // first guest frame or port
	Host  uint64 // first machine frame or port
	Nr    uint64 // frames or ports
}

// trapRange is a guest MMIO range of a BAR that stays with the device
// model (the MSI-X table and PBA pages).
type trapRange struct {
	base, size uint64 // guest
	barOff     int64  // offset of base in the BAR (negative for a BAR inside its page)
}

type bar struct {
	kind     barKind
	prefetch bool
	size     uint64 // power of two
	host     uint64 // host address (resource start)
	// In effect:
	maps  []Mapping
	traps []trapRange
	// refused is the placement Xen refused to map: it stays unmapped
	// (and its MSI-X pages untrapped) until the guest places or enables
	// the BAR differently.
	refused []Mapping
}

func (b *bar) flags() uint32 {
	var f uint32
	switch b.kind {
	case barIO:
		return 1
	case barMem64:
		f = 0x4
	}
	if b.prefetch {
		f |= 0x8
	}
	return f
}

// initBARs describes the guest BARs from the host's resources (sizes and
// addresses) and configuration space (types); guest BARs start
// unassigned (address 0), for the guest's firmware to place them.
func (d *Device) initBARs(hc *[256]byte) error {
	h := d.cfg.Host
	for i := 0; i < 6; i++ {
		r := h.Resources[i]
		if d.bars[i].kind == barMem64Hi || r.Size() == 0 {
			continue
		}
		low := uint32(hc[0x10+4*i]) | uint32(hc[0x11+4*i])<<8
		b := &d.bars[i]
		b.size = r.Size()
		if b.size&(b.size-1) != 0 {
			b.size = 1 << bits.Len64(b.size)
		}
		b.host = r.Start
		switch {
		case r.IO():
			b.kind = barIO
			if b.size < 4 {
				b.size = 4
			}
		case low&0x6 == 0x4 && i < 5:
			b.kind = barMem64
			d.bars[i+1].kind = barMem64Hi
		default:
			b.kind = barMem32
			if r.Flags&resourceMem64 != 0 && i < 5 {
				b.kind = barMem64
				d.bars[i+1].kind = barMem64Hi
			}
		}
		b.prefetch = b.kind != barIO && (low&0x8 != 0 || r.Flags&resourcePrefetch != 0)
		if b.kind == barMem32 && b.size > 1<<31 {
			return fmt.Errorf("passthrough: %v: BAR%d of %#x bytes does not fit a 32-bit BAR", h.Addr, i, b.size)
		}
		if b.kind != barIO && b.size < 16 {
			b.size = 16
		}
		d.t.set(0x10+4*i, 4, b.flags())
	}
	if r := h.Resources[6]; r.Size() != 0 {
		d.rom.size = r.Size()
		if d.rom.size&(d.rom.size-1) != 0 {
			d.rom.size = 1 << bits.Len64(d.rom.size)
		}
		if d.rom.size < 2048 {
			d.rom.size = 2048
		}
		d.rom.image = h.ROM
	}
	return nil
}

// normalizeBARsLocked applies the size masks and type bits to what the guest
// wrote (a BAR reads back its size on all-ones).
func (d *Device) normalizeBARsLocked() {
	for i := 0; i < 6; i++ {
		b := &d.bars[i]
		off := 0x10 + 4*i
		v := d.t.get(off, 4)
		switch b.kind {
		case barNone:
			v = 0
		case barIO:
			v = v&^uint32(b.size-1)&^3 | 1
		case barMem32, barMem64:
			v = v&^uint32(b.size-1)&^0xf | b.flags()
		case barMem64Hi:
			v &^= uint32((d.bars[i-1].size - 1) >> 32)
		}
		d.t.set(off, 4, v)
	}
}

// guestAddr returns BAR i's guest address.
func (d *Device) guestAddr(i int) uint64 {
	b := &d.bars[i]
	v := uint64(d.t.get(0x10+4*i, 4))
	switch b.kind {
	case barIO:
		return v &^ 3
	case barMem64:
		return v&^0xf | uint64(d.t.get(0x14+4*i, 4))<<32
	}
	return v &^ 0xf
}

// validMem reports whether a memory range is a placement the device can
// decode at: not 0, not the all-ones sizing pattern, and inside the
// addressable space (QEMU's pci_bar_address rules for 32-bit BARs).
func validMem(base, size uint64, is64 bool) bool {
	last := base + size - 1
	if base == 0 || last < base || last >= 1<<52 || uint32(last) == 0xffffffff {
		return false
	}
	return is64 || last < 0xffffffff
}

// wantedLocked returns BAR i's mappings and traps for the current guest state.
func (d *Device) wantedLocked(i int) ([]Mapping, []trapRange) {
	b := &d.bars[i]
	if !d.usable {
		return nil, nil
	}
	cmd := d.commandLocked()
	base := d.guestAddr(i)
	switch b.kind {
	case barIO:
		if cmd&cmdIO == 0 || base == 0 || base+b.size > 0x10000 {
			return nil, nil
		}
		return []Mapping{{BAR: i, IO: true, Guest: base, Host: b.host, Nr: b.size}}, nil
	case barMem32, barMem64:
	default:
		return nil, nil
	}
	if cmd&cmdMemory == 0 || !validMem(base, b.size, b.kind == barMem64) {
		return nil, nil
	}
	// Whole pages of the BAR; a BAR smaller than a page maps the page
	// it is in, which needs the same offset in the page on both sides.
	start, n := uint64(0), (b.size+pageSize-1)/pageSize
	if base%pageSize != b.host%pageSize {
		d.cfg.Log.Warn("passthrough: BAR not page aligned the same way in guest and host; not mapped",
			"host", d.cfg.Host.Addr, "bar", i, "guest", base, "machine", b.host)
		return nil, nil
	}
	gfn, mfn := base/pageSize, b.host/pageSize
	// Holes: the MSI-X table and PBA pages.
	var holes [][2]uint64 // page ranges [from, to)
	if m := d.msix; m != nil {
		if m.bir == i {
			holes = append(holes, pageSpan(base%pageSize+m.tableOff, uint64(m.n)*16))
		}
		if m.pbaBIR == i {
			holes = append(holes, pageSpan(base%pageSize+m.pbaOff, pbaLen(m.n)))
		}
	}
	slices.SortFunc(holes, func(a, b [2]uint64) int { return int(a[0]) - int(b[0]) })
	var maps []Mapping
	var traps []trapRange
	for _, h := range holes {
		from, to := max(h[0], start), min(h[1], n)
		if from >= to {
			continue
		}
		if from > start {
			maps = append(maps, Mapping{BAR: i, Guest: gfn + start, Host: mfn + start, Nr: from - start})
		}
		if k := len(traps); k > 0 && traps[k-1].base+traps[k-1].size == (gfn+from)*pageSize {
			traps[k-1].size += (to - from) * pageSize
		} else {
			traps = append(traps, trapRange{base: (gfn + from) * pageSize, size: (to - from) * pageSize,
				barOff: int64(from*pageSize) - int64(base%pageSize)})
		}
		start = to
	}
	if start < n {
		maps = append(maps, Mapping{BAR: i, Guest: gfn + start, Host: mfn + start, Nr: n - start})
	}
	return maps, traps
}

// pageSpan returns the pages [from, to) covering n bytes at off.
func pageSpan(off, n uint64) [2]uint64 {
	if n == 0 {
		n = 1
	}
	return [2]uint64{off / pageSize, (off + n + pageSize - 1) / pageSize}
}

// reconcileBARsLocked brings the mappings in line with the guest's BARs and
// commandLocked register: a BAR that moved or stopped decoding is unmapped
// first, then mapped at its new place.
func (d *Device) reconcileBARsLocked() {
	moved := false
	for i := range d.bars {
		maps, traps := d.wantedLocked(i)
		b := &d.bars[i]
		if b.refused != nil {
			if slices.Equal(maps, b.refused) {
				continue // refused as it stands: no retry on unrelated writes
			}
			b.refused = nil
		}
		if slices.Equal(maps, b.maps) && slices.Equal(traps, b.traps) {
			continue
		}
		_ = d.unmapBARLocked(i)
		d.mapBARLocked(i, maps, traps)
		if d.msix != nil && d.msix.bir == i {
			moved = true
		}
	}
	if moved {
		d.msixTableMovedLocked()
	}
}

// mapBARLocked maps BAR i's pieces and traps its MSI-X pages. A BAR is
// mapped whole or not at all: if Xen refuses a piece, the pieces already
// mapped are unmapped again and the placement is remembered as refused,
// so the guest's accesses to the BAR decode nowhere (reads all-ones)
// until it moves or re-enables it. Xen has no query for a domain's I/O
// memory or port permissions, so a refused mapping (EPERM: the toolstack
// did not grant the domain that memory) is the first sign of one.
func (d *Device) mapBARLocked(i int, maps []Mapping, traps []trapRange) {
	b := &d.bars[i]
	dom := d.cfg.Dom
	for _, m := range maps {
		d.warnOverlapLocked(i, m)
		var err error
		if m.IO {
			err = d.cfg.Xen.IoportMapping(dom, uint32(m.Guest), uint32(m.Host), uint32(m.Nr), true)
		} else {
			err = d.cfg.Xen.MemoryMapping(dom, m.Guest, m.Host, m.Nr, true)
		}
		if err != nil {
			what := "memory"
			first, last := m.Host*pageSize, (m.Host+m.Nr)*pageSize-1
			if m.IO {
				what, first, last = "ports", m.Host, m.Host+m.Nr-1
			}
			why := "Xen failed to map it"
			if errors.Is(err, unix.EPERM) {
				why = "Xen refused: the domain was not granted this " + what + " (the toolstack grants it when it assigns the function)"
			}
			_ = d.fail(fmt.Sprintf("BAR%d left unmapped (guest accesses to it are not decoded): %s; host %s %#x-%#x",
				i, why, what, first, last), err)
			d.refusedBARs.Add(1)
			_ = d.unmapBARLocked(i)
			b.refused = maps
			return
		}
		b.maps = append(b.maps, m)
	}
	for _, tr := range traps {
		if d.bus == nil {
			break
		}
		h := &msixTrap{d: d, bar: i, barOff: tr.barOff}
		if err := d.bus.MMIO.Register(tr.base, tr.size, h); err != nil {
			_ = d.fail(fmt.Sprintf("trapping the MSI-X pages of BAR%d", i), err)
			continue
		}
		b.traps = append(b.traps, tr)
	}
}

// warnOverlapLocked logs a mapping that hides an emulated device's range
// (QEMU's xen_pt_region_update warns the same way): Xen's p2m entry wins,
// so the emulated device becomes unreachable there.
func (d *Device) warnOverlapLocked(i int, m Mapping) {
	if d.bus == nil {
		return
	}
	sp, first, last := d.bus.MMIO, m.Guest*pageSize, (m.Guest+m.Nr)*pageSize-1
	if m.IO {
		sp, first, last = d.bus.PIO, m.Guest, m.Guest+m.Nr-1
	}
	for _, r := range sp.Ranges() {
		if r.Base <= last && first <= r.Base+r.Size-1 {
			d.cfg.Log.Warn("passthrough: BAR placed over an emulated device's range, which it hides",
				"host", d.cfg.Host.Addr, "bar", i, "guest", first, "emulated", r.Base, "size", r.Size)
			return
		}
	}
}

// unmapBARLocked undoes BAR i's mappings and traps.
func (d *Device) unmapBARLocked(i int) error {
	b := &d.bars[i]
	var errs []error
	for _, m := range b.maps {
		var err error
		if m.IO {
			err = d.cfg.Xen.IoportMapping(d.cfg.Dom, uint32(m.Guest), uint32(m.Host), uint32(m.Nr), false)
		} else {
			err = d.cfg.Xen.MemoryMapping(d.cfg.Dom, m.Guest, m.Host, m.Nr, false)
		}
		if err != nil {
			errs = append(errs, d.fail(fmt.Sprintf("unmapping BAR%d", i), err))
		}
	}
	b.maps = nil
	for _, tr := range b.traps {
		if d.bus == nil {
			break
		}
		if err := d.bus.MMIO.Unregister(tr.base); err != nil {
			errs = append(errs, fmt.Errorf("passthrough: untrapping BAR%d: %w", i, err))
		}
	}
	b.traps = nil
	return errors.Join(errs...)
}

// Mappings returns the BAR mappings in effect.
func (d *Device) Mappings() []Mapping {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Mapping
	for i := range d.bars {
		out = append(out, d.bars[i].maps...)
	}
	return out
}

// romBAR is the expansion ROM, exposed read-only: its image (read from
// sysfs) is served by the device model, never mapped.
type romBAR struct {
	size   uint64
	image  []byte
	mapped uint64 // guest base registered, 0 if none
}

func (d *Device) normalizeROMLocked() {
	v := d.t.get(0x30, 4)
	if d.rom.size == 0 {
		v = 0
	} else {
		v &= ^uint32(d.rom.size-1) | 1
		v &^= 0x7fe
	}
	d.t.set(0x30, 4, v)
}

func (d *Device) reconcileROMLocked() {
	v := d.t.get(0x30, 4)
	want := uint64(0)
	if base := uint64(v &^ 0x7ff); d.rom.size != 0 && v&1 != 0 && d.commandLocked()&cmdMemory != 0 &&
		validMem(base, d.rom.size, false) && d.rom.image != nil {
		want = base
	}
	if want == d.rom.mapped {
		return
	}
	_ = d.unmapROMLocked()
	if want != 0 && d.bus != nil {
		if err := d.bus.MMIO.Register(want, d.rom.size, romHandler{image: d.rom.image}); err != nil {
			_ = d.fail("placing the expansion ROM", err)
			return
		}
		d.rom.mapped = want
	}
}

func (d *Device) unmapROMLocked() error {
	if d.rom.mapped == 0 || d.bus == nil {
		d.rom.mapped = 0
		return nil
	}
	err := d.bus.MMIO.Unregister(d.rom.mapped)
	d.rom.mapped = 0
	if err != nil {
		return fmt.Errorf("passthrough: removing the expansion ROM: %w", err)
	}
	return nil
}

// romHandler serves the ROM image read-only (zeros past its end).
type romHandler struct{ image []byte }

func (r romHandler) Read(a devices.Access) uint64 {
	var v uint64
	for i := uint64(0); i < uint64(a.Size); i++ {
		if o := a.Offset + i; o < uint64(len(r.image)) {
			v |= uint64(r.image[o]) << (8 * i)
		}
	}
	return v
}

func (romHandler) Write(devices.Access, uint64) {}

// Regions describes the guest's BARs and expansion ROM as QMP's
// query-pci reports them: sizes and types as the guest sees them, the
// guest address where each decodes (command register and a valid base,
// as for an emulated function; QEMU's xen_pt registers them as the
// emulated device's regions).
func (d *Device) Regions() []pci.Region {
	d.mu.Lock()
	defer d.mu.Unlock()
	cmd := d.commandLocked()
	var out []pci.Region
	for i := range d.bars {
		b := &d.bars[i]
		if b.kind != barIO && b.kind != barMem32 && b.kind != barMem64 {
			continue
		}
		r := pci.Region{BAR: i, IO: b.kind == barIO, Mem64: b.kind == barMem64, Prefetch: b.prefetch, Size: b.size}
		r.Address = d.guestAddr(i)
		if r.IO {
			r.Mapped = cmd&cmdIO != 0 && r.Address != 0 && r.Address+b.size <= 1<<16
		} else {
			r.Mapped = cmd&cmdMemory != 0 && validMem(r.Address, b.size, b.kind == barMem64)
		}
		out = append(out, r)
	}
	if d.rom.size != 0 {
		v := d.t.get(0x30, 4)
		base := uint64(v &^ 0x7ff)
		out = append(out, pci.Region{BAR: 6, Size: d.rom.size, Address: base,
			Mapped: v&1 != 0 && cmd&cmdMemory != 0 && validMem(base, d.rom.size, false)})
	}
	return out
}

// ConfigRead reads the configuration space as the guest sees it.
func (d *Device) ConfigRead(off uint32, size uint8) uint32 {
	return uint32(d.Read(devices.Access{Addr: uint64(off), Offset: uint64(off), Size: size}))
}
