package board

import (
	"errors"
	"fmt"
	"godm/devices/vga"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"godm/devices"
	"godm/devices/chardev"
	"godm/devices/uart"
	"godm/irq"
	"godm/memory"
	"godm/netback"
	"godm/pci"
)

// Env is what a driver's constructor may use of the machine: the address
// spaces, the PCI bus, guest memory, interrupt lines, back-ends by id and
// the platform services Xen provides (shutdown, S3, ROM lock, ...).
// Members a machine does not provide are nil; a driver needing one fails.
type Env struct {
	// Spaces are the port, MMIO and PCI configuration spaces.
	Spaces *devices.Bus
	// Memory is guest memory (device DMA).
	Memory memory.Accessor
	// MSI sends message-signalled interrupts.
	MSI irq.MSISender
	// ISA returns ISA interrupt line n (a GSI below 16).
	ISA func(n uint8) irq.Line
	// Chardevs are the character back-ends by id (-chardev id=...).
	Chardevs map[string]chardev.Backend
	// Netdevs are the network back-ends by id (-netdev id=..., opened by
	// netback/netdev). Their opener owns them: a NIC attaches to one and
	// detaches on unplug; the back-end stays open (as QEMU's netdev
	// outlives its device_del'd NIC).
	Netdevs map[string]netback.Backend
	// Drives are the block back-ends by id (-drive id=...). The board
	// owns them: Close closes them.
	Drives map[string]*Drive
	// Log is the machine's log.
	Log *slog.Logger
	// UARTClock times the serial ports' character timeout; nil: the
	// system clock (tests freeze it, as QEMU's clock stands still under
	// qtest).
	UARTClock uart.Clock

	// RAMSize is the guest's RAM in bytes (host bridge), VCPUs its
	// number of vCPUs (PIIX4 PM's processor bits).
	RAMSize uint64
	VCPUs   int

	// Platform services (the hyp/dm Client and friends in production).
	Links       LinkRouter
	INTx        INTxSink
	Shutdown    Shutdowner
	Suspend     Suspender
	Eject       Ejector
	CPUReset    ResetRequester
	ROM         ROMLocker
	PVUnplug    PVUnplugger
	PlatformLog PlatformLogSink
	// FirmwareDirs are where option ROMs named without a path are
	// looked up (nil: DefaultFirmwareDirs).
	FirmwareDirs []string
	// VRAM places a display's VRAM in the guest's p2m (nil: VRAM stays
	// device memory, every framebuffer access trapped). Asked by every
	// display but one with x-godm-vram-p2m=off; its failure leaves that
	// device trapped, with one line (a warning when on was explicit).
	VRAM VRAMAllocator
	// Passthrough returns the machine's PCI passthrough (made on first
	// use); nil when the machine cannot pass functions through.
	Passthrough func() (PCIPassthrough, error)
}

// VRAMAllocator populates VRAM frames in the guest's p2m and maps them
// for the device model (internal/machine).
type VRAMAllocator interface {
	AllocVRAM(size uint32) (vga.P2M, error)
	// DropVRAM releases size bytes of VRAM frames a restored domain has
	// at gfn, for a display that keeps its VRAM trapped.
	DropVRAM(gfn uint64, size uint32) error
}

// Plugged is one device on the board: what its driver built, and how to
// take it off again.
type Plugged struct {
	// Driver and ID name the device (ID is never empty: the board names
	// devices plugged without one).
	Driver, ID string
	// Dev is the device object (*uart.UART, *piix3.Device, ...).
	Dev any
	// PCI is its PCI function, if it has one on the board's bus.
	PCI *pci.Device

	undo     []func() error // in plug order; run backwards
	reset    func()
	closed   bool
	unplugMu sync.Mutex
}

// Reset returns this one device to its power-on state: its PCI function
// and its own registers, as the board's Reset does for every device (QEMU's
// DEVICE_RESET of one function, which the real-guest harness relays).
func (p *Plugged) Reset() {
	if p.reset != nil {
		p.reset()
	}
}

// onUnplug adds a step undone on unplug (after the steps added later).
func (p *Plugged) onUnplug(f func() error) { p.undo = append(p.undo, f) }

func (p *Plugged) unplug() error {
	p.unplugMu.Lock()
	defer p.unplugMu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for i := len(p.undo) - 1; i >= 0; i-- {
		errs = append(errs, p.undo[i]())
	}
	return errors.Join(errs...)
}

// Board is a machine's set of devices, kept in plug order and by id,
// and their lifecycle: reset, pause/resume, snapshot/restore, unplug,
// close. It owns the PCI bus.
type Board struct {
	env Env
	PCI *pci.Bus

	router   intxRouter
	rcr      portShare
	mu       sync.Mutex
	devs     []*Plugged
	byID     map[string]*Plugged
	plan     []Entry
	autoIDs  map[string]int
	paused   bool
	closed   bool
	resetMu  sync.Mutex
	pausers  []devices.Pauser // set while paused
	ioPauser IOPauser
	nicUsed  map[string]string // netdev id -> the NIC's id
	nicCount int               // NICs made, for default MACs
}

// IOPauser is the ioreq server's side of pause: once Pause returns no
// worker takes a request (ioreq.Server implements it).
type IOPauser interface {
	Pause()
	Resume()
}

// New returns an empty board on env. Its PCI bus routes INTx through the
// board's interrupt router (the PIIX3, once plugged).
func New(env Env) (*Board, error) {
	if env.Spaces == nil {
		return nil, errors.New("board: no address spaces")
	}
	if env.Log == nil {
		env.Log = slog.New(slog.DiscardHandler)
	}
	b := &Board{env: env, byID: make(map[string]*Plugged), autoIDs: make(map[string]int)}
	var err error
	if b.PCI, err = pci.NewBus(pci.BusConfig{Spaces: env.Spaces, INTx: &b.router, MSI: env.MSI}); err != nil {
		return nil, err
	}
	return b, nil
}

// Env returns the board's environment.
func (b *Board) Env() *Env { return &b.env }

// SetPassthrough sets the machine's PCI passthrough (Env.Passthrough),
// for a machine that gets one after the board is built.
func (b *Board) SetPassthrough(f func() (PCIPassthrough, error)) {
	b.mu.Lock()
	b.env.Passthrough = f
	b.mu.Unlock()
}

// SetIOPauser sets the ioreq server the board pauses first and resumes
// last.
func (b *Board) SetIOPauser(p IOPauser) {
	b.mu.Lock()
	b.ioPauser = p
	b.mu.Unlock()
}

// Entry is one device of a board description: a driver and its
// properties (an ID among them under "id", optional).
type Entry struct {
	Driver string
	Props  map[string]string
}

// Build plugs entries in order. On error the devices it plugged are
// unplugged again and the error names the entry.
func (b *Board) Build(entries []Entry) error {
	b.mu.Lock()
	b.plan = entries
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.plan = nil
		b.mu.Unlock()
	}()
	var done []string
	for _, e := range entries {
		props := make(map[string]string, len(e.Props))
		for k, v := range e.Props {
			props[k] = v
		}
		id := props["id"]
		delete(props, "id")
		p, err := b.Plug(e.Driver, id, NewProps(props))
		if err != nil {
			for i := len(done) - 1; i >= 0; i-- {
				_ = b.remove(done[i], true)
			}
			return err
		}
		done = append(done, p.ID)
	}
	return nil
}

// Plug creates a device of driver with props, plugs it and records it
// under id ("" lets the board name it: driver.N). Keys no constructor
// used are refused, and nothing stays plugged.
func (b *Board) Plug(driver, id string, props Props) (_ *Plugged, err error) {
	d := LookupDriver(driver)
	if d == nil {
		return nil, fmt.Errorf("'%s' is not a valid device model name", driver)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, errors.New("board: closed")
	}
	if id != "" {
		if _, dup := b.byID[id]; dup {
			b.mu.Unlock()
			return nil, fmt.Errorf("Duplicate device ID '%s'", id)
		}
	} else {
		for {
			id = fmt.Sprintf("%s.%d", driver, b.autoIDs[driver])
			b.autoIDs[driver]++
			if _, dup := b.byID[id]; !dup {
				break
			}
		}
	}
	// Reserve the id while the constructor runs.
	b.byID[id] = nil
	b.mu.Unlock()
	p := &Plugged{Driver: driver, ID: id}
	defer func() {
		if err == nil {
			return
		}
		err = errors.Join(fmt.Errorf("device '%s' (%s): %w", id, driver, err), p.unplug())
		b.mu.Lock()
		delete(b.byID, id)
		b.mu.Unlock()
	}()
	if err := d.New(b, props, p); err != nil {
		return nil, err
	}
	if un := props.Unused(); len(un) > 0 {
		return nil, fmt.Errorf("property '%s' not found (%s -device %s,help lists them)", un[0], "godm", driver)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.byID[id] = p
	b.devs = append(b.devs, p)
	if pa, ok := p.Dev.(devices.Pauser); ok && b.paused {
		// Plugged into a paused machine: it starts paused.
		pa.Pause()
		b.pausers = append(b.pausers, pa)
	}
	return p, nil
}

// Devices returns the plugged devices in plug order.
func (b *Board) Devices() []*Plugged {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.devs)
}

// Device returns the device with id, or nil.
func (b *Board) Device(id string) *Plugged {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.byID[id]
}

// First returns the first device of driver, or nil.
func (b *Board) First(driver string) *Plugged {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.devs {
		if p.Driver == driver {
			return p
		}
	}
	return nil
}

// planned reports whether the description being built has an entry of
// driver for which match is true (what QEMU's machine-ready hooks see of
// the finished machine, e.g. PIIX4 PM's device resource registers).
func (b *Board) planned(driver string, match func(Props) bool) bool {
	b.mu.Lock()
	plan := b.plan
	b.mu.Unlock()
	for _, e := range plan {
		if e.Driver == driver && match(NewProps(e.Props)) {
			return true
		}
	}
	return false
}

// Unplug removes device id at run time: its port and MMIO ranges and PCI
// function are unregistered (the ioreq server unclaims them in Xen), its
// goroutines end and its mappings are released. Devices QEMU does not let
// device_del remove are refused.
func (b *Board) Unplug(id string) error { return b.remove(id, false) }

func (b *Board) remove(id string, force bool) error {
	b.mu.Lock()
	p := b.byID[id]
	if p == nil {
		b.mu.Unlock()
		return fmt.Errorf("Device '%s' not found", id)
	}
	if d := LookupDriver(p.Driver); !force && (d == nil || !d.Hotpluggable) {
		b.mu.Unlock()
		return fmt.Errorf("Device '%s' (%s) does not support hotplugging", id, p.Driver)
	}
	delete(b.byID, id)
	b.devs = slices.DeleteFunc(b.devs, func(q *Plugged) bool { return q == p })
	paused := b.paused
	b.mu.Unlock()
	if paused {
		if pa, ok := p.Dev.(devices.Pauser); ok {
			pa.Resume() // its goroutines must run to end
			b.mu.Lock()
			b.pausers = slices.DeleteFunc(b.pausers, func(q devices.Pauser) bool { return q == pa })
			b.mu.Unlock()
		}
	}
	return p.unplug()
}

// Reset returns every device to its power-on state, in plug order: PCI
// functions' configuration space and the devices' own registers (what
// QEMU's system_reset does through each device's reset handler).
func (b *Board) Reset() {
	b.resetMu.Lock()
	defer b.resetMu.Unlock()
	for _, p := range b.Devices() {
		if p.reset != nil {
			p.reset()
		}
	}
}

// SystemReset is QMP's system_reset: the machine is paused (no request
// half-served against a resetting device), reset, and resumed if it was
// running. Not for device handlers (Pause waits for the ioreq workers);
// a guest-triggered reset under Xen is a domain reboot anyway.
func (b *Board) SystemReset() {
	if !b.Paused() {
		b.Pause()
		defer b.Resume()
	}
	b.Reset()
}

// Pause stops the machine: first the ioreq server (no worker takes a
// request once it returns), then every device with goroutines of its own
// (devices.Pauser). Once Pause returns nothing on the board touches guest
// memory or raises an interrupt. Pausing a paused board does nothing.
func (b *Board) Pause() {
	b.mu.Lock()
	if b.paused {
		b.mu.Unlock()
		return
	}
	b.paused = true
	io := b.ioPauser
	devs := slices.Clone(b.devs)
	b.mu.Unlock()
	if io != nil {
		io.Pause()
	}
	var ps []devices.Pauser
	for _, p := range devs {
		if pa, ok := p.Dev.(devices.Pauser); ok {
			pa.Pause()
			ps = append(ps, pa)
		}
	}
	b.mu.Lock()
	b.pausers = ps
	b.mu.Unlock()
}

// Resume undoes Pause: devices first, then the ioreq server.
func (b *Board) Resume() {
	b.mu.Lock()
	if !b.paused {
		b.mu.Unlock()
		return
	}
	b.paused = false
	ps, io := b.pausers, b.ioPauser
	b.pausers = nil
	b.mu.Unlock()
	for _, pa := range ps {
		pa.Resume()
	}
	if io != nil {
		io.Resume()
	}
}

// Paused reports whether the board is paused.
func (b *Board) Paused() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.paused
}

// Close unplugs every device, newest first. It is idempotent.
func (b *Board) Close() error {
	b.Resume()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	devs := b.devs
	b.devs = nil
	clear(b.byID)
	b.mu.Unlock()
	var errs []error
	for i := len(devs) - 1; i >= 0; i-- {
		errs = append(errs, devs[i].unplug())
	}
	errs = append(errs, b.closeDrives())
	return errors.Join(errs...)
}

// intxRouter is the PCI bus's INTx router until the interrupt router
// (PIIX3) is plugged: lines handed out before then resolve on use.
type intxRouter struct {
	r atomic.Pointer[routerBox]
}

type routerBox struct{ r pci.INTxRouter }

func (ir *intxRouter) set(r pci.INTxRouter) {
	if r == nil {
		ir.r.Store(nil)
		return
	}
	ir.r.Store(&routerBox{r})
}

// INTx implements pci.INTxRouter: the router's own line once it is
// plugged, a line resolving on first use before that.
func (ir *intxRouter) INTx(dev, fn, pin uint8) irq.Line {
	if rb := ir.r.Load(); rb != nil {
		return rb.r.INTx(dev, fn, pin)
	}
	return &lazyLine{ir: ir, dev: dev, fn: fn, pin: pin}
}

// lazyLine resolves its router's line on first use and keeps it (a
// router's line per pin is fixed; PIIX3's does not allocate per call
// afterwards).
type lazyLine struct {
	ir           *intxRouter
	dev, fn, pin uint8
	box          atomic.Pointer[routerBox]
	line         atomic.Pointer[lineBox]
}

type lineBox struct{ l irq.Line }

// SetLevel implements irq.Line; with no router it drops the level.
func (l *lazyLine) SetLevel(high bool) {
	rb := l.ir.r.Load()
	if rb == nil {
		return
	}
	if lb := l.line.Load(); lb != nil && l.box.Load() == rb {
		lb.l.SetLevel(high)
		return
	}
	ln := rb.r.INTx(l.dev, l.fn, l.pin)
	l.line.Store(&lineBox{ln})
	l.box.Store(rb)
	ln.SetLevel(high)
}

// portShare is a handler slot filled later: PIIX3's reset control
// register inside the host bridge's 0xcf8 block.
type portShare struct {
	h atomic.Pointer[handlerBox]
}

type handlerBox struct{ h devices.Handler }

func (s *portShare) set(h devices.Handler) {
	if h == nil {
		s.h.Store(nil)
		return
	}
	s.h.Store(&handlerBox{h})
}

func (s *portShare) Read(a devices.Access) uint64 {
	if b := s.h.Load(); b != nil {
		return b.h.Read(a)
	}
	return devices.SizeMask(a.Size)
}

func (s *portShare) Write(a devices.Access, v uint64) {
	if b := s.h.Load(); b != nil {
		b.h.Write(a, v)
	}
}
