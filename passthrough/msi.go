package passthrough

import (
	"errors"
	"fmt"

	"godm/devices"
	"godm/hyp/domctl"
	"godm/hyp/hcall"
	"godm/hyp/xenabi"
)

// MSI address and data fields (Intel SDM vol. 3 §11.11): destination
// ID in address bits 12-19, redirection hint bit 3, destination mode
// bit 2; delivery mode in data bits 8-10, trigger mode bit 15.
func msiGFlags(addr uint64, data uint32, unmasked bool) uint32 {
	f := uint32(addr>>12) & xenabi.XEN_DOMCTL_VMSI_X86_DEST_ID_MASK
	if addr&(1<<3) != 0 {
		f |= xenabi.XEN_DOMCTL_VMSI_X86_RH_MASK
	}
	if addr&(1<<2) != 0 {
		f |= xenabi.XEN_DOMCTL_VMSI_X86_DM_MASK
	}
	f |= (data >> 8 & 7) << 12 // XEN_DOMCTL_VMSI_X86_DELIV_MASK
	if data&(1<<15) != 0 {
		f |= xenabi.XEN_DOMCTL_VMSI_X86_TRIG_MASK
	}
	if unmasked {
		f |= xenabi.XEN_DOMCTL_VMSI_X86_UNMASKED
	}
	return f
}

// msiPIRQ is the PIRQ to ask for: a guest that writes vector 0 is
// PV-aware and names the PIRQ in the address (QEMU's
// xen_pt_msi_addr2pirq: destination ID plus the upper address bits).
func msiPIRQ(addr uint64, data uint32) int32 {
	if data&0xff != 0 {
		return -1
	}
	return int32(uint32(addr>>12)&0xff | uint32(addr>>32)&0xffffff00)
}

// mapReq is the PHYSDEVOP_map_pirq request for an MSI (entry 0, no
// table) or MSI-X entry of the host function.
func (d *Device) mapReq(entry int, table uint64, addr uint64, data uint32) hcall.MapPIRQRequest {
	h := d.cfg.Host.Addr
	r := hcall.MapPIRQRequest{Type: xenabi.MAP_PIRQ_TYPE_MSI, Index: -1, PIRQ: msiPIRQ(addr, data),
		Bus: int32(h.Bus()), Devfn: int32(h.Dev())<<3 | int32(h.Fn()), EntryNr: int32(entry), TableBase: table}
	if h.Seg() != 0 {
		r.Type = xenabi.MAP_PIRQ_TYPE_MSI_SEG
		r.Bus |= int32(h.Seg()) << 16
	}
	return r
}

// vector is a guest MSI or MSI-X vector routed through a PIRQ.
type vector struct {
	pirq  int // -1: none mapped
	bound bool
	b     domctl.IRQBinding
}

// routeLocked maps (if needed) and binds v to the guest's address and data.
func (d *Device) routeLocked(v *vector, entry int, table, gtable, addr uint64, data uint32, unmasked bool) error {
	if !d.usable {
		return errUnassigned
	}
	if v.pirq < 0 {
		pirq, err := d.cfg.Xen.MapPIRQ(d.cfg.Dom, d.mapReq(entry, table, addr, data))
		if err != nil {
			return d.fail(fmt.Sprintf("mapping MSI entry %d", entry), err)
		}
		v.pirq = pirq
	}
	b := domctl.IRQBinding{Kind: domctl.MSI, MachineIRQ: uint32(v.pirq), GVec: uint8(data),
		GFlags: msiGFlags(addr, data, unmasked), GTable: gtable}
	if err := d.cfg.Xen.BindPtIRQ(d.cfg.Dom, b); err != nil {
		return d.fail(fmt.Sprintf("binding MSI entry %d (pirq %d)", entry, v.pirq), err)
	}
	v.bound, v.b = true, b
	return nil
}

// errUnassigned: the function may not be used yet (Config.Assign).
var errUnassigned = errors.New("passthrough: function not assigned to a guest")

// unrouteLocked unbinds and unmaps v.
func (d *Device) unrouteLocked(v *vector) error {
	var errs []error
	if v.bound {
		if err := d.cfg.Xen.UnbindPtIRQ(d.cfg.Dom, v.b); err != nil {
			errs = append(errs, d.fail("unbinding MSI", err))
		}
	}
	if v.pirq >= 0 {
		if err := d.cfg.Xen.UnmapPIRQ(d.cfg.Dom, v.pirq); err != nil {
			errs = append(errs, d.fail("unmapping MSI pirq", err))
		}
	}
	*v = vector{pirq: -1}
	return errors.Join(errs...)
}

// msiState is the MSI capability (one vector).
type msiState struct {
	off     int
	is64    bool
	dataOff int
	v       vector
}

func newMSI(hc *[256]byte, off int) *msiState {
	m := &msiState{off: off, is64: hc[off+2]&0x80 != 0, dataOff: off + 8, v: vector{pirq: -1}}
	if m.is64 {
		m.dataOff = off + 12
	}
	return m
}

// reconcileMSILocked follows the guest's MSI control, address and data:
// enabling maps and binds, a new address or data while enabled rebinds,
// disabling unbinds and unmaps. Called with mu held.
func (d *Device) reconcileMSILocked() {
	m := d.msi
	enabled := d.t.get(m.off+2, 2)&1 != 0
	if !enabled {
		_ = d.msiDisableLocked()
		return
	}
	addr := uint64(d.t.get(m.off+4, 4))
	if m.is64 {
		addr |= uint64(d.t.get(m.off+8, 4)) << 32
	}
	data := d.t.get(m.dataOff, 2)
	want := domctl.IRQBinding{Kind: domctl.MSI, GVec: uint8(data), GFlags: msiGFlags(addr, data, true)}
	if m.v.bound && m.v.b.GVec == want.GVec && m.v.b.GFlags == want.GFlags {
		return
	}
	_ = d.routeLocked(&m.v, 0, 0, 0, addr, data, true)
}

func (d *Device) msiDisableLocked() error { return d.unrouteLocked(&d.msi.v) }

// msixState is the MSI-X capability and the guest's view of the table.
type msixState struct {
	off              int
	n                int
	bir, pbaBIR      int
	tableOff, pbaOff uint64
	hostTable        uint64 // machine address of the table
	entries          []msixEntry
	enabled, maskall bool
}

type msixEntry struct {
	addr  uint64
	data  uint32
	ctrl  uint32
	dirty bool // address or data changed since the binding
	v     vector
}

func newMSIX(hc *[256]byte, off int, bars *[6]bar, h *HostDevice) (*msixState, error) {
	le32 := func(o int) uint32 {
		return uint32(hc[o]) | uint32(hc[o+1])<<8 | uint32(hc[o+2])<<16 | uint32(hc[o+3])<<24
	}
	ctrl := uint32(hc[off+2]) | uint32(hc[off+3])<<8
	t, p := le32(off+4), le32(off+8)
	m := &msixState{off: off, n: int(ctrl&0x7ff) + 1, bir: int(t & 7), tableOff: uint64(t &^ 7),
		pbaBIR: int(p & 7), pbaOff: uint64(p &^ 7)}
	for _, bi := range []int{m.bir, m.pbaBIR} {
		if bi > 5 || (bars[bi].kind != barMem32 && bars[bi].kind != barMem64) {
			return nil, fmt.Errorf("MSI-X table or PBA in BAR%d, which is not a memory BAR", bi)
		}
	}
	if m.tableOff+uint64(m.n)*16 > bars[m.bir].size {
		return nil, fmt.Errorf("MSI-X table (%d entries at %#x) outside BAR%d", m.n, m.tableOff, m.bir)
	}
	if m.pbaOff+pbaLen(m.n) > bars[m.pbaBIR].size {
		return nil, fmt.Errorf("MSI-X PBA (%d entries at %#x) outside BAR%d", m.n, m.pbaOff, m.pbaBIR)
	}
	m.hostTable = h.Resources[m.bir].Start + m.tableOff
	m.entries = make([]msixEntry, m.n)
	for i := range m.entries {
		m.entries[i] = msixEntry{ctrl: 1, v: vector{pirq: -1}}
	}
	return m, nil
}

// gtableLocked is the guest address of the table, 0 while its BAR is not
// decoded.
func (d *Device) gtableLocked() uint64 {
	m := d.msix
	if len(d.bars[m.bir].maps) == 0 && len(d.bars[m.bir].traps) == 0 {
		return 0
	}
	return d.guestAddr(m.bir) + m.tableOff
}

// reconcileMSIXLocked follows the control register. Called with mu held.
func (d *Device) reconcileMSIXLocked() {
	m := d.msix
	c := d.t.get(m.off+2, 2)
	m.enabled, m.maskall = c&0x8000 != 0, c&0x4000 != 0
	if !m.enabled {
		_ = d.msixDisableLocked()
		return
	}
	if m.maskall {
		return
	}
	for i := range m.entries {
		d.msixUpdateLocked(i)
	}
}

// msixUpdateLocked routes entry i if it is unmasked and not routed as the
// guest programmed it (QEMU's xen_pt_msix_update_one).
func (d *Device) msixUpdateLocked(i int) {
	m := d.msix
	e := &m.entries[i]
	if !m.enabled || m.maskall || e.ctrl&1 != 0 {
		return
	}
	if e.v.bound && !e.dirty {
		return
	}
	if e.data&0xff == 0 && e.addr == 0 {
		return // never programmed
	}
	if d.routeLocked(&e.v, i, m.hostTable, d.gtableLocked(), e.addr, e.data, true) == nil {
		e.dirty = false
	}
}

// msixDisableLocked unbinds and unmaps every entry's PIRQ.
func (d *Device) msixDisableLocked() error {
	var errs []error
	for i := range d.msix.entries {
		e := &d.msix.entries[i]
		if e.v.pirq >= 0 || e.v.bound {
			errs = append(errs, d.unrouteLocked(&e.v))
		}
	}
	return errors.Join(errs...)
}

// msixTableMovedLocked rebinds the bound entries with the table's new guest
// address (QEMU's xen_pt_msix_update_remap).
func (d *Device) msixTableMovedLocked() {
	m := d.msix
	gt := d.gtableLocked()
	for i := range m.entries {
		e := &m.entries[i]
		if e.v.bound && e.v.b.GTable != gt && gt != 0 {
			b := e.v.b
			b.GTable = gt
			if err := d.cfg.Xen.BindPtIRQ(d.cfg.Dom, b); err != nil {
				_ = d.fail("rebinding MSI-X after the table moved", err)
				continue
			}
			e.v.b = b
		}
	}
}

// msixTrap serves the trapped MSI-X pages of BAR bar (its Read and Write
// say what each offset answers).
//
// What reaches it depends on Xen (xen/arch/x86/hvm/vmsi.c): Xen itself
// intercepts a page only while some vector of the function is bound
// (msixtbl_pt_register, called by XEN_DOMCTL_bind_pt_irq with the
// table's guest address), and then only the pages the table spans. Of
// those it serves reads of bound entries it shadows and, from Xen 4.19
// on, accesses beside the table on its first and last page ("adjacent"
// access, xen commit b2cd07a044: reads from the device, writes to it
// unless the PBA shares that page). Every other access on the trapped
// pages comes here: all of them before the first binding, a PBA on a
// page of its own always (Xen never serves it), and, before 4.19, the
// registers beside the table too. From 4.19 on, every aligned write Xen
// intercepts, adjacent ones included, is also forwarded here after Xen
// has done it (_msixtbl_write returns X86EMUL_UNHANDLEABLE, xen commit
// 64b21662b1, advertised as XENFEAT_dm_msix_all_writes), so a write
// outside the table must not be repeated here.
type msixTrap struct {
	d      *Device
	bar    int
	barOff int64
}

// tableIndex returns the entry and dword of a BAR offset, or -1.
func (m *msixState) tableIndex(off int64) (int, int) {
	rel := off - int64(m.tableOff)
	if rel < 0 || rel >= int64(m.n)*16 {
		return -1, 0
	}
	return int(rel / 16), int(rel%16) / 4
}

// trapPlace says where a trapped access lands.
type trapPlace uint8

const (
	placeTable   trapPlace = iota // the MSI-X table: emulated
	placePBA                      // the PBA: read from the device, read-only
	placeDevice                   // another register of the BAR on a trapped page
	placeOutside                  // outside the BAR (a BAR smaller than a page)
)

// placeLocked classifies an aligned access of size bytes at BAR offset
// off. The table and PBA start QWORD aligned and are whole QWORDs long,
// so an aligned access is wholly in or out of each. Called with mu held.
func (t *msixTrap) placeLocked(m *msixState, off int64, size uint8) trapPlace {
	switch {
	case off < 0 || uint64(off)+uint64(size) > t.d.bars[t.bar].size:
		return placeOutside
	case t.bar == m.bir && off >= int64(m.tableOff) && off < int64(m.tableOff)+int64(m.n)*16:
		return placeTable
	case t.bar == m.pbaBIR && off >= int64(m.pbaOff) && uint64(off) < m.pbaOff+pbaLen(m.n):
		return placePBA
	}
	return placeDevice
}

// Read serves a guest read of the trapped pages: the table from the
// emulated entries (DWORD or QWORD accesses only, as the PCI spec
// allows; others read all-ones); the PBA and any other register of the
// BAR on those pages from the device, through the read-only mapping of
// its sysfs resource file (QEMU's pci_msix_read reads them from the
// device too, hw/xen/xen_pt_msi.c), or 0 if there is none (counted in
// Stats.TrapMisses, with a one-time hint); bytes of the page outside a
// BAR smaller than a page, all-ones (nothing decodes them). Does not
// allocate.
func (t *msixTrap) Read(a devices.Access) uint64 {
	d := t.d
	off := t.barOff + int64(a.Offset)
	if a.Size != 1 && a.Size != 2 && a.Size != 4 && a.Size != 8 || off&int64(a.Size-1) != 0 {
		return devices.SizeMask(a.Size)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.msix
	if m == nil || !d.plugged {
		return devices.SizeMask(a.Size)
	}
	switch t.placeLocked(m, off, a.Size) {
	case placeOutside:
		return devices.SizeMask(a.Size)
	case placeTable:
		if a.Size < 4 {
			return devices.SizeMask(a.Size)
		}
		var v uint64
		for k := int64(0); k < int64(a.Size)/4; k++ {
			i, w := m.tableIndex(off + 4*k)
			v |= uint64(m.entries[i].dword(w)) << (32 * k)
		}
		return v
	}
	for i := range d.windows {
		if v, ok := d.windows[i].read(t.bar, off, a.Size); ok {
			return v
		}
	}
	t.miss()
	return 0
}

// Write serves a guest write of the trapped pages: table writes update
// the emulated entries (DWORD or QWORD accesses only); every other
// write is dropped and counted (Stats.TrapWrites). The PBA is read-only
// (PCI Local Bus Specification 3.0, §6.8.2, Pending Bits: writes are
// ignored).
// Another register on these pages (which the PCI spec forbids there, but
// some devices have) is not written either, as QEMU's pci_msix_write
// drops writes past the table: the host maps these pages read-only
// while the function uses MSI-X, and from Xen 4.19 on Xen has already
// written the registers beside the table when such a write arrives
// here (see msixTrap). Does not allocate.
func (t *msixTrap) Write(a devices.Access, v uint64) {
	d := t.d
	off := t.barOff + int64(a.Offset)
	if a.Size != 1 && a.Size != 2 && a.Size != 4 && a.Size != 8 || off&int64(a.Size-1) != 0 {
		d.trapWrites.Add(1)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.msix
	if m == nil || !d.plugged { // a late access after Unplug
		d.trapWrites.Add(1)
		return
	}
	if t.placeLocked(m, off, a.Size) != placeTable || a.Size < 4 {
		d.trapWrites.Add(1)
		return
	}
	for k := int64(0); k < int64(a.Size)/4; k++ {
		i, w := m.tableIndex(off + 4*k)
		d.msixWriteLocked(i, w, uint32(v>>(32*k)))
	}
}

// miss counts a read outside the table that no mapping of the device
// serves, with a one-time hint.
func (t *msixTrap) miss() {
	d := t.d
	d.trapMisses.Add(1)
	if d.msixHinted.CompareAndSwap(false, true) {
		d.cfg.Log.Warn("passthrough: guest read of the MSI-X PBA or of a register beside the MSI-X table reads 0: "+
			"the BAR's sysfs resource file could not be mapped (see the warning at plug time)",
			"host", d.cfg.Host.Addr, "bar", t.bar)
	}
}

func (e *msixEntry) dword(w int) uint32 {
	switch w {
	case 0:
		return uint32(e.addr)
	case 1:
		return uint32(e.addr >> 32)
	case 2:
		return e.data
	}
	return e.ctrl
}

// msixWriteLocked is a guest write of dword w of entry i. Address and data
// are latched and applied when the entry is next unmasked. With
// XENFEAT_dm_msix_all_writes every mask write comes here, so the mask
// state is exact and, like QEMU, a change to an entry that is unmasked
// under an enabled function (undefined by the PCI spec) is refused.
// Without it (Xen before 4.19, xen/arch/x86/hvm/vmsi.c msixtbl_write),
// Xen handles the vector-control writes of bound entries itself and
// forwards an unmasking one only if the entry's address or data was
// written since, so an entry godm believes unmasked may be masked: the
// change is latched and applied at the unmasking write Xen will then
// forward (QEMU reads the real mask bit through /dev/mem instead, which
// godm never uses). Called with mu held.
func (d *Device) msixWriteLocked(i, w int, v uint32) {
	m := d.msix
	e := &m.entries[i]
	if w < 3 {
		if d.cfg.MSIXAllWrites && m.enabled && e.ctrl&1 == 0 && !m.maskall {
			d.droppedWrites.Add(1)
			return
		}
		switch w {
		case 0:
			e.addr = e.addr&^0xffffffff | uint64(v)
		case 1:
			e.addr = e.addr&0xffffffff | uint64(v)<<32
		case 2:
			e.data = v
		}
		e.dirty = true
		return
	}
	e.ctrl = v & 1 // other bits reserved
	d.msixUpdateLocked(i)
}
