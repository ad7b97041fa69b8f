package e2e

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"godm/devices"
	"godm/hyp/dm"
	"godm/hyp/xensim"
	"godm/internal/guest"
	"godm/internal/machine"
	"godm/internal/mpqemu"
	"godm/internal/qtest"
	"godm/ioreq"
	"godm/memory"
	"godm/pci"
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

	memMB int

	serveCancel context.CancelFunc
	serveDone   chan error

	mu       sync.Mutex
	nextVCPU int
	errs     []error
	closed   bool
}

// Config sizes a Machine.
type Config struct {
	// MemMB is the guest RAM (default 256).
	MemMB int
	// VCPUs is the number of simulated vCPUs: one per proxied function
	// plus spares (default 4).
	VCPUs int
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
	m := &Machine{memMB: cfg.MemMB, Sim: xensim.New(xensim.Config{})}
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
	m.M, err = machine.New(m.Sim.Kernel(0), machine.Spec{
		Dom: m.Dom.ID(), VCPUs: cfg.VCPUs, MemBytes: uint64(cfg.MemMB) << 20,
		NoPS2: true, NoPlatformDevice: true,
	})
	if err != nil {
		return nil, err
	}
	m.Spaces, m.PCI, m.Server, m.DM, m.Memory = m.M.Spaces, m.M.PCI, m.M.Server, m.M.DM, m.M.Memory
	ctx, cancel := context.WithCancel(context.Background())
	m.serveCancel = cancel
	m.serveDone = make(chan error, 1)
	go func() { m.serveDone <- m.M.Serve(ctx) }()
	return m, nil
}

// Proxy returns the harness proxy serving fn (already on m.PCI) to the
// guest at slot.function addr (e.g. "5.0"). Each proxy drives its own
// simulated vCPU. QEMU's DEVICE_RESET resets fn and then each of also (the
// device behind the function).
func (m *Machine) Proxy(fn *pci.Device, addr string, also ...devices.Resetter) (guest.Proxy, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.nextVCPU >= m.Dom.NumVCPUs() {
		return guest.Proxy{}, errors.New("e2e: no free vCPU for another proxy")
	}
	v := m.Dom.VCPU(m.nextVCPU)
	m.nextVCPU++
	return guest.Proxy{Addr: addr, Dev: &proxy{m: m, fn: fn, also: also, vcpu: v, sbdf: uint32(fn.SBDF())}}, nil
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
// godm's interrupts into it, and returns when the guest has powered off.
func (m *Machine) Run(ctx context.Context, cfg guest.Config) (*guest.Result, error) {
	ram, _, err := m.Dom.RAMFile()
	if err != nil {
		return nil, err
	}
	defer ram.Close()
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
	res, err := guest.Run(ctx, cfg)
	cancel()
	<-fwdDone
	return res, err
}

// forwardIRQs relays INTx levels and MSIs that godm injected (as recorded
// by xensim) into QEMU until ctx ends.
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
	seq := m.Sim.LastSeq()
	for ctx.Err() == nil {
		ev, err := m.Sim.WaitEvent(seq, 50*time.Millisecond, func(e xensim.Event) bool {
			return e.Dom == m.Dom.ID() && (e.Kind == xensim.EventPCIIntx || e.Kind == xensim.EventMSI)
		})
		if err != nil {
			continue // timeout: look at ctx again
		}
		seq = ev.Seq
		switch ev.Kind {
		case xensim.EventMSI:
			_, err = c.WriteMem(ev.Addr, 4, ev.Data)
		case xensim.EventPCIIntx:
			fn := m.PCI.Lookup(ev.Dev, 0)
			if fn == nil {
				err = fmt.Errorf("INTx from empty slot %d", ev.Dev)
				break
			}
			gsi := int(fn.ConfigRead(0x3c, 1))
			_, err = c.SetIRQIn("ioapic", "unnamed-gpio-in", gsi, ev.Level)
		}
		if err != nil && ctx.Err() == nil {
			m.fail(fmt.Errorf("e2e: forward %v: %w", ev, err))
		}
	}
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
		errs = append(errs, <-m.serveDone)
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

func (p *proxy) Reset() {
	p.fn.Reset()
	for _, r := range p.also {
		r.Reset()
	}
}

// SyncSysmem: the guest's RAM is the domain's RAM already (QEMU maps the
// domain's memfd), so the regions QEMU announces need no mapping here.
func (p *proxy) SyncSysmem(regions []mpqemu.Region) {
	for _, r := range regions {
		r.File.Close()
	}
}
