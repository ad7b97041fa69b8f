package pci

import (
	"fmt"

	"godm/devices"
)

// BARKind is the type of a base address register (PCI Local Bus 3.0
// §6.2.5.1).
type BARKind uint8

// BAR kinds.
const (
	// BARNone is an unimplemented BAR: it reads 0 and ignores writes.
	BARNone BARKind = iota
	// BARIO decodes port I/O.
	BARIO
	// BARMem32 decodes memory anywhere below 4 GiB.
	BARMem32
	// BARMem64 decodes memory anywhere in the 64-bit space; it takes the
	// next BAR register for the upper half.
	BARMem64
	// barUpper marks the register holding the upper half of a BARMem64.
	barUpper
)

// String returns the kind's name.
func (k BARKind) String() string {
	switch k {
	case BARNone:
		return "none"
	case BARIO:
		return "io"
	case BARMem32:
		return "mem32"
	case BARMem64:
		return "mem64"
	case barUpper:
		return "mem64-upper"
	}
	return fmt.Sprintf("BARKind(%d)", uint8(k))
}

// BAR describes one base address register.
type BAR struct {
	// Kind is the BAR's type.
	Kind BARKind
	// Size is the decoded size in bytes, a power of two: at least 4 for
	// I/O and 16 for memory.
	Size uint64
	// Prefetchable sets the prefetchable bit of a memory BAR.
	Prefetchable bool
	// Handler receives accesses to the BAR's range (Access.Offset is
	// relative to the BAR's base) except those to an MSI-X table or PBA
	// placed in it. A nil Handler reads 0 and ignores writes.
	Handler devices.Handler
	// RAM, when set, is asked first to back the BAR's range with guest
	// RAM placed in the p2m (the VGA's VRAM, as QEMU-xen's framebuffer):
	// the range is then not registered in the bus (the hypervisor stops
	// forwarding its accesses). When RAM refuses, the range is
	// registered and Handler serves it, as without RAM.
	RAM RAMBacking
	// RAMOverlay keeps the range registered on the bus while RAM maps
	// it too: the RAM covers only part of the BAR, or only at times (the
	// Cirrus LFB), and the hypervisor forwards the accesses to the pages
	// that are not RAM.
	RAMOverlay bool
}

// RAMBacking places a memory BAR's frames in the guest's p2m. MapRAM is
// called when the BAR starts decoding at base (or moves there), UnmapRAM
// when it stops (or before it moves); both run with no lock of the
// function held.
type RAMBacking interface {
	MapRAM(base uint64) error
	UnmapRAM()
}

// bar is the state of one BAR (or the ROM).
type bar struct {
	kind     BARKind
	size     uint64
	h        devices.Handler
	ram      RAMBacking
	wrap     barHandler
	mapped   bool   // guarded by mapMu
	mappedAt uint64 // guarded by mapMu
	inRAM    bool   // mapped through ram; guarded by mapMu
	onBus    bool   // registered on the bus; guarded by mapMu
	overlay  bool   // RAMOverlay
}

// barReg returns the configuration offset of BAR i (romIndex: the ROM).
func barReg(i int) int {
	if i == romIndex {
		return RegROM
	}
	return RegBAR0 + 4*i
}

func isPow2(v uint64) bool { return v != 0 && v&(v-1) == 0 }

// SetBAR describes BAR index (0..5). A BARMem64 also claims index+1.
func (d *Device) SetBAR(index int, b BAR) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.setupCheck("set bar"); err != nil {
		return err
	}
	bad := func(why string) error {
		return fmt.Errorf("pci: bar %d (%v, size %#x): %s: %w", index, b.Kind, b.Size, why, ErrInvalid)
	}
	if index < 0 || index >= numBARs {
		return bad("index out of range")
	}
	if k := d.bars[index].kind; k != BARNone {
		return bad("register already used by a " + k.String() + " bar")
	}
	if !isPow2(b.Size) {
		return bad("size is not a power of two")
	}
	reg := barReg(index)
	switch b.Kind {
	case BARIO:
		if b.Size < minIOBARSize || b.Size > 1<<16 {
			return bad("i/o size out of range")
		}
		put32(d.cfg, reg, barIOSpace)
		put32(d.wmask, reg, ^uint32(b.Size-1))
	case BARMem32:
		if b.Size < minMemBARSize || b.Size > 1<<31 {
			return bad("mem32 size out of range")
		}
		low := uint32(0)
		if b.Prefetchable {
			low |= barPrefetchable
		}
		put32(d.cfg, reg, low)
		put32(d.wmask, reg, ^uint32(b.Size-1))
	case BARMem64:
		if b.Size < minMemBARSize || b.Size > 1<<62 {
			return bad("mem64 size out of range")
		}
		if index == numBARs-1 || d.bars[index+1].kind != BARNone {
			return bad("no free register for the upper half")
		}
		low := uint32(barMem64)
		if b.Prefetchable {
			low |= barPrefetchable
		}
		mask := ^(b.Size - 1)
		put32(d.cfg, reg, low)
		put32(d.wmask, reg, uint32(mask)&^0xf)
		put32(d.wmask, reg+4, uint32(mask>>32))
		d.bars[index+1].kind = barUpper
	default:
		return bad("unknown kind")
	}
	d.bars[index].kind = b.Kind
	d.bars[index].size = b.Size
	d.bars[index].h = b.Handler
	if b.RAM != nil && b.Kind == BARIO {
		return bad("an i/o bar cannot be RAM")
	}
	d.bars[index].ram = b.RAM
	d.bars[index].overlay = b.RAMOverlay
	return nil
}

// SetROM describes the expansion ROM BAR: size bytes (a power of two, at
// least 2 KiB) served by h, which sees only reads (ROM writes are
// dropped). The ROM decodes when both its enable bit and the command
// register's memory bit are set (§6.2.5.2).
func (d *Device) SetROM(size uint64, h devices.Handler) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.setupCheck("set rom"); err != nil {
		return err
	}
	if !isPow2(size) || size < minROMSize || size > 1<<31 || d.bars[romIndex].kind != BARNone {
		return fmt.Errorf("pci: rom size %#x: %w", size, ErrInvalid)
	}
	put32(d.wmask, RegROM, ^uint32(size-1)|romEnable)
	d.bars[romIndex] = bar{kind: BARMem32, size: size, h: h, wrap: d.bars[romIndex].wrap}
	return nil
}

// BARAddress returns where BAR index (0..5, or 6 for the ROM) currently
// decodes, and whether it decodes at all. It follows QEMU's
// pci_bar_address (hw/pci/pci.c): decoding must be enabled in the command
// register (and the ROM's enable bit set), the base must not be 0, the
// range must fit its space (64 KiB of ports, 4 GiB for 32-bit BARs) and an
// all-ones base (a sizing probe) never decodes.
func (d *Device) BARAddress(index int) (uint64, bool) {
	if index < 0 || index > romIndex {
		return 0, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.barAddressLocked(index)
}

func (d *Device) barAddressLocked(i int) (uint64, bool) {
	b := &d.bars[i]
	reg := barReg(i)
	cmd := get16(d.cfg, RegCommand)
	lo := uint64(get32(d.cfg, reg))
	var base, limit uint64
	switch {
	case b.kind == BARIO:
		if cmd&CommandIO == 0 {
			return 0, false
		}
		base, limit = lo&^3, 1<<16
	case i == romIndex && b.kind == BARMem32:
		if cmd&CommandMemory == 0 || lo&romEnable == 0 {
			return 0, false
		}
		base, limit = lo&^0x7ff, 1<<32
	case b.kind == BARMem32:
		if cmd&CommandMemory == 0 {
			return 0, false
		}
		base, limit = lo&^0xf, 1<<32
	case b.kind == BARMem64:
		if cmd&CommandMemory == 0 {
			return 0, false
		}
		base = lo&^0xf | uint64(get32(d.cfg, reg+4))<<32
		limit = 0 // no limit beyond wrap-around
	default:
		return 0, false
	}
	last := base + b.size - 1
	if base == 0 || last < base || last == ^uint64(0) {
		return 0, false
	}
	// Ports end at 0xffff. QEMU treats a memory range reaching the top of
	// the 32-bit space as a sizing probe (last_addr >= UINT32_MAX).
	if (b.kind == BARIO && last >= limit) || (b.kind != BARIO && limit != 0 && last >= limit-1) {
		return 0, false
	}
	return base, true
}

// space returns the address space BAR i decodes in.
func (d *Device) space(i int) *devices.Space {
	if d.bars[i].kind == BARIO {
		return d.pio
	}
	return d.mmio
}

// updateMappings brings every BAR's registration in line with the
// registers. Preconditions: mapMu held, mu not held.
func (d *Device) updateMappings() {
	var want [numBARs + 1]struct {
		base uint64
		ok   bool
	}
	d.mu.Lock()
	for i := range d.bars {
		if d.bus != nil {
			want[i].base, want[i].ok = d.barAddressLocked(i)
		}
	}
	d.mu.Unlock()
	for i := range d.bars {
		b := &d.bars[i]
		sp := d.space(i)
		if sp == nil || (b.mapped == want[i].ok && (!b.mapped || b.mappedAt == want[i].base)) {
			continue
		}
		if b.ram != nil {
			d.updateRAMBAR(b, sp, want[i].base, want[i].ok)
			continue
		}
		switch {
		case b.mapped && want[i].ok:
			if err := sp.Move(b.mappedAt, want[i].base); err != nil {
				d.mapErrors.Add(1)
				// The new place is taken: the BAR no longer decodes
				// at the old one either.
				_ = sp.Unregister(b.mappedAt)
				b.mapped = false
				continue
			}
			b.mappedAt = want[i].base
		case b.mapped:
			_ = sp.Unregister(b.mappedAt)
			b.mapped = false
		default:
			if err := sp.Register(want[i].base, b.size, &b.wrap); err != nil {
				d.mapErrors.Add(1)
				continue
			}
			b.mapped, b.mappedAt = true, want[i].base
		}
	}
}

// updateRAMBAR moves a BAR with a RAMBacking: off its old place (RAM
// unmapped or range unregistered), then onto the new one, as RAM when
// the backing accepts, else registered on the bus. Preconditions: mapMu
// held, mu not held.
func (d *Device) updateRAMBAR(b *bar, sp *devices.Space, base uint64, ok bool) {
	d.unmapBAR(b, sp)
	if !ok {
		return
	}
	if b.ram.MapRAM(base) == nil {
		b.mapped, b.mappedAt, b.inRAM = true, base, true
		if !b.overlay {
			return
		}
	}
	if err := sp.Register(base, b.size, &b.wrap); err != nil {
		d.mapErrors.Add(1)
		if b.inRAM {
			b.ram.UnmapRAM()
		}
		b.mapped, b.inRAM = false, false
		return
	}
	b.mapped, b.mappedAt, b.onBus = true, base, true
}

// unmapBAR takes BAR b off its place. Preconditions: mapMu held.
func (d *Device) unmapBAR(b *bar, sp *devices.Space) {
	if !b.mapped {
		return
	}
	if b.inRAM {
		b.ram.UnmapRAM()
	}
	if (b.onBus || b.ram == nil) && sp != nil {
		_ = sp.Unregister(b.mappedAt) // a BAR without RAM is always on the bus
	}
	b.mapped, b.inRAM, b.onBus = false, false, false
}

// unmapAll removes every registered BAR range. Preconditions: mapMu held.
func (d *Device) unmapAll() {
	for i := range d.bars {
		d.unmapBAR(&d.bars[i], d.space(i))
	}
}

// barHandler is the Handler registered for BAR i: it routes MSI-X table
// and PBA accesses to the Device and the rest to the BAR's Handler.
type barHandler struct {
	d *Device
	i int
}

// Read implements devices.Handler.
func (h *barHandler) Read(a devices.Access) uint64 {
	d := h.d
	if d.msix.n != 0 {
		if v, ok := d.msixBARRead(h.i, a); ok {
			return v
		}
	}
	if bh := d.bars[h.i].h; bh != nil {
		return bh.Read(a)
	}
	return 0
}

// Write implements devices.Handler.
func (h *barHandler) Write(a devices.Access, v uint64) {
	d := h.d
	if h.i == romIndex {
		return
	}
	if d.msix.n != 0 && d.msixBARWrite(h.i, a, v) {
		return
	}
	if bh := d.bars[h.i].h; bh != nil {
		bh.Write(a, v)
	}
}

// Region describes one BAR (or the expansion ROM) as QMP's query-pci
// reports it (QEMU 7.2 qapi/pci.json PciMemoryRegion).
type Region struct {
	// BAR is 0..5, or 6 for the expansion ROM.
	BAR int
	// IO is an I/O-port BAR; otherwise memory, 64-bit if Mem64.
	IO, Mem64, Prefetch bool
	// Size is the BAR's size in bytes.
	Size uint64
	// Address is where the BAR decodes now; Mapped is false when it
	// does not (decoding off, or an unassigned or invalid base; QEMU
	// reports address -1 then).
	Address uint64
	Mapped  bool
}

// Regions returns the implemented BARs and the ROM, in register order,
// with where each decodes now (BARAddress).
func (d *Device) Regions() []Region {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Region
	for i := range d.bars {
		b := &d.bars[i]
		if b.kind != BARIO && b.kind != BARMem32 && b.kind != BARMem64 {
			continue
		}
		r := Region{BAR: i, IO: b.kind == BARIO, Mem64: b.kind == BARMem64, Size: b.size}
		if !r.IO && i != romIndex {
			r.Prefetch = get32(d.cfg, barReg(i))&barPrefetchable != 0
		}
		r.Address, r.Mapped = d.barAddressLocked(i)
		out = append(out, r)
	}
	return out
}
