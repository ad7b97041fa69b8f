package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"godm/devices"
	"godm/devices/chardev"
	"godm/devices/piix3"
	"godm/devices/piix4pm"
	"godm/hyp/dm"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"
	"godm/internal/board"
	"godm/internal/guest"
	"godm/internal/machine"
	"godm/internal/mpqemu"
	"godm/internal/qtest"
	"godm/ioreq"
	"godm/memory"
	"godm/netback"
	"godm/pci"

	"golang.org/x/sys/unix"
)

// Machine is godm serving one simulated HVM domain: an internal/machine
// without PS/2 or platform device (the guest sees only the proxied
// functions), plus the harness's proxies and interrupt forwarding.
type Machine struct {
	Sim *xensim.Sim
	Dom *xensim.Domain
	// M is godm's machine; the fields below are shortcuts into it.
	M      *machine.Machine
	Spaces *devices.Bus
	PCI    *pci.Bus
	Server *ioreq.Server
	DM     *dm.Client
	Memory *memory.MapCache

	// Log is godm's log (machine.Spec.Log) and the harness's own: what it
	// relayed, what the toolstack did. LogText returns it.
	Log *slog.Logger

	memMB  int
	logBuf lockedBuffer
	// relay is the vCPU the harness uses for the guest's chipset writes
	// that QEMU took (power-off, reset); proxies never get it.
	relayVCPU *xensim.VCPU

	serveCancel context.CancelFunc
	served      chan struct{} // closed when Serve returned
	serveErr    error         // Serve's result, set before served closes

	mu       sync.Mutex
	nextVCPU int
	errs     []error
	// ramIno identifies the domain's RAM memfd and ram is where each of
	// its regions lives in it: what every SYNC_SYSMEM region must be.
	ramDev, ramIno uint64
	ram            []xensim.RAMBacking
	sysmem         int // SYNC_SYSMEM regions checked
	resets         []Reset
	probes         map[string]func() string
	console        string
	closed         bool

	irqStats IRQStats // guarded by mu
}

// IRQStats count what the IRQ forwarder did.
type IRQStats struct {
	// Relayed counts qtest commands sent (INTx levels and MSIs);
	// Coalesced the INTx level changes not sent because a later change
	// in the same batch or QEMU's current level made them moot.
	Relayed, Coalesced int
	// Busy is the time spent in qtest commands.
	Busy time.Duration
}

// IRQStats returns the IRQ forwarder's counters.
func (m *Machine) IRQStats() IRQStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.irqStats
}

// Timeouts of the harness's toolstack.
const (
	// deathPoll is how often godm checks that its domain still exists
	// (machine.Spec.DeathPoll): short, so Serve ends soon after the
	// toolstack destroys the domain.
	deathPoll = 10 * time.Millisecond
	// toolstackWait bounds each wait of the toolstack: for godm's
	// remote shutdown and for Serve to end after the domain is destroyed.
	toolstackWait = 10 * time.Second
)

// Config sizes a Machine.
type Config struct {
	// MemMB is the guest RAM (default 256).
	MemMB int
	// VCPUs is the number of simulated vCPUs: one per proxied function
	// plus one the harness keeps for the writes it relays (default 4).
	VCPUs int
	// Devices are plugged after the base platform (i440FX, PIIX3, its
	// IDE function, PIIX4 PM), through the board's driver table as
	// -device entries are; ProxyDevice serves one to the guest.
	Devices []board.Entry
	// Chardevs and Netdevs are the back-ends Devices name by id (the
	// caller owns and closes them, after the Machine).
	Chardevs map[string]chardev.Backend
	Netdevs  map[string]netback.Backend
}

// NewMachine creates the simulated domain and godm's machine for it, and
// starts serving.
func NewMachine(cfg Config) (_ *Machine, err error) {
	if cfg.MemMB == 0 {
		cfg.MemMB = 256
	}
	if cfg.VCPUs == 0 {
		cfg.VCPUs = 4
	}
	if cfg.VCPUs < 2 {
		return nil, fmt.Errorf("e2e: %d vCPUs, need one for a proxy and one for the harness", cfg.VCPUs)
	}
	m := &Machine{memMB: cfg.MemMB, Sim: xensim.New(xensim.Config{})}
	m.Log = slog.New(slog.NewTextHandler(&m.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	m.Dom, err = m.Sim.CreateDomain(xensim.DomainConfig{
		VCPUs: cfg.VCPUs,
		RAM:   []xensim.Region{{GPA: 0, Size: uint64(cfg.MemMB) << 20}},
	})
	if err != nil {
		return nil, err
	}
	spec := machine.Spec{
		Dom: m.Dom.ID(), VCPUs: cfg.VCPUs, MemBytes: uint64(cfg.MemMB) << 20,
		NoPS2: true, NoPlatformDevice: true,
		Chardevs: cfg.Chardevs, Netdevs: cfg.Netdevs,
		Log: m.Log, DeathPoll: deathPoll,
	}
	if cfg.Devices != nil {
		spec.Devices = append(spec.Entries(), cfg.Devices...)
	}
	m.M, err = machine.New(m.Sim.Kernel(0), spec)
	if err != nil {
		return nil, err
	}
	m.relayVCPU = m.Dom.VCPU(cfg.VCPUs - 1)
	m.Spaces, m.PCI, m.Server, m.DM, m.Memory = m.M.Spaces, m.M.PCI, m.M.Server, m.M.DM, m.M.Memory
	ctx, cancel := context.WithCancel(context.Background())
	m.serveCancel = cancel
	m.served = make(chan struct{})
	go func() {
		defer close(m.served)
		m.serveErr = m.M.Serve(ctx)
		m.Log.Info("e2e: godm's Serve returned", "err", m.serveErr)
	}()
	return m, nil
}

// Served is closed once godm's Serve has returned; ServeErr is then its
// result.
func (m *Machine) Served() <-chan struct{} { return m.served }

// ServeErr returns what godm's Serve returned, or nil while it runs.
func (m *Machine) ServeErr() error {
	select {
	case <-m.served:
		return m.serveErr
	default:
		return nil
	}
}

// LogText returns godm's log and the harness's so far.
func (m *Machine) LogText() string { return m.logBuf.String() }

// Console returns the console of the last Run.
func (m *Machine) Console() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.console
}

// Reset is one DEVICE_RESET QEMU sent a proxy, with the function's
// configuration as read through the simulated vCPU just before godm reset
// it and just after.
type Reset struct {
	Addr          string
	Before, After ConfigState
	// DevBefore and DevAfter are what the probe set with SetProbe for
	// Addr returned around the reset ("" without one).
	DevBefore, DevAfter string
}

// SetProbe has the proxy at addr call probe just before and just after
// each DEVICE_RESET, to record device state the configuration space does
// not show (Reset.DevBefore, DevAfter). Set it before Run.
func (m *Machine) SetProbe(addr string, probe func() string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.probes == nil {
		m.probes = make(map[string]func() string)
	}
	m.probes[addr] = probe
}

// ConfigState is what the harness reads of a function's configuration
// space around a reset.
type ConfigState struct {
	Command uint16 // 0x04
	BAR0    uint32 // 0x10
	IRQLine uint8  // 0x3c
}

// String formats c for test messages.
func (c ConfigState) String() string {
	return fmt.Sprintf("cmd %#04x bar0 %#08x line %d", c.Command, c.BAR0, c.IRQLine)
}

// Resets returns the DEVICE_RESETs the proxies handled so far, in order.
func (m *Machine) Resets() []Reset {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Reset(nil), m.resets...)
}

// Proxy returns the harness proxy serving fn (already on m.PCI) to the
// guest at slot.function addr (e.g. "5.0"). Each proxy drives its own
// simulated vCPU. QEMU's DEVICE_RESET resets fn and then each of also (the
// device behind the function).
func (m *Machine) Proxy(fn *pci.Device, addr string, also ...devices.Resetter) (guest.Proxy, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.nextVCPU >= m.Dom.NumVCPUs()-1 {
		return guest.Proxy{}, errors.New("e2e: no free vCPU for another proxy")
	}
	v := m.Dom.VCPU(m.nextVCPU)
	m.nextVCPU++
	return guest.Proxy{Addr: addr, Dev: &proxy{m: m, addr: addr, fn: fn, also: also, vcpu: v, sbdf: uint32(fn.SBDF())}}, nil
}

// Device returns the board's device with id (nil if there is none).
func (m *Machine) Device(id string) *board.Plugged { return m.M.Board.Device(id) }

// ProxyDevice returns the harness proxy serving the board's PCI device id
// to the guest at the device's own address; QEMU's DEVICE_RESET runs the
// device's board reset (its function and its registers).
func (m *Machine) ProxyDevice(id string) (guest.Proxy, error) {
	p := m.Device(id)
	if p == nil || p.PCI == nil {
		return guest.Proxy{}, fmt.Errorf("e2e: no PCI device '%s' on the board", id)
	}
	s := p.PCI.SBDF()
	return m.Proxy(p.PCI, fmt.Sprintf("%x.%x", s.Dev(), s.Fn()), p)
}

func (m *Machine) fail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.errs) < 16 {
		m.errs = append(m.errs, err)
	}
}

// Errors returns the failures seen on the data path (a vCPU access that
// timed out, an interrupt that could not be forwarded).
func (m *Machine) Errors() []error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]error(nil), m.errs...)
}

// Run boots the guest with cfg (its RAM is the domain's), forwarding
// godm's interrupts into it, and returns when QEMU has exited. It then
// does what Xen and the toolstack do when a guest stops:
//
// QEMU owns the guest's chipset in this harness (PIIX4 PM, the reset
// control register), so the guest's power-off (ACPI S5: SLP_EN with
// SLP_TYP 0, the \_S5 value of both QEMU's and Xen's DSDT) and its reset
// land in QEMU. The harness relays each as the write the guest makes
// under Xen — PM1a_CNT at 0xb004, RST_CPU at 0xcf9 — on a simulated vCPU
// of its own, so godm's PIIX4 PM or PIIX3 asks Xen to shut the domain
// down (XEN_DMOP_remote_shutdown, recorded by xensim).
//
// After a power-off (QMP SHUTDOWN "guest-shutdown"), or a reset under
// -no-reboot (QEMU exits: "guest-reset"), the toolstack destroys the
// domain, as libxl does for a domain that shut down (for a reboot libxl
// would then build a new domain and device model; the harness does not).
// Run waits, bounded, until godm's Serve has ended by itself (it should
// with machine.ErrDomainGone); the test then checks the teardown.
//
// With cfg.Reboot the guest reboots in place instead: QEMU resets its
// devices (DEVICE_RESET on every proxy) and boots the guest again in the
// same domain, served by the same godm. The reset is still relayed to
// godm's PIIX3 (the remote shutdown is recorded), but the toolstack keeps
// the domain: a QEMU-style reboot, not libxl's destroy and re-create.
func (m *Machine) Run(ctx context.Context, cfg guest.Config) (*guest.Result, error) {
	ram, backing, err := m.Dom.RAMFile()
	if err != nil {
		return nil, err
	}
	defer ram.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(ram.Fd()), &st); err != nil {
		return nil, fmt.Errorf("e2e: stat the domain's RAM: %w", err)
	}
	m.mu.Lock()
	m.ramDev, m.ramIno, m.ram = st.Dev, st.Ino, backing
	m.mu.Unlock()
	cfg.RAM = ram
	cfg.MemMB = m.memMB
	if cfg.WorkDir == "" {
		return nil, errors.New("e2e: Config.WorkDir is required (the qtest socket lives there)")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fwdDone := make(chan struct{})
	go func() {
		defer close(fwdDone)
		m.forwardIRQs(ctx, cfg.WorkDir+"/qtest.sock")
	}()
	var relayErrs []error
	onEvent := cfg.OnEvent
	cfg.OnEvent = func(e guest.Event) {
		m.Log.Info("e2e: QEMU event", "event", e.Name, "guest", e.Guest, "reason", e.Reason)
		if e.Name == "RESET" && e.Guest {
			if err := m.relayReset(); err != nil {
				relayErrs = append(relayErrs, err)
			}
		}
		if onEvent != nil {
			onEvent(e)
		}
	}
	res, err := guest.Run(ctx, cfg)
	cancel()
	<-fwdDone
	if res != nil {
		m.mu.Lock()
		m.console = res.Console
		m.mu.Unlock()
	}
	if err != nil {
		return res, err
	}
	err = errors.Join(relayErrs...)
	switch res.Shutdown {
	case "guest-shutdown":
		err = errors.Join(err, m.toolstackStop(relayPowerOff()))
	case "guest-reset":
		err = errors.Join(err, m.toolstackStop(relayReboot()))
	default:
		m.Log.Warn("e2e: QEMU exited without a guest shutdown; the domain is left to Close", "reason", res.Shutdown)
	}
	return res, err
}

// A relayed chipset write: the port, size and value the guest writes under
// Xen, and the SHUTDOWN_* reason godm should then give Xen.
type relayed struct {
	name   string
	port   uint16
	size   int
	val    uint64
	reason uint64
}

// relayPowerOff is ACPI S5: SLP_EN (bit 13) with SLP_TYP 0 and SCI_EN
// kept, as Linux's acpi_enter_sleep_state writes it
// (drivers/acpi/acpica/hwsleep.c).
func relayPowerOff() relayed {
	return relayed{"power-off", piix4pm.PM1aControlPort, 2, 1<<13 | 1, xenabi.SHUTDOWN_poweroff}
}

// relayReboot is SYS_RST|RST_CPU, Linux's reboot=pci write
// (arch/x86/kernel/reboot.c).
func relayReboot() relayed {
	return relayed{"reset", piix3.ResetControlPort, 1, 0x6, xenabi.SHUTDOWN_reboot}
}

// relay writes r on the harness's vCPU and waits for godm's remote
// shutdown with r's reason.
func (m *Machine) relay(r relayed) error {
	seq := m.Sim.LastSeq()
	m.Log.Info("e2e: relaying the guest's "+r.name+" to godm", "port", fmt.Sprintf("%#x", r.port), "value", fmt.Sprintf("%#x", r.val))
	if err := m.relayVCPU.Out(r.port, r.size, r.val); err != nil {
		return fmt.Errorf("e2e: relay %s: %w", r.name, err)
	}
	ev, err := m.Sim.WaitEvent(seq, toolstackWait, func(e xensim.Event) bool {
		return e.Dom == m.Dom.ID() && e.Kind == xensim.EventShutdown
	})
	if err != nil {
		return fmt.Errorf("e2e: godm did not shut the domain down after the guest's %s: %w", r.name, err)
	}
	if ev.Data != r.reason {
		return fmt.Errorf("e2e: godm shut the domain down with reason %d after the guest's %s, want %d", ev.Data, r.name, r.reason)
	}
	return nil
}

func (m *Machine) relayReset() error { return m.relay(relayReboot()) }

// toolstackStop relays r and then does libxl's part for a domain that shut
// down: destroy it; godm's Serve must then end by itself.
func (m *Machine) toolstackStop(r relayed) error {
	if err := m.relay(r); err != nil {
		return err
	}
	// libxl learns of the shutdown from the domain's state
	// (XEN_DOMINF_shutdown with the reason), then destroys it.
	if got := m.Dom.ShutdownReason(); got != int64(r.reason) {
		return fmt.Errorf("e2e: domain's shutdown reason is %d after the guest's %s, want %d", got, r.name, r.reason)
	}
	m.Log.Info("e2e: toolstack: domain shut down, destroying it", "dom", m.Dom.ID(), "reason", r.reason)
	if err := m.Dom.Close(); err != nil {
		return fmt.Errorf("e2e: destroy domain: %w", err)
	}
	select {
	case <-m.served:
		return nil
	case <-time.After(toolstackWait):
		return fmt.Errorf("e2e: godm still serving %v after the domain was destroyed", toolstackWait)
	}
}

// forwardIRQs relays INTx levels and MSIs that godm injected (as recorded
// by xensim) into QEMU until ctx ends.
//
// Each relayed change is one synchronous qtest command, which QEMU serves
// from its main loop between TCG slices (milliseconds under load), while
// godm's UART changes its INTx level twice per transmitted byte (THR write:
// THRE cleared, then set again as the byte leaves; QEMU's serial.c does
// the same). Relayed one by one, the changes queued up behind the guest,
// so its THRE interrupts came late and guest→host serial ran at ~440 B/s.
// The forwarder therefore takes every event recorded since it last looked
// and relays, per INTx line, only the level the line has at the end of
// the batch, and only if QEMU does not have it already: INTx lines are
// level-triggered, so a low-high pulse that ends where it began changes
// nothing a level-triggered I/O APIC pin would act on. An MSI (an edge)
// is relayed in order: the INTx levels before it are flushed first.
func (m *Machine) forwardIRQs(ctx context.Context, sock string) {
	var c *qtest.Client
	for c == nil {
		var err error
		c, err = qtest.Dial(sock, 100*time.Millisecond)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			continue
		}
	}
	defer c.Close()
	f := irqForwarder{m: m, c: c, told: map[int]bool{}}
	seq := m.Sim.LastSeq()
	for ctx.Err() == nil {
		if _, err := m.Sim.WaitEvent(seq, 50*time.Millisecond, f.relevant); err != nil {
			continue // timeout: look at ctx again
		}
		evs := m.Sim.EventsSince(seq)
		if len(evs) > 0 && evs[0].Seq != seq+1 {
			m.fail(fmt.Errorf("e2e: xensim's event ring dropped events %d-%d before the IRQ forwarder saw them", seq+1, evs[0].Seq-1))
		}
		for _, ev := range evs {
			seq = ev.Seq
			if !f.relevant(ev) {
				continue
			}
			var err error
			switch ev.Kind {
			case xensim.EventMSI:
				if err = f.flush(); err == nil {
					t := time.Now()
					_, err = c.WriteMem(ev.Addr, 4, ev.Data)
					f.st.Busy += time.Since(t)
					f.st.Relayed++
				}
			case xensim.EventPCIIntx:
				err = f.note(ev)
			}
			if err != nil && ctx.Err() == nil {
				m.fail(fmt.Errorf("e2e: forward %v: %w", ev, err))
			}
		}
		if err := f.flush(); err != nil && ctx.Err() == nil {
			m.fail(fmt.Errorf("e2e: forward INTx levels: %w", err))
		}
		m.mu.Lock()
		m.irqStats = f.st
		m.mu.Unlock()
	}
}

// irqForwarder holds the INTx levels of one batch not yet relayed and the
// ones QEMU was last told.
type irqForwarder struct {
	m       *Machine
	c       *qtest.Client
	pending []gsiLevel   // in order of first change in the batch
	told    map[int]bool // GSI -> level QEMU has
	st      IRQStats
}

type gsiLevel struct {
	gsi   int
	level bool
}

func (f *irqForwarder) relevant(e xensim.Event) bool {
	return e.Dom == f.m.Dom.ID() && (e.Kind == xensim.EventPCIIntx || e.Kind == xensim.EventMSI)
}

// note records an INTx level change of the batch.
func (f *irqForwarder) note(ev xensim.Event) error {
	fn := f.m.PCI.Lookup(ev.Dev, 0)
	if fn == nil {
		return fmt.Errorf("INTx from empty slot %d", ev.Dev)
	}
	gsi := int(fn.ConfigRead(0x3c, 1))
	for i := range f.pending {
		if f.pending[i].gsi == gsi {
			f.pending[i].level = ev.Level
			f.st.Coalesced++
			return nil
		}
	}
	f.pending = append(f.pending, gsiLevel{gsi, ev.Level})
	return nil
}

// flush relays the batch's final INTx levels that QEMU does not have.
func (f *irqForwarder) flush() error {
	defer func() { f.pending = f.pending[:0] }()
	for _, p := range f.pending {
		if told, ok := f.told[p.gsi]; ok && told == p.level {
			f.st.Coalesced++
			continue
		}
		t := time.Now()
		_, err := f.c.SetIRQIn("ioapic", "unnamed-gpio-in", p.gsi, p.level)
		f.st.Busy += time.Since(t)
		if err != nil {
			return err
		}
		f.told[p.gsi] = p.level
		f.st.Relayed++
	}
	return nil
}

// Close stops serving, tears the ioreq server down and destroys the
// simulation. It is idempotent.
func (m *Machine) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	var errs []error
	if m.serveCancel != nil {
		m.serveCancel()
		<-m.served
		if !errors.Is(m.serveErr, machine.ErrDomainGone) {
			errs = append(errs, m.serveErr)
		}
	}
	if m.M != nil {
		errs = append(errs, m.M.Close())
	}
	errs = append(errs, m.Sim.Close())
	return errors.Join(errs...)
}

// proxy turns QEMU's proxied accesses into simulated-vCPU accesses.
type proxy struct {
	m    *Machine
	addr string
	fn   *pci.Device
	also []devices.Resetter
	vcpu *xensim.VCPU
	sbdf uint32
}

var _ mpqemu.Device = (*proxy)(nil)

func (p *proxy) ConfigRead(addr uint32, size int) uint32 {
	v, err := p.vcpu.PCIConfigRead(p.sbdf, addr, size)
	if err != nil {
		p.m.fail(fmt.Errorf("e2e: config read %#x/%d: %w", addr, size, err))
		return ^uint32(0)
	}
	return uint32(v)
}

func (p *proxy) ConfigWrite(addr uint32, val uint32, size int) {
	if err := p.vcpu.PCIConfigWrite(p.sbdf, addr, size, uint64(val)); err != nil {
		p.m.fail(fmt.Errorf("e2e: config write %#x/%d: %w", addr, size, err))
	}
}

func (p *proxy) BARRead(addr uint64, size int, mem bool) uint64 {
	var (
		v   uint64
		err error
	)
	if mem {
		v, err = p.vcpu.MMIORead(addr, size)
	} else {
		v, err = p.vcpu.In(uint16(addr), size)
	}
	if err != nil {
		p.m.fail(fmt.Errorf("e2e: BAR read %#x/%d: %w", addr, size, err))
		return ^uint64(0)
	}
	return v
}

func (p *proxy) BARWrite(addr uint64, val uint64, size int, mem bool) {
	var err error
	if mem {
		err = p.vcpu.MMIOWrite(addr, size, val)
	} else {
		err = p.vcpu.Out(uint16(addr), size, val)
	}
	if err != nil {
		p.m.fail(fmt.Errorf("e2e: BAR write %#x/%d: %w", addr, size, err))
	}
}

// Reset handles QEMU's DEVICE_RESET: the function and the device behind it
// return to their reset state. The configuration around it is read through
// the vCPU, for the tests.
func (p *proxy) Reset() {
	p.m.mu.Lock()
	probe := p.m.probes[p.addr]
	p.m.mu.Unlock()
	r := Reset{Addr: p.addr, Before: p.state()}
	if probe != nil {
		r.DevBefore = probe()
	}
	p.fn.Reset()
	for _, d := range p.also {
		d.Reset()
	}
	r.After = p.state()
	if probe != nil {
		r.DevAfter = probe()
	}
	p.m.mu.Lock()
	p.m.resets = append(p.m.resets, r)
	p.m.mu.Unlock()
}

func (p *proxy) state() ConfigState {
	return ConfigState{
		Command: uint16(p.ConfigRead(0x04, 2)),
		BAR0:    p.ConfigRead(0x10, 4),
		IRQLine: uint8(p.ConfigRead(0x3c, 1)),
	}
}

// SyncSysmem: the guest's RAM is the domain's RAM already (QEMU maps the
// domain's memfd, so godm's foreign mappings see the guest's own memory);
// the regions QEMU announces need no mapping here, but each must be that
// memfd at the offset the domain's p2m gives its guest address, or the
// guest and godm would not share memory: a mismatch is a data-path error.
func (p *proxy) SyncSysmem(regions []mpqemu.Region) {
	for _, r := range regions {
		if err := p.m.checkSysmem(r); err != nil {
			p.m.fail(fmt.Errorf("e2e: %s: SYNC_SYSMEM: %w", p.addr, err))
		}
		r.File.Close()
	}
}

func (m *Machine) checkSysmem(r mpqemu.Region) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(r.File.Fd()), &st); err != nil {
		return fmt.Errorf("region at %#x: %w", r.GPA, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if st.Dev != m.ramDev || st.Ino != m.ramIno {
		return fmt.Errorf("region %#x+%#x is not backed by the domain's RAM memfd", r.GPA, r.Size)
	}
	for _, b := range m.ram {
		if r.GPA >= b.GPA && r.GPA+r.Size <= b.GPA+b.Size {
			if want := uint64(b.Offset) + (r.GPA - b.GPA); r.Offset != want {
				return fmt.Errorf("region %#x+%#x at memfd offset %#x, the domain has it at %#x", r.GPA, r.Size, r.Offset, want)
			}
			m.sysmem++
			return nil
		}
	}
	return fmt.Errorf("region %#x+%#x is not RAM of the domain", r.GPA, r.Size)
}

// SysmemRegions returns how many SYNC_SYSMEM regions were checked against
// the domain's RAM.
func (m *Machine) SysmemRegions() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sysmem
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers (the log's
// handler writes from godm's goroutines).
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
