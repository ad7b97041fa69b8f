package passthrough

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"godm/devices"
	"godm/hyp"
)

// Config describes one passed-through function.
type Config struct {
	// Dom is the guest.
	Dom hyp.DomID
	// Host is the host function (from OpenHost). The Device uses its
	// configuration space and resources; it does not close it.
	Host *HostDevice
	// Xen issues the PIRQ, binding and mapping hypercalls (NewXen).
	Xen Xen
	// Slot is the guest device number on bus 0 (function 0).
	Slot uint8
	// Permissive lets guest writes to registers no rule covers reach the
	// host (QEMU's permissive=on). Off by default: such writes are
	// dropped, with a one-time hint in the log.
	Permissive bool
	// MSIXAllWrites says Xen advertises XENFEAT_dm_msix_all_writes
	// (DetectMSIXAllWrites): it forwards every MSI-X vector-control write,
	// masking ones included, so godm's view of the mask bits is exact.
	// Without it Xen keeps the vector-control writes of bound entries to
	// itself, except an unmasking one after the entry's address or data
	// was written (see msixWriteLocked). It changes nothing about the PBA
	// and the other registers on the MSI-X pages (see msixTrap).
	MSIXAllWrites bool
	// Assign, if set, is asked (XEN_DOMCTL_test_assign_device, see
	// AssignQuery) before the guest's first use of the function: until
	// Xen confirms that a guest has the function in its IOMMU context,
	// nothing is mapped or bound and bus mastering stays off on the host
	// (a function still in dom0's or quarantine's IOMMU context would
	// let the guest's DMA reach them). nil skips the check.
	Assign AssignQuery
	// Log receives control-path messages; nil discards them.
	Log *slog.Logger
}

// Stats counts what a Device refused or failed to do.
type Stats struct {
	// DroppedWrites are guest writes to bytes no rule lets through.
	DroppedWrites uint64
	// HostErrors are failed host configuration reads or writes.
	HostErrors uint64
	// MapErrors are failed mappings, PIRQ maps or bindings.
	MapErrors uint64
	// TrapMisses are guest reads of the trapped MSI-X pages outside the
	// table (the PBA, or a register beside the table) that read 0
	// because the BAR's sysfs resource file could not be mapped.
	TrapMisses uint64
	// TrapWrites are guest writes to the trapped MSI-X pages that were
	// dropped: to the PBA (read-only), to other registers on those
	// pages, outside the BAR, or of a size or alignment the table does
	// not accept.
	TrapWrites uint64
	// RefusedBARs are BAR placements left unmapped because Xen refused
	// a mapping (EPERM: the domain was not granted the memory or ports).
	RefusedBARs uint64
	// Unassigned are guest enables refused because Xen had not assigned
	// the function to a guest (Config.Assign).
	Unassigned uint64
	// MultiMessage are guest writes asking for more than one MSI vector
	// (Multiple Message Enable), which godm does not offer.
	MultiMessage uint64
}

// Device is a host PCI function passed through to a guest: its
// configuration space, virtualised, is a devices.Handler; its BARs are
// mapped into the guest's p2m while the guest decodes them; its INTx,
// MSI and MSI-X are routed to the guest through PIRQs.
type Device struct {
	cfg  Config
	sbdf devices.SBDF
	// pcie: the guest sees a PCI Express capability, so the function
	// has an extended configuration space (set by New, then fixed).
	pcie bool

	mu      sync.Mutex
	t       regTable     // +checklocks:mu
	reset   regTable     // t as built, restored by Unplug; +checklocks:mu
	caps    []capInfo    // +checklocks:mu
	bars    [6]bar       // +checklocks:mu
	rom     romBAR       // +checklocks:mu
	msi     *msiState    // +checklocks:mu
	msix    *msixState   // +checklocks:mu
	intx    intxState    // +checklocks:mu
	bus     *devices.Bus // +checklocks:mu
	plugged bool         // +checklocks:mu
	// usable: the guest may use the function (Config.Assign confirmed,
	// or no check); assignOK caches a confirmation until Unplug.
	usable   bool    // +checklocks:mu
	assignOK bool    // +checklocks:mu
	scratch  [8]byte // host I/O buffer; +checklocks:mu
	// windows map the host pages of the MSI-X traps read-only while
	// plugged (window.go). +checklocks:mu
	windows []hostWindow

	hinted        atomic.Bool
	droppedWrites atomic.Uint64
	hostErrors    atomic.Uint64
	mapErrors     atomic.Uint64
	trapMisses    atomic.Uint64
	trapWrites    atomic.Uint64
	refusedBARs   atomic.Uint64
	unassigned    atomic.Uint64
	multiMessage  atomic.Uint64
	msixHinted    atomic.Bool
	assignHinted  atomic.Bool
	mmeHinted     atomic.Bool
}

// New builds the virtualised function from the host's configuration space
// (read once here for the layout; afterwards every access reads the
// host's current value for the bits it shows). Nothing is mapped or bound
// before Plug.
func New(cfg Config) (*Device, error) {
	if cfg.Host == nil || cfg.Host.Config == nil || cfg.Xen == nil {
		return nil, errors.New("passthrough: Config needs Host and Xen")
	}
	if cfg.Slot > 31 {
		return nil, fmt.Errorf("passthrough: guest slot %d out of range", cfg.Slot)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	d := &Device{cfg: cfg, sbdf: devices.NewSBDF(0, 0, cfg.Slot, 0)}
	var hc [256]byte
	if _, err := cfg.Host.Config.ReadAt(hc[:], 0); err != nil {
		return nil, fmt.Errorf("passthrough: %v: reading config space: %w", cfg.Host.Addr, err)
	}
	hasIRQ := cfg.Host.GSI > 0 && hc[0x3d] >= 1 && hc[0x3d] <= 4
	d.caps = buildTable(&d.t, &hc, hasIRQ)
	if err := d.initBARs(&hc); err != nil {
		return nil, err
	}
	for _, c := range d.caps {
		switch c.id {
		case capMSI:
			d.msi = newMSI(&hc, c.off)
		case capMSIX:
			m, err := newMSIX(&hc, c.off, &d.bars, cfg.Host)
			if err != nil {
				cfg.Log.Warn("passthrough: MSI-X capability hidden", "host", cfg.Host.Addr, "err", err)
				d.hideCap(c.off)
				continue
			}
			d.msix = m
		}
	}
	d.pcie = slices.ContainsFunc(d.caps, func(c capInfo) bool { return c.id == capPCIe })
	d.intx.pirq = -1
	d.reset = d.t
	return d, nil
}

// hideCap takes the capability at off out of the emulated list (after
// buildTable, when it turns out unusable).
func (d *Device) hideCap(off int) {
	for i, c := range d.caps {
		if c.off != off {
			continue
		}
		next := uint32(d.t.val[off+1])
		if i == 0 {
			d.t.set(0x34, 1, next)
		} else {
			d.t.set(d.caps[i-1].off+1, 1, next)
		}
		d.caps = append(d.caps[:i], d.caps[i+1:]...)
		for o := off; o < off+4; o++ {
			d.t.kind[o], d.t.emu[o], d.t.ro[o], d.t.hook[o] = kindHidden, 0, 0, hookNone
		}
		if len(d.caps) == 0 {
			d.t.set(0x06, 2, 0)
		}
		return
	}
}

// quiesceHostLocked turns off MSI and MSI-X on the host if a previous user
// left them on (QEMU's xen_pt_msgctrl_reg_init and msixctrl_reg_init):
// the guest starts with both disabled. Called with mu held.
func (d *Device) quiesceHostLocked() {
	for _, c := range d.caps {
		var bit uint8
		switch c.id {
		case capMSI:
			bit = 0x01 // enable, low byte of control
		case capMSIX:
			bit = 0x80 // enable, high byte of control
		default:
			continue
		}
		off := int64(c.off + 2)
		if c.id == capMSIX {
			off++
		}
		var b [1]byte
		if _, err := d.cfg.Host.Config.ReadAt(b[:], off); err != nil {
			d.hostErrors.Add(1)
			continue
		}
		if b[0]&bit != 0 {
			b[0] &^= bit
			if _, err := d.cfg.Host.Config.WriteAt(b[:], off); err != nil {
				d.hostErrors.Add(1)
			}
		}
	}
}

// SBDF returns the guest address of the function.
func (d *Device) SBDF() devices.SBDF { return d.sbdf }

// Stats returns the counters.
func (d *Device) Stats() Stats {
	return Stats{DroppedWrites: d.droppedWrites.Load(), HostErrors: d.hostErrors.Load(),
		MapErrors: d.mapErrors.Load(), TrapMisses: d.trapMisses.Load(), TrapWrites: d.trapWrites.Load(), RefusedBARs: d.refusedBARs.Load(),
		Unassigned: d.unassigned.Load(), MultiMessage: d.multiMessage.Load()}
}

// Plug makes the function visible on bus: its configuration space is
// registered at SBDF (so an ioreq server attached to bus claims it), and
// its INTx is mapped and bound. BARs, MSI and MSI-X follow the guest's
// programming from then on. If INTx cannot be bound, the host's INTx is
// disabled and the guest sees no interrupt pin (it can still use MSI).
func (d *Device) Plug(bus *devices.Bus) error {
	d.mu.Lock()
	if d.plugged {
		d.mu.Unlock()
		return fmt.Errorf("passthrough: %v already plugged", d.sbdf)
	}
	d.bus, d.plugged = bus, true
	d.quiesceHostLocked()
	if err := d.mapWindowsLocked(); err != nil {
		d.cfg.Log.Warn("passthrough: cannot map the MSI-X pages of the device read-only; guest reads of its PBA "+
			"and of registers beside the MSI-X table will read 0", "host", d.cfg.Host.Addr, "err", err)
	}
	d.setupINTxLocked()
	d.mu.Unlock()
	if err := bus.PCI.Register(d.sbdf, d); err != nil {
		uerr := d.teardown()
		return errors.Join(fmt.Errorf("passthrough: plugging %v at %v: %w", d.cfg.Host.Addr, d.sbdf, err), uerr)
	}
	return nil
}

// Unplug removes the function from the guest and undoes everything done
// in the hypervisor: MSI-X and MSI bindings and PIRQs, the INTx binding
// and PIRQ, the BAR mappings, the trapped MSI-X and ROM ranges and the
// read-only mapping of the MSI-X pages of the host BARs. It
// goes on past errors and returns them all. Idempotent.
func (d *Device) Unplug() error {
	d.mu.Lock()
	bus, plugged := d.bus, d.plugged
	d.mu.Unlock()
	if !plugged {
		return nil
	}
	var errs []error
	if err := bus.PCI.Unregister(d.sbdf); err != nil {
		errs = append(errs, fmt.Errorf("passthrough: unregistering %v: %w", d.sbdf, err))
	}
	errs = append(errs, d.teardown())
	return errors.Join(errs...)
}

func (d *Device) teardown() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	if d.msix != nil {
		errs = append(errs, d.msixDisableLocked())
	}
	if d.msi != nil {
		errs = append(errs, d.msiDisableLocked())
	}
	errs = append(errs, d.teardownINTxLocked())
	for i := range d.bars {
		errs = append(errs, d.unmapBARLocked(i))
	}
	errs = append(errs, d.unmapROMLocked())
	errs = append(errs, d.unmapWindowsLocked())
	// Back to the power-on view, so that a later Plug starts clean.
	d.t = d.reset
	if d.msix != nil {
		for i := range d.msix.entries {
			d.msix.entries[i] = msixEntry{ctrl: 1, v: vector{pirq: -1}}
		}
		d.msix.enabled, d.msix.maskall = false, false
	}
	d.plugged, d.bus = false, nil
	d.usable, d.assignOK = false, false
	for i := range d.bars {
		d.bars[i].refused = nil
	}
	return errors.Join(errs...)
}

// Read implements devices.Handler for the configuration space: a.Addr
// is the register.
func (d *Device) Read(a devices.Access) uint64 {
	reg, size := int(a.Addr), int(a.Size)
	if size < 1 || size > 8 || reg < 0 || reg+size > devices.ConfigSize {
		return devices.SizeMask(a.Size)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.plugged { // a late access after Unplug
		return devices.SizeMask(a.Size)
	}
	// The extended space (0x100-0xfff) is never read from the host:
	// godm virtualises none of its capabilities (AER, SR-IOV, ACS...),
	// and their registers would expose and let the guest probe host
	// state. A PCI Express function shows an empty extended capability
	// list: the header at 0x100 reads 0, "no extended capabilities"
	// (PCI Express Base Specification 3.0, §7.9.1), and so does the rest.
	// A conventional function has no extended space: all-ones, as an
	// unsupported request completes (QEMU's xen_pt refuses offsets past
	// 0xff the same way).
	var ext uint64
	if !d.pcie {
		ext = ^uint64(0)
	}
	if reg >= 256 {
		return ext & devices.SizeMask(a.Size)
	}
	if reg+size > 256 {
		size = 256 - reg
	}
	cur := d.scratch[:size]
	if d.needHostLocked(reg, size) {
		if _, err := d.cfg.Host.Config.ReadAt(cur, int64(reg)); err != nil {
			d.hostErrors.Add(1)
			for i := range cur {
				cur[i] = 0xff
			}
		}
	}
	var v uint64
	for i := 0; i < size; i++ {
		o := reg + i
		var b uint8
		switch d.t.kind[o] {
		case kindUncovered:
			b = cur[i]
		case kindCovered:
			b = cur[i]&^d.t.emu[o] | d.t.val[o]&d.t.emu[o]
		}
		v |= uint64(b) << (8 * i)
	}
	if size < int(a.Size) { // straddles 0x100: the rest is extended space
		v |= ext << (8 * size) & devices.SizeMask(a.Size)
	}
	return v
}

// needHostLocked reports whether any byte of the access shows host bits.
func (d *Device) needHostLocked(reg, size int) bool {
	for o := reg; o < reg+size; o++ {
		switch d.t.kind[o] {
		case kindUncovered:
			return true
		case kindCovered:
			if d.t.emu[o] != 0xff {
				return true
			}
		}
	}
	return false
}

// Write implements devices.Handler for the configuration space.
func (d *Device) Write(a devices.Access, v uint64) {
	reg, size := int(a.Addr), int(a.Size)
	if size < 1 || size > 8 || reg < 0 || reg+size > 256 {
		d.droppedWrites.Add(1)
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.plugged { // a late access after Unplug: nothing may reach the host
		d.droppedWrites.Add(1)
		return
	}
	if m := d.msi; m != nil {
		// Multiple Message Enable: godm offers one vector (Multiple
		// Message Capable reads 0) and ignores a request for more.
		if o := m.off + 2; reg <= o && o < reg+size && uint8(v>>(8*(o-reg)))&0x70 != 0 {
			d.multiMessage.Add(1)
			if d.mmeHinted.CompareAndSwap(false, true) {
				d.cfg.Log.Warn("passthrough: guest asked for more than one MSI vector; only one is offered and routed",
					"host", d.cfg.Host.Addr)
			}
		}
	}
	perm := d.cfg.Permissive
	var th [8]uint8
	anyHost, allHost, dropped := false, true, false
	for i := 0; i < size; i++ {
		th[i] = d.t.through(reg+i, perm)
		if th[i] != 0 {
			anyHost = true
		} else {
			allHost = false
		}
		if d.t.kind[reg+i] == kindUncovered && !perm {
			dropped = true
		}
	}
	cur := d.scratch[:size]
	if anyHost {
		if _, err := d.cfg.Host.Config.ReadAt(cur, int64(reg)); err != nil {
			d.hostErrors.Add(1)
			anyHost = false
		}
	}
	var hooks hook
	for i := 0; i < size; i++ {
		o, b := reg+i, uint8(v>>(8*i))
		if d.t.kind[o] == kindCovered {
			w := d.t.emu[o] &^ d.t.ro[o]
			d.t.val[o] = d.t.val[o]&^w | b&w
			d.t.val[o] &^= d.t.rw1c[o] & d.t.emu[o] & b
			hooks |= d.t.hook[o]
		}
		if th[i] != 0 {
			rw1c := d.t.rw1c[o] &^ d.t.emu[o]
			cur[i] = cur[i]&^th[i]&^rw1c | b&th[i] | cur[i]&d.t.or[o]
		}
	}
	// INTx disable stays set on the host while INTx is not bound.
	if anyHost && reg <= 5 && reg+size > 5 && d.intx.pirq < 0 && th[5-reg] != 0 {
		cur[5-reg] |= cmdINTxDisable >> 8
	}
	// Mappings and interrupts follow first, so that (as in QEMU) an
	// MSI or MSI-X enable reaches the device only once its vectors are
	// routed, and a disable only after they are torn down.
	if hooks != hookNone {
		d.applyLocked(hooks)
	}
	// Bus mastering reaches the host only for a function Xen has in a
	// guest's IOMMU context (Config.Assign).
	if anyHost && reg <= 4 && reg+size > 4 && !d.usable {
		cur[4-reg] &^= cmdBusMaster
	}
	// MSI enable reaches the host only with its vector routed.
	if anyHost && d.msi != nil && hooks&hookMSI != 0 {
		if o := d.msi.off + 2; reg <= o && reg+size > o && !d.msi.v.bound {
			cur[o-reg] &^= 0x01
		}
	}
	if anyHost {
		if allHost {
			d.hostWriteLocked(cur, reg)
		} else {
			for i := 0; i < size; i++ {
				if th[i] != 0 {
					d.hostWriteLocked(cur[i:i+1], reg+i)
				}
			}
		}
	}
	if dropped {
		d.droppedWrites.Add(1)
		if d.hinted.CompareAndSwap(false, true) {
			d.cfg.Log.Warn("passthrough: guest write to a register godm does not virtualise was dropped; "+
				"if the device misbehaves, try permissive mode", "host", d.cfg.Host.Addr, "reg", reg, "size", size)
		}
	}
}

func (d *Device) hostWriteLocked(p []byte, reg int) {
	if _, err := d.cfg.Host.Config.WriteAt(p, int64(reg)); err != nil {
		d.hostErrors.Add(1)
	}
}

// applyLocked re-derives the state the written registers control. Called with
// mu held.
func (d *Device) applyLocked(h hook) {
	d.usable = d.usableLocked()
	if h&(hookBAR|hookCommand) != 0 {
		d.normalizeBARsLocked()
		d.reconcileBARsLocked()
	}
	if h&(hookROM|hookCommand) != 0 {
		d.normalizeROMLocked()
		d.reconcileROMLocked()
	}
	if h&hookMSI != 0 && d.msi != nil {
		d.reconcileMSILocked()
	}
	if h&hookMSIX != 0 && d.msix != nil {
		d.reconcileMSIXLocked()
	}
}

// usableLocked reports whether the guest may use the function now: it
// asks Config.Assign (once confirmed, never again until Unplug) when the
// guest enables decoding, bus mastering, MSI or MSI-X.
func (d *Device) usableLocked() bool {
	if d.cfg.Assign == nil || d.assignOK {
		return true
	}
	enabling := d.commandLocked()&(cmdIO|cmdMemory|cmdBusMaster) != 0 ||
		(d.msi != nil && d.t.get(d.msi.off+2, 2)&1 != 0) ||
		(d.msix != nil && d.t.get(d.msix.off+2, 2)&0x8000 != 0)
	if !enabling {
		return false // nothing to gate yet; ask when the guest enables something
	}
	a, err := QueryAssignment(d.cfg.Assign, d.cfg.Dom, d.cfg.Host.Addr)
	switch a {
	case AssignGuest:
		d.assignOK = true
		return true
	case AssignUnknown:
		// Without the answer, Xen's own checks (per-domain I/O memory
		// and IRQ permissions) are all that guard the mappings.
		if d.assignHinted.CompareAndSwap(false, true) {
			d.cfg.Log.Warn("passthrough: cannot ask Xen whether the function is assigned; relying on Xen's mapping checks",
				"host", d.cfg.Host.Addr, "err", err)
		}
		d.assignOK = true
		return true
	}
	d.unassigned.Add(1)
	what := "no guest has it in its IOMMU context (test_assign_device: free)"
	if a == AssignNoIOMMU {
		what = "the domain has no IOMMU context"
	}
	d.cfg.Log.Error("passthrough: guest enabled a function Xen has not assigned to it: nothing mapped or bound, "+
		"bus mastering kept off; assign it with xl pci-attach (or let libxl finish) and have the guest enable it again",
		"host", d.cfg.Host.Addr, "dom", d.cfg.Dom, "why", what)
	return false
}

// commandLocked returns the guest's command register.
func (d *Device) commandLocked() uint16 { return uint16(d.t.get(0x04, 2)) }

// fail counts and logs a failed hypercall on the control path.
func (d *Device) fail(what string, err error) error {
	d.mapErrors.Add(1)
	d.cfg.Log.Error("passthrough: "+what, "host", d.cfg.Host.Addr, "err", err)
	return err
}

// StatsValue is Stats as a plain value, for counter collectors that
// cannot import this package (internal/machine's metrics).
func (d *Device) StatsValue() any { return d.Stats() }
