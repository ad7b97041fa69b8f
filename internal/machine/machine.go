package machine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"godm/devices"
	"godm/devices/chardev"
	"godm/devices/i440fx"
	"godm/devices/i8042"
	"godm/devices/piix3"
	"godm/devices/piix4pm"
	"godm/devices/testdev"
	"godm/devices/uart"
	"godm/devices/xenplatform"
	"godm/hyp"
	"godm/hyp/dm"
	"godm/hyp/domctl"
	"godm/hyp/foreign"
	"godm/hyp/hcall"
	"godm/hyp/kernel"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"
	"godm/internal/board"
	"godm/ioreq"
	"godm/irq"
	"godm/memory"
	"godm/netback"
	"godm/pci"

	"golang.org/x/sys/unix"
)

// Spec describes the machine godm provides to one HVM domain.
type Spec struct {
	// Dom is the guest domain.
	Dom hyp.DomID
	// VCPUs is the number of vCPU slots to serve; zero asks Xen.
	VCPUs int
	// OnlineVCPUs is how many of them are present at start (slots
	// 0..OnlineVCPUs-1 in the PIIX4 processor bitmap, matching the
	// enabled LAPICs of hvmloader's MADT, which libxl builds from
	// avail_vcpus); the others are hot-plugged later (QMP device_add).
	// Zero: all VCPUs.
	OnlineVCPUs int
	// MemBytes is the guest's RAM size, as the host bridge reports it
	// (zero: not told).
	MemBytes uint64
	// MaxRAMBelow4G is where the PCI hole below 4 GiB starts, as QEMU's
	// -machine xenfv,max-ram-below-4g= (libxl passes it for mmio_hole);
	// zero: Xen's default. See Layout.
	MaxRAMBelow4G uint64
	// Serial holds the backends of COM1..COM4 (empty entries: no port).
	Serial []chardev.Backend
	// NoPS2 leaves out the i8042 keyboard controller.
	NoPS2 bool
	// NoPlatformDevice leaves out the Xen platform device (xen_platform_pci=0).
	NoPlatformDevice bool
	// TestDevice adds godm's test device (devices/testdev) at TestSlot.
	TestDevice bool
	TestSlot   uint8
	// BufIOReq selects the buffered-request mode (default atomic).
	BufIOReq ioreq.BufMode
	// Workers and Worker tune the ioreq fast path (zero: defaults).
	Workers int
	Worker  ioreq.WorkerConfig
	// Restrict deprivileges the process once the machine is built: the
	// privcmd and event-channel handles are restricted to Dom (what
	// QEMU's -xen-domid-restrict does through xentoolcore_restrict_all).
	Restrict bool
	// Incoming says the domain was restored or migrated in (-incoming):
	// Xen's stream brought its RAM back, display VRAM in the p2m
	// included, so that VRAM is taken over where the device state says
	// it is rather than populated again (vram.go).
	Incoming bool
	// Devices, if not nil, is the machine's device list (-device
	// entries), used instead of the one the fields above describe
	// (Entries). Serial back-ends are chardevs "serial0".."serial3".
	Devices []board.Entry
	// Chardevs are more character back-ends by id, for Devices.
	Chardevs map[string]chardev.Backend
	// Netdevs are the network back-ends by id (-netdev), for the NICs
	// of Devices. The caller owns them (closes them after the machine).
	Netdevs map[string]netback.Backend
	// Drives are the block back-ends by id (-drive), opened by the
	// caller; the machine owns them from New on (closed with the
	// machine, or by New when it fails).
	Drives map[string]*board.Drive
	// Storage are the disk devices (ide-hd, ide-cd) added to the xenfv
	// list after its IDE controller; ignored with Devices.
	Storage []board.Entry
	// SerialClock times the serial ports' character timeout; nil means
	// the system clock (tests stop it).
	SerialClock uart.Clock
	// Log receives the platform's log (the guest PV drivers' log channel,
	// unplug requests); nil discards it.
	Log *slog.Logger
	// DeathPoll is how often Serve checks that the domain still exists
	// (zero: DefaultDeathPoll; negative: never).
	DeathPoll time.Duration
	// DeathHint, when set, makes Serve check at once on each receive:
	// the caller feeds it xenstore's @releaseDomain watch (fired when any
	// domain dies or is destroyed), as QEMU does. The poll stays as the
	// fallback.
	DeathHint <-chan struct{}
}

// DefaultDeathPoll is how often Serve checks, by default, that the
// domain still exists.
const DefaultDeathPoll = time.Second

// ErrDomainGone is returned (wrapped) by Serve when the domain was
// destroyed under it.
var ErrDomainGone = errors.New("domain destroyed")

// Slots of the xenfv platform's fixed functions on bus 0.
const (
	// PlatformSlot is the Xen platform device's slot. QEMU's xenfv machine
	// creates it with the machine, in the first free slot after PIIX3
	// (QEMU 7.2 hw/i386/pc_piix.c pc_xen_hvm_init: pc_xen_hvm_init_pci,
	// then pci_create_simple(bus, -1, "xen-platform")); libxl starts
	// QEMU-xen with -nodefaults and gives the VGA as a -device, created
	// later, so libxl's guests see the platform device at 00:02.0 (and a
	// Cirrus VGA at 00:03.0), as measured in the real-Xen box.
	PlatformSlot = 2
	PMFunction   = 3 // PIIX4 PM is function 3 of the PIIX slot
)

// Machine is godm serving one domain.
type Machine struct {
	Spec   Spec
	Spaces *devices.Bus
	PCI    *pci.Bus
	Server *ioreq.Server
	Memory *memory.MapCache
	DM     *dm.Client

	HostBridge *i440fx.Device
	ISABridge  *piix3.Device
	PM         *piix4pm.Device
	Platform   *xenplatform.Device
	UARTs      []*uart.UART
	PS2        *i8042.Controller
	Test       *testdev.Device
	// Board holds the devices (in plug order, by id) and drives their
	// lifecycle; the fields above name the first device of each kind.
	Board *board.Board

	dirty    *memory.DirtyLog // nil when the RAM size is not known
	reporter dirtyReporter    // reports dirty to Xen while log-dirty is on
	vrams    vramList         // display VRAM in the p2m (its device-side writes)
	priv     *privcmd.Handle
	domctl   *domctl.Domctl // for WatchDomain; nil when Xen's domctl version is unknown
	closers  []io.Closer
	closed   atomic.Bool
	eject    atomic.Pointer[EjectHook]
}

// Dirty returns the log of the guest pages the machine's devices wrote
// (every write through Memory), or nil when the guest's RAM size was not
// given (Spec.MemBytes zero). It covers guest-physical addresses up to the
// end of the highest RAM range of Spec.Layout and starts switched off:
// log-dirty (QMP xen-set-global-dirty-log) switches it with SetEnabled.
func (m *Machine) Dirty() *memory.DirtyLog { return m.dirty }

// EjectHook removes the function a component composed on top of the
// machine placed in a slot (PCI passthrough, which reserves its slots on
// PCI), on the guest's ACPI eject of that slot. It reports whether it had
// a function there.
type EjectHook func(slot uint8) (bool, error)

// SetEjectHook installs h (nil removes it); the guest's ACPI eject of a
// slot asks it before the machine's own functions.
func (m *Machine) SetEjectHook(h EjectHook) {
	if h == nil {
		m.eject.Store(nil)
		return
	}
	m.eject.Store(&h)
}

// New builds the machine on kernel k and registers it with Xen. On error
// everything built so far is released.
func New(k kernel.Kernel, spec Spec) (_ *Machine, err error) {
	if spec.Log == nil {
		spec.Log = slog.New(slog.DiscardHandler)
	}
	if len(spec.Serial) > 4 && spec.Devices == nil {
		return nil, fmt.Errorf("machine: %d serial ports, at most 4 (COM1-COM4)", len(spec.Serial))
	}
	lay, err := spec.Layout()
	if err != nil {
		return nil, fmt.Errorf("machine: %w", err)
	}
	m := &Machine{Spec: spec}
	defer func() {
		if err != nil {
			m.Close()
			if m.Board == nil {
				for _, d := range spec.Drives {
					d.Close()
				}
			}
		}
	}()
	if m.priv, err = privcmd.Open(k); err != nil {
		return nil, err
	}
	m.closers = append(m.closers, m.priv)
	m.DM = dm.New(m.priv, spec.Dom)
	hc := hcall.New(m.priv)
	if m.dirty, err = newDirtyLog(lay); err != nil {
		return nil, fmt.Errorf("machine: %w", err)
	}
	m.Memory, err = memory.NewMapCache(memory.MapperFunc(func(gfns []uint64, w bool) (memory.Mapping, error) {
		return foreign.Map(m.priv, spec.Dom, w, gfns)
	}), memory.MapCacheConfig{Dirty: m.dirty})
	if err != nil {
		return nil, err
	}
	m.closers = append(m.closers, closerFunc(func() error { m.Memory.Close(); return nil }))

	// Devices first, then the ioreq server mirrors every range they
	// registered, then it is enabled: the guest never sees a half-built bus.
	m.Spaces = devices.NewBus()
	if spec.DeathPoll >= 0 && !spec.Restrict {
		// For WatchDomain's dying check; a restricted handle may not
		// issue domctls, and an unknown Xen leaves the ESRCH check.
		if dc, err := domctl.Open(hc); err == nil {
			m.domctl = dc
		} else {
			spec.Log.Warn("domain watch: no getdomaininfo; only a vanished domain is noticed", "err", err)
		}
	}
	chardevs := map[string]chardev.Backend{}
	for k, v := range spec.Chardevs {
		chardevs[k] = v
	}
	for i, be := range spec.Serial {
		if be != nil {
			chardevs[serialID(i)] = be
		}
	}
	// The CPUs present at start (PRST, which the DSDT's PRSC method
	// reads): with no count given, Xen's (as the ioreq server takes it);
	// zero would tell the guest's ACPI it has no processor.
	present := spec.VCPUs
	if spec.OnlineVCPUs > 0 && (present == 0 || spec.OnlineVCPUs < present) {
		present = spec.OnlineVCPUs
	}
	if present == 0 {
		n, err := m.DM.NrVCPUs()
		if err != nil {
			return nil, fmt.Errorf("machine: %w", err)
		}
		present = int(min(n, piix4pm.CPUPresentLen*8))
	}
	m.Board, err = board.New(board.Env{
		Spaces:      m.Spaces,
		Memory:      m.Memory,
		MSI:         ioreq.NewMSI(m.DM),
		ISA:         func(n uint8) irq.Line { return ioreq.NewISALine(m.DM, n) },
		Chardevs:    chardevs,
		Netdevs:     spec.Netdevs,
		Drives:      spec.Drives,
		Log:         spec.Log,
		UARTClock:   spec.SerialClock,
		RAMSize:     spec.MemBytes,
		VCPUs:       present,
		Links:       m.DM,
		INTx:        m.DM,
		Shutdown:    m.DM,
		Suspend:     suspender{hc, spec.Dom},
		Eject:       ejector{m: m},
		CPUReset:    resetter{m.DM, spec.Log},
		ROM:         romLocker{m.DM},
		PVUnplug:    unplugger{log: spec.Log, m: m},
		PlatformLog: platformLog{spec.Log},
		VRAM:        newVRAMAllocator(m, hc, lay),
	})
	if err != nil {
		return nil, err
	}
	m.PCI = m.Board.PCI
	m.closers = append(m.closers, m.Board)
	entries := spec.Devices
	if entries == nil {
		entries = spec.Entries()
	}
	if err = m.Board.Build(entries); err != nil {
		return nil, fmt.Errorf("machine: %w", err)
	}
	m.pickDevices()

	m.Server, err = ioreq.NewServer(m.priv, k, ioreq.Config{
		Dom:      spec.Dom,
		VCPUs:    spec.VCPUs,
		Workers:  spec.Workers,
		BufIOReq: spec.BufIOReq,
		Worker:   spec.Worker,
		Bus:      m.Spaces,
		Targets:  ioreq.Targets{Memory: m.Memory, Invalidate: m.Memory.Invalidate},
	})
	if err != nil {
		return nil, err
	}
	m.Board.SetIOPauser(m.Server)
	if spec.Restrict {
		if err := m.priv.Restrict(spec.Dom); err != nil {
			return nil, fmt.Errorf("machine: restrict: %w", err)
		}
		if err := m.Server.Restrict(); err != nil {
			return nil, fmt.Errorf("machine: restrict: %w", err)
		}
	}
	return m, nil
}

// Privcmd returns the machine's privcmd handle, for components composed on
// top of the machine (PCI passthrough in cmd/godm). The machine owns it.
func (m *Machine) Privcmd() *privcmd.Handle { return m.priv }

// Serve serves the domain until ctx ends (nil), the machine is closed
// (nil) or the hypervisor fails.
//
// Serve also ends, with an error wrapping ErrDomainGone, when the domain
// is destroyed: Xen then tears the ioreq server down itself
// (hvm_domain_relinquish_resources), and nothing would ever reach the
// workers again. A device model normally learns it from the toolstack
// (libxl stops QEMU), but a standalone godm has nobody to tell it, so
// Serve polls (WatchDomain). The domain's dying flag is what counts: a
// DM op only fails with ESRCH once the domain is gone
// (xen/arch/x86/hvm/dm.c: rcu_lock_remote_domain_by_id), and it is not
// gone while godm's own foreign mappings still reference its pages, so
// waiting for ESRCH alone would keep it a zombie for ever (seen on Xen
// 4.17 after xl destroy).
func (m *Machine) Serve(ctx context.Context) error {
	outer := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if m.Spec.DeathPoll >= 0 && m.DM != nil {
		every := m.Spec.DeathPoll
		if every == 0 {
			every = DefaultDeathPoll
		}
		done := make(chan struct{})
		defer func() { cancel(nil); <-done }()
		go func() {
			defer close(done)
			srv := dm.ServerID(0)
			if m.domctl == nil {
				srv = m.Server.ID() + 1
			}
			if err := watchDomain(ctx, m.DM, m.domctl, every, m.Spec.DeathHint, srv); err != nil {
				cancel(err)
			}
		}()
	}
	err := m.Server.Serve(ctx)
	if cause := context.Cause(ctx); errors.Is(cause, ErrDomainGone) {
		return cause
	}
	if errors.Is(err, context.Canceled) || outer.Err() != nil {
		return nil
	}
	if errors.Is(err, ioreq.ErrServing) && m.closed.Load() {
		return nil // closed before it started
	}
	return err
}

// Close tears the machine down: the ioreq server (disable, unbind,
// destroy, unmap), the devices' goroutines, the map cache and the handles.
// It is idempotent.
func (m *Machine) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	var errs []error
	if m.dirty != nil {
		// Stop the reporting goroutine (the domain is going away: what
		// is left in the log no longer matters to anyone).
		m.reporter.mu.Lock()
		if m.reporter.on {
			close(m.reporter.stop)
			done := m.reporter.done
			m.reporter.on = false
			m.reporter.mu.Unlock()
			<-done
		} else {
			m.reporter.mu.Unlock()
		}
	}
	if m.Server != nil {
		errs = append(errs, m.Server.Close())
	}
	for i := len(m.closers) - 1; i >= 0; i-- {
		errs = append(errs, m.closers[i].Close())
	}
	return errors.Join(errs...)
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// suspender enters S3 the way QEMU's Xen suspend notifier does: by setting
// HVM_PARAM_ACPI_S_STATE to 3 (hw/i386/xen/xen-hvm.c).
type suspender struct {
	c   *hcall.Caller
	dom hyp.DomID
}

func (s suspender) SuspendToRAM() error {
	return s.c.SetHVMParam(s.dom, xenabi.HVM_PARAM_ACPI_S_STATE, 3)
}

// romLocker makes the legacy ROM area 0xc0000-0xfffff read-only or
// writable again (XEN_DMOP_set_mem_type on gfns 0xc0-0xff).
type romLocker struct{ c *dm.Client }

func (r romLocker) SetROMLock(locked bool) error {
	t := uint16(xenabi.HVMMEM_ram_rw)
	if locked {
		t = xenabi.HVMMEM_ram_ro
	}
	return r.c.SetMemType(t, 0xc0, 0x40)
}

// resetter reboots the domain for the i8042's reset line.
type resetter struct {
	c   *dm.Client
	log *slog.Logger
}

func (r resetter) RequestReset() {
	if err := r.c.RemoteShutdown(xenabi.SHUTDOWN_reboot); err != nil {
		r.log.Error("i8042 reset: remote shutdown failed", "err", err)
	}
}

// unplugger answers the PV drivers' unplug request after the board has
// removed the emulated disks the disk bits name (its platform
// unplugger): it logs the request, and the NIC bit removes every
// emulated NIC (QEMU xen_platform.c pci_unplug_nics).
type unplugger struct {
	log *slog.Logger
	m   *Machine
}

func (u unplugger) Unplug(mask xenplatform.UnplugMask) error {
	u.log.Info("xen platform: unplug request", "mask", fmt.Sprintf("%#x", uint16(mask)))
	if mask&xenplatform.UnplugNICs != 0 && u.m.Board != nil {
		return u.m.Board.UnplugNICs()
	}
	return nil
}

type platformLog struct{ log *slog.Logger }

func (p platformLog) PlatformLog(line []byte) {
	p.log.Info("guest PV driver", "msg", string(line))
}

// ejector removes the functions of a slot on the guest's ACPI eject
// request (B0EJ), as QEMU's PIIX4 hotplug does. The platform's own slots
// are not removable.
type ejector struct{ m *Machine }

func (e ejector) EjectPCISlot(slot uint8) error {
	if slot == 0 || slot == 1 || slot >= 32 {
		return fmt.Errorf("machine: slot %d is not hot-pluggable", slot)
	}
	// The platform's own devices (the Xen platform device, wherever the
	// layout put it) stay.
	for _, p := range e.m.Board.Devices() {
		if inSlot(p, slot) {
			if d := board.LookupDriver(p.Driver); d == nil || !d.Hotpluggable {
				return fmt.Errorf("machine: slot %d is not hot-pluggable", slot)
			}
		}
	}
	var errs []error
	if h := e.m.eject.Load(); h != nil {
		if ok, err := (*h)(slot); ok {
			e.m.Spec.Log.Info("ACPI eject", "slot", slot)
			return err
		}
	}
	// Devices of the board in the slot are unplugged (goroutines ended,
	// a passed-through function's mappings and bindings undone); a
	// function put there some other way is just taken off the bus.
	for _, p := range e.m.Board.Devices() {
		if inSlot(p, slot) {
			errs = append(errs, e.m.Board.Unplug(p.ID))
		}
	}
	for fn := uint8(0); fn < 8; fn++ {
		if d := e.m.PCI.Lookup(slot, fn); d != nil {
			errs = append(errs, e.m.PCI.Remove(d))
		}
	}
	e.m.Spec.Log.Info("ACPI eject", "slot", slot)
	return errors.Join(errs...)
}

// inSlot reports whether the board device p is in slot of bus 0: its
// function on the board's bus, or the guest address of a passed-through
// function (which the passthrough Manager serves, not the board's bus).
func inSlot(p *board.Plugged, slot uint8) bool {
	if p.PCI != nil {
		return p.PCI.SBDF().Dev() == slot
	}
	if pt, ok := p.Dev.(*board.Passthrough); ok {
		return pt.Guest.Dev() == slot
	}
	return false
}

// WatchDomain returns an error wrapping ErrDomainGone once the domain of
// c is dying or no longer exists, checking every interval, or nil when
// ctx ends. Dying is XEN_DOMINF_dying in getdomaininfo (dc; nil, or a
// handle restricted to the guest, leaves only the ESRCH check): the
// toolstack destroyed the domain, and it cannot go away before this
// process drops its mappings (QEMU watches the same flag). Errors other
// than ESRCH (a transient failure, EPERM after a restrict that does not
// cover the op) do not end the watch.
func WatchDomain(ctx context.Context, c *dm.Client, dc *domctl.Domctl, every time.Duration) error {
	return watchDomain(ctx, c, dc, every, nil, 0)
}

// watchDomain is WatchDomain that also checks on each receive from hint
// (nil: never; a closed hint is ignored from then on), and, when srv is
// not zero, that ioreq server srv-1 still exists: without getdomaininfo
// (a handle restricted to the guest) that is how a dying domain shows.
// Xen destroys a domain's ioreq servers when the domain is killed
// (hvm_domain_relinquish_resources), while DM ops on the domain keep
// working as long as this process's mappings hold it (xensim models the
// same), so get_ioreq_server_info then fails with ENOENT
// (xen/common/ioreq.c ioreq_server_get_info).
func watchDomain(ctx context.Context, c *dm.Client, dc *domctl.Domctl, every time.Duration, hint <-chan struct{}, srv dm.ServerID) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case _, ok := <-hint:
			if !ok {
				hint = nil
			}
		}
		if _, err := c.NrVCPUs(); errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("%v: %w", c.Dom(), ErrDomainGone)
		}
		if srv != 0 {
			if _, err := c.GetIOReqServerInfo(srv-1, true); errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("%v: its ioreq server is gone: %w", c.Dom(), ErrDomainGone)
			}
		}
		if dc == nil {
			continue
		}
		switch info, err := dc.GetDomainInfo(c.Dom()); {
		case errors.Is(err, unix.ESRCH):
			return fmt.Errorf("%v: %w", c.Dom(), ErrDomainGone)
		case err == nil && info.Dying():
			return fmt.Errorf("%v is dying: %w", c.Dom(), ErrDomainGone)
		}
	}
}

// serialID is the chardev id of Spec.Serial[i].
func serialID(i int) string { return fmt.Sprintf("serial%d", i) }

// Entries translates the spec's device fields into the board's device
// list: the xenfv platform as QEMU's xenfv machine builds it
// (hw/i386/pc_piix.c), then the optional devices.
func (s Spec) Entries() []board.Entry {
	e := []board.Entry{
		{Driver: "i440FX"},
		{Driver: "PIIX3"},
		// QEMU's xenfv (and pc with Xen) always has the PIIX3 IDE
		// function at 01.1 (hw/i386/pc_piix.c pc_init1:
		// "piix3-ide-xen"), with or without disks.
		{Driver: "piix3-ide"},
		{Driver: "piix4-pm"},
	}
	e = append(e, s.Storage...)
	if !s.NoPlatformDevice {
		e = append(e, board.Entry{Driver: "xen-platform", Props: map[string]string{"addr": fmt.Sprintf("%02x.0", PlatformSlot)}})
	}
	for i, be := range s.Serial {
		if be != nil {
			e = append(e, board.Entry{Driver: "isa-serial", Props: map[string]string{
				"chardev": serialID(i), "index": fmt.Sprint(i)}})
		}
	}
	if !s.NoPS2 {
		e = append(e, board.Entry{Driver: "i8042"})
	}
	if s.TestDevice {
		e = append(e, board.Entry{Driver: board.TestDevice, Props: map[string]string{"addr": fmt.Sprintf("%02x.0", s.TestSlot)}})
	}
	return e
}

// pickDevices names the first device of each kind in the Machine's
// fields.
func (m *Machine) pickDevices() {
	for _, p := range m.Board.Devices() {
		switch d := p.Dev.(type) {
		case *i440fx.Device:
			m.HostBridge = cmp.Or(m.HostBridge, d)
		case *piix3.Device:
			m.ISABridge = cmp.Or(m.ISABridge, d)
		case *piix4pm.Device:
			m.PM = cmp.Or(m.PM, d)
		case *xenplatform.Device:
			m.Platform = cmp.Or(m.Platform, d)
		case *board.ISASerial:
			m.UARTs = append(m.UARTs, d.UART)
		case *i8042.Controller:
			m.PS2 = cmp.Or(m.PS2, d)
		case *testdev.Device:
			m.Test = cmp.Or(m.Test, d)
		}
	}
}
