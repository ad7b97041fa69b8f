package piix3

import (
	"fmt"
	"sync"
	"sync/atomic"

	"godm/devices"
	"godm/irq"
	"godm/pci"
)

// Identity and registers (QEMU hw/isa/piix.c; Intel 82371SB datasheet).
const (
	VendorID = 0x8086
	DeviceID = 0x7000
	Class    = 0x060100 // ISA bridge

	// RegPIRQ is PIRQRC[A]; PIRQRC[B..D] follow.
	RegPIRQ = 0x60
	// NumLinks is the number of PCI interrupt links (PIRQA..PIRQD).
	NumLinks = 4
	// pirqDisabled is IRQEN#: routing of the link is disabled.
	pirqDisabled = 0x80

	// ResetControlPort is the reset control register (RCR).
	ResetControlPort = 0xcf9
	rcrSysReset      = 1 << 1 // SYS_RST: hard reset type, stored
	rcrCPUReset      = 1 << 2 // RST_CPU: do the reset

	// ShutdownReboot is SHUTDOWN_reboot (xen/include/public/sched.h).
	ShutdownReboot = 1
)

// Slot is where the bridge lives on bus 0.
const Slot = 1

// LinkRouter routes a PCI interrupt link to an ISA IRQ (0: disabled); the
// hyp/dm Client implements it.
type LinkRouter interface {
	SetPCILinkRoute(link, isaIRQ uint8) error
}

// INTxSink sets the level of a slot's INTx wire (intx 0..3 = INTA..INTD);
// the bridge always passes segment 0, bus 0. The hyp/dm Client implements
// it (XEN_DMOP_set_pci_intx_level).
type INTxSink interface {
	SetPCIIntxLevel(seg uint16, bus, dev, intx uint8, level bool) error
}

// Shutdowner ends the domain with a SHUTDOWN_* reason; the hyp/dm Client
// implements it.
type Shutdowner interface {
	RemoteShutdown(reason uint32) error
}

// Config wires the bridge. Nil members drop the corresponding requests (and
// count them as errors).
type Config struct {
	Links    LinkRouter
	INTx     INTxSink
	Shutdown Shutdowner
}

// Stats are the bridge's counters.
type Stats struct {
	// RouteErrors, INTxErrors and ShutdownErrors count failed or dropped
	// calls to the LinkRouter, INTxSink and Shutdowner.
	RouteErrors, INTxErrors, ShutdownErrors uint64
	// Reboots counts reboot requests through the reset control register.
	Reboots uint64
}

// Device is the PIIX3 PCI-to-ISA bridge.
type Device struct {
	cfg Config
	fn  *pci.Device
	rcr rcrHandler

	mu    sync.Mutex
	wired [pci.NumSlots][4]uint8 // guarded by mu: per (slot, INTx), functions asserting

	routeErrors, intxErrors, shutdownErrors, reboots atomic.Uint64
}

var _ pci.INTxRouter = (*Device)(nil)

// New returns a bridge in its reset state.
func New(c Config) (*Device, error) {
	// piix_reset sets the command register to 7, but QEMU's PCI reset
	// (pci_do_device_reset, hw/pci/pci.c) then clears its writable bits,
	// so the guest finds 0, as QEMU 7.2 shows. The subsystem IDs are the
	// ones QEMU gives devices that set none.
	fn, err := pci.New(pci.Header{
		VendorID: VendorID, DeviceID: DeviceID, Class: Class,
		SubsystemVendorID: 0x1af4, SubsystemID: 0x1100,
		MultiFunction: true,
		Status:        0x0200, // DEVSEL medium
	})
	if err != nil {
		return nil, fmt.Errorf("piix3: %w", err)
	}
	// Reset values from QEMU's piix_reset (hw/isa/piix.c); the whole
	// device-specific area is writable as in QEMU's default wmask.
	var reset [pci.ConfigSize]byte
	reset[0x4c] = 0x4d
	reset[0x4e] = 0x03
	for i := range NumLinks {
		reset[RegPIRQ+i] = pirqDisabled
	}
	reset[0x69] = 0x02
	reset[0x70] = 0x80
	reset[0x76] = 0x0c
	reset[0x77] = 0x0c
	reset[0x78] = 0x02
	reset[0xa0] = 0x08
	reset[0xa8] = 0x0f
	for off := uint32(0x40); off < pci.ConfigSize; off += 4 {
		v := uint32(reset[off]) | uint32(reset[off+1])<<8 | uint32(reset[off+2])<<16 | uint32(reset[off+3])<<24
		if err := fn.DefineRegister(off, 4, v, 0xffffffff, 0); err != nil {
			return nil, fmt.Errorf("piix3: %w", err)
		}
	}
	// A system reset sets only the registers QEMU's piix_reset names
	// (hw/isa/piix.c); the other device-specific bytes keep the guest's
	// values.
	resetByQEMU := map[uint32]bool{0x4c: true, 0x4e: true, 0x4f: true, 0x60: true, 0x61: true, 0x62: true,
		0x63: true, 0x69: true, 0x70: true, 0x76: true, 0x77: true, 0x78: true, 0x79: true, 0x80: true,
		0x82: true, 0xa0: true, 0xa2: true, 0xa3: true, 0xa4: true, 0xa5: true, 0xa6: true, 0xa7: true,
		0xa8: true, 0xaa: true, 0xab: true, 0xac: true, 0xae: true}
	for off := uint32(0x40); off < pci.ConfigSize; off++ {
		if !resetByQEMU[off] {
			if err := fn.KeepOnReset(off, 1); err != nil {
				return nil, fmt.Errorf("piix3: %w", err)
			}
		}
	}
	d := &Device{cfg: c, fn: fn}
	d.rcr.d = d
	if err := fn.SetWriteHook(d.configWritten); err != nil {
		return nil, fmt.Errorf("piix3: %w", err)
	}
	return d, nil
}

// Function returns the PCI function.
func (d *Device) Function() *pci.Device { return d.fn }

// ResetControl returns the handler of the reset control register, one byte
// at ResetControlPort.
func (d *Device) ResetControl() devices.Handler { return &d.rcr }

// Attach places the bridge at 00:01.0 and registers the reset control
// register in pio. With pio nil the caller routes ResetControl itself: on
// a PC the host bridge's CONFIG_ADDRESS block 0xcf8..0xcfb covers 0xcf9
// (i440fx.Device.AttachPorts).
func (d *Device) Attach(b *pci.Bus, pio *devices.Space) (devices.SBDF, error) {
	s, err := b.Add(d.fn, Slot, 0)
	if err != nil {
		return 0, fmt.Errorf("piix3: attach: %w", err)
	}
	if pio == nil {
		return s, nil
	}
	if err := pio.Register(ResetControlPort, 1, &d.rcr); err != nil {
		_ = b.Remove(d.fn)
		return 0, fmt.Errorf("piix3: attach: %w", err)
	}
	return s, nil
}

// Stats returns the bridge's counters.
func (d *Device) Stats() Stats {
	return Stats{
		RouteErrors:    d.routeErrors.Load(),
		INTxErrors:     d.intxErrors.Load(),
		ShutdownErrors: d.shutdownErrors.Load(),
		Reboots:        d.reboots.Load(),
	}
}

// Reset returns the bridge's registers to their reset state. Link routes
// already sent to Xen are left alone, as QEMU leaves them.
func (d *Device) Reset() {
	d.fn.Reset()
	d.rcr.reset()
}

// configWritten forwards writes of the PIRQ route registers.
func (d *Device) configWritten(off uint32, size uint8) {
	for i := uint32(0); i < uint32(size); i++ {
		reg := off + i
		if reg < RegPIRQ || reg >= RegPIRQ+NumLinks {
			continue
		}
		route := uint8(d.fn.ConfigRead(reg, 1))
		isa := route & 0x0f
		if route&pirqDisabled != 0 {
			isa = 0
		}
		if d.cfg.Links == nil {
			d.routeErrors.Add(1)
			continue
		}
		if err := d.cfg.Links.SetPCILinkRoute(uint8(reg-RegPIRQ), isa); err != nil {
			d.routeErrors.Add(1)
		}
	}
}

// INTx implements pci.INTxRouter.
func (d *Device) INTx(dev, fn, pin uint8) irq.Line {
	return &intxLine{d: d, dev: dev % pci.NumSlots, fn: fn % pci.NumFunctions, intx: (pin - 1) & 3}
}

type intxLine struct {
	d             *Device
	dev, fn, intx uint8
}

// SetLevel implements irq.Line: the slot's wire is the OR of its functions.
func (l *intxLine) SetLevel(high bool) {
	d := l.d
	d.mu.Lock()
	defer d.mu.Unlock()
	w := &d.wired[l.dev][l.intx]
	was := *w != 0
	if high {
		*w |= 1 << l.fn
	} else {
		*w &^= 1 << l.fn
	}
	if now := *w != 0; now != was {
		if d.cfg.INTx == nil {
			d.intxErrors.Add(1)
			return
		}
		if err := d.cfg.INTx.SetPCIIntxLevel(0, 0, l.dev, l.intx, now); err != nil {
			d.intxErrors.Add(1)
		}
	}
}

// rcrHandler is the reset control register (one byte).
type rcrHandler struct {
	d   *Device
	mu  sync.Mutex
	rcr uint8 // guarded by mu
}

func (r *rcrHandler) reset() {
	r.mu.Lock()
	r.rcr = 0
	r.mu.Unlock()
}

// Read implements devices.Handler.
func (r *rcrHandler) Read(a devices.Access) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return uint64(r.rcr)
}

// Write implements devices.Handler.
func (r *rcrHandler) Write(a devices.Access, v uint64) {
	if v&rcrCPUReset != 0 {
		d := r.d
		d.reboots.Add(1)
		if d.cfg.Shutdown == nil {
			d.shutdownErrors.Add(1)
			return
		}
		if err := d.cfg.Shutdown.RemoteShutdown(ShutdownReboot); err != nil {
			d.shutdownErrors.Add(1)
		}
		return
	}
	r.mu.Lock()
	r.rcr = uint8(v) & rcrSysReset
	r.mu.Unlock()
}
