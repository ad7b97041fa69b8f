package xenplatform

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"godm/devices"
	"godm/pci"
)

// Identity (QEMU hw/i386/xen/xen_platform.c, include/hw/pci/pci_ids.h).
const (
	VendorID = 0x5853
	DeviceID = 0x0001
	Revision = 1
	Class    = 0xff8000

	// IOBARSize and MMIOBARSize are the sizes of BAR0 and BAR1.
	IOBARSize   = 0x100
	MMIOBARSize = 16 << 20

	// FixedPort and FixedLen are the unplug protocol's ports.
	FixedPort = 0x10
	FixedLen  = 16

	// Magic identifies the protocol; MagicBlacklisted tells blacklisted
	// drivers not to load.
	Magic            = 0x49d2
	MagicBlacklisted = 0xd249
	// ProtocolVersion is the version read at port 0x12.
	ProtocolVersion = 1

	// FlagROMLock is PFFLAG_ROM_LOCK, the only platform flag.
	FlagROMLock = 1

	logBufferSize = 4096
)

// UnplugMask selects emulated devices to unplug
// (docs/misc/hvm-emulated-unplug.pandoc).
type UnplugMask uint16

// Unplug mask bits.
const (
	UnplugDisks    UnplugMask = 1 << 0 // all IDE and SCSI disks (not CD drives)
	UnplugNICs     UnplugMask = 1 << 1 // all emulated NICs
	UnplugAuxDisks UnplugMask = 1 << 2 // IDE disks except the primary master
	UnplugNVMe     UnplugMask = 1 << 3 // all emulated NVMe disks
)

// Unplugger removes the emulated devices the PV drivers replace.
type Unplugger interface {
	Unplug(mask UnplugMask) error
}

// ROMLocker makes the legacy ROM area 0xc0000..0xfffff read-only (locked)
// or writable; the wiring does XEN_DMOP_set_mem_type with HVMMEM_ram_ro or
// HVMMEM_ram_rw for GFNs 0xc0..0xff.
type ROMLocker interface {
	SetROMLock(locked bool) error
}

// LogSink receives the guest drivers' log lines, without the newline and
// with control bytes replaced by '.'. line is only valid during the call.
type LogSink interface {
	PlatformLog(line []byte)
}

// Clock tells the time; the rate limiter uses it.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

// Now implements Clock.
func (systemClock) Now() time.Time { return time.Now() }

// Config wires the platform device. Nil members drop the requests (and
// count them).
type Config struct {
	Unplug Unplugger
	ROM    ROMLocker
	Log    LogSink
	// Clock defaults to the system clock.
	Clock Clock
	// LogBurst is the number of lines the log may emit at once (default
	// 10); LogInterval is the time that earns one more line (default 1s).
	LogBurst    int
	LogInterval time.Duration
	// DriversBlacklisted makes the magic read 0xd249.
	DriversBlacklisted bool
}

// Stats are the platform device's counters.
type Stats struct {
	// Unplugs counts unplug writes; Errors failed or unwired calls.
	Unplugs, Errors uint64
	// LogLines counts lines delivered, LogDropped lines the rate limiter
	// dropped.
	LogLines, LogDropped uint64
	// MMIOAccesses counts accesses to the MMIO BAR.
	MMIOAccesses uint64
}

// Device is the Xen platform device.
type Device struct {
	cfg Config
	fn  *pci.Device

	fixed fixedHandler
	iobar ioBARHandler
	mmio  mmioHandler

	// romMu serialises ROM lock changes with the flag they set. Lock
	// order: romMu, then mu.
	romMu sync.Mutex

	mu         sync.Mutex
	flags      uint8               // guarded by mu
	product    uint16              // guarded by mu
	build      uint32              // guarded by mu
	unplugged  UnplugMask          // guarded by mu
	logBuf     [logBufferSize]byte // guarded by mu
	logLen     int                 // guarded by mu
	tokens     int                 // guarded by mu
	lastRefill time.Time           // guarded by mu

	unplugs, errors, logLines, logDropped, mmioAccesses atomic.Uint64
}

// New returns a platform device in its reset state.
func New(c Config) (*Device, error) {
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	if c.LogBurst <= 0 {
		c.LogBurst = 10
	}
	if c.LogInterval <= 0 {
		c.LogInterval = time.Second
	}
	d := &Device{cfg: c}
	d.fixed.d, d.iobar.d, d.mmio.d = d, d, d
	fn, err := pci.New(pci.Header{
		VendorID: VendorID, DeviceID: DeviceID, Revision: Revision, Class: Class,
		SubsystemVendorID: VendorID, SubsystemID: DeviceID,
		InterruptPin: 1,
		// xen_platform_realize sets I/O and memory decoding, but the
		// machine reset that follows (pci_do_device_reset, hw/pci/pci.c)
		// clears the command register's writable bits before the guest
		// runs; hvmloader enables decoding after placing the BARs.
	})
	if err != nil {
		return nil, fmt.Errorf("xenplatform: %w", err)
	}
	if err := fn.SetBAR(0, pci.BAR{Kind: pci.BARIO, Size: IOBARSize, Handler: &d.iobar}); err != nil {
		return nil, fmt.Errorf("xenplatform: %w", err)
	}
	if err := fn.SetBAR(1, pci.BAR{Kind: pci.BARMem32, Size: MMIOBARSize, Prefetchable: true, Handler: &d.mmio}); err != nil {
		return nil, fmt.Errorf("xenplatform: %w", err)
	}
	d.fn = fn
	d.tokens = c.LogBurst
	d.lastRefill = c.Clock.Now()
	return d, nil
}

// Function returns the PCI function.
func (d *Device) Function() *pci.Device { return d.fn }

// FixedPorts returns the handler of the fixed ports (FixedLen bytes at
// FixedPort).
func (d *Device) FixedPorts() devices.Handler { return &d.fixed }

// Attach places the function at the lowest free slot and registers the
// fixed ports.
func (d *Device) Attach(b *pci.Bus, pio *devices.Space) (devices.SBDF, error) {
	return d.attach(b, pio, func() (devices.SBDF, error) { return b.AddAuto(d.fn) })
}

// AttachAt places the function at slot dev and registers the fixed ports.
// QEMU's xenfv machine creates it during machine init in the first free
// slot after PIIX3, before any -device (QEMU 7.2 hw/i386/pc_piix.c
// pc_xen_hvm_init); under libxl, whose VGA is a -device, that is 00:02.0.
func (d *Device) AttachAt(b *pci.Bus, pio *devices.Space, dev uint8) (devices.SBDF, error) {
	return d.attach(b, pio, func() (devices.SBDF, error) { return b.Add(d.fn, dev, 0) })
}

func (d *Device) attach(b *pci.Bus, pio *devices.Space, add func() (devices.SBDF, error)) (devices.SBDF, error) {
	s, err := add()
	if err != nil {
		return 0, fmt.Errorf("xenplatform: attach: %w", err)
	}
	if err := pio.Register(FixedPort, FixedLen, &d.fixed); err != nil {
		_ = b.Remove(d.fn)
		return 0, fmt.Errorf("xenplatform: attach: %w", err)
	}
	return s, nil
}

// Stats returns the counters.
func (d *Device) Stats() Stats {
	return Stats{
		Unplugs: d.unplugs.Load(), Errors: d.errors.Load(),
		LogLines: d.logLines.Load(), LogDropped: d.logDropped.Load(),
		MMIOAccesses: d.mmioAccesses.Load(),
	}
}

// Flags returns the platform flags.
func (d *Device) Flags() uint8 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.flags
}

// DriverInfo returns the product and build numbers the PV drivers wrote.
func (d *Device) DriverInfo() (product uint16, build uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.product, d.build
}

// Unplugged returns the union of the unplug masks written so far.
func (d *Device) Unplugged() UnplugMask {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.unplugged
}

// Reset implements devices.Resetter: the PCI function resets and the ROM
// area is unlocked (QEMU's platform_fixed_ioport_reset writes flags 0).
// The unplug state is kept: unplugged devices stay gone.
func (d *Device) Reset() {
	d.fn.Reset()
	d.setFlags(0)
	d.mu.Lock()
	d.logLen = 0
	d.mu.Unlock()
}

// setFlags writes the platform flags: the ROM lock changes first and the
// flag is stored only if that worked (platform_fixed_ioport_writeb).
func (d *Device) setFlags(v uint8) {
	d.romMu.Lock()
	defer d.romMu.Unlock()
	if d.cfg.ROM == nil {
		d.errors.Add(1)
		return
	}
	if err := d.cfg.ROM.SetROMLock(v&FlagROMLock != 0); err != nil {
		d.errors.Add(1)
		return
	}
	d.mu.Lock()
	d.flags = v & FlagROMLock
	d.mu.Unlock()
}

// unplug asks the Unplugger to remove the devices in mask.
func (d *Device) unplug(mask UnplugMask) {
	d.unplugs.Add(1)
	d.mu.Lock()
	d.unplugged |= mask
	d.mu.Unlock()
	if d.cfg.Unplug == nil || d.cfg.Unplug.Unplug(mask) != nil {
		d.errors.Add(1)
	}
}

// logByte appends a byte to the log line; a newline or a full buffer
// flushes it through the rate limiter.
func (d *Device) logByte(b byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if b != '\n' && d.logLen < logBufferSize-1 {
		if (b < 0x20 && b != '\t') || b >= 0x7f {
			b = '.'
		}
		d.logBuf[d.logLen] = b
		d.logLen++
		return
	}
	line := d.logBuf[:d.logLen]
	d.logLen = 0
	if !d.takeTokenLocked() {
		d.logDropped.Add(1)
		return
	}
	d.logLines.Add(1)
	if d.cfg.Log != nil {
		d.cfg.Log.PlatformLog(line)
	}
}

// takeTokenLocked is a token bucket of LogBurst lines refilled one per
// LogInterval.
func (d *Device) takeTokenLocked() bool {
	now := d.cfg.Clock.Now()
	if el := now.Sub(d.lastRefill); el >= d.cfg.LogInterval {
		n := el / d.cfg.LogInterval
		if n > time.Duration(d.cfg.LogBurst) {
			n = time.Duration(d.cfg.LogBurst)
		}
		d.tokens = min(d.cfg.LogBurst, d.tokens+int(n))
		d.lastRefill = d.lastRefill.Add(n * d.cfg.LogInterval)
		if d.tokens == d.cfg.LogBurst {
			d.lastRefill = now
		}
	} else if el < 0 {
		d.lastRefill = now // the clock went back
	}
	if d.tokens == 0 {
		return false
	}
	d.tokens--
	return true
}

// fixedHandler serves ports 0x10..0x1f.
type fixedHandler struct{ d *Device }

// Read implements devices.Handler (platform_fixed_ioport_read).
func (h *fixedHandler) Read(a devices.Access) uint64 {
	d := h.d
	switch a.Size {
	case 1:
		switch a.Offset {
		case 0:
			return uint64(d.Flags())
		case 2:
			return ProtocolVersion
		}
	case 2:
		if a.Offset == 0 {
			if d.cfg.DriversBlacklisted {
				return MagicBlacklisted
			}
			return Magic
		}
	}
	return devices.SizeMask(a.Size)
}

// Write implements devices.Handler (platform_fixed_ioport_write).
func (h *fixedHandler) Write(a devices.Access, v uint64) {
	d := h.d
	switch {
	case a.Size == 1 && a.Offset == 0:
		d.setFlags(uint8(v))
	case a.Size == 1 && a.Offset == 2:
		d.logByte(byte(v))
	case a.Size == 2 && a.Offset == 0:
		d.unplug(UnplugMask(v))
	case a.Size == 2 && a.Offset == 2:
		d.mu.Lock()
		d.product = uint16(v)
		d.mu.Unlock()
	case a.Size == 4 && a.Offset == 0:
		d.mu.Lock()
		d.build = uint32(v)
		d.mu.Unlock()
	}
}

// ioBARHandler serves BAR0 one byte at a time (xen_pci_io_ops has
// max_access_size 1).
type ioBARHandler struct{ d *Device }

// Read implements devices.Handler: byte 0 is the flags, the rest 0xff.
func (h *ioBARHandler) Read(a devices.Access) uint64 {
	var v uint64
	for i := uint64(0); i < uint64(a.Size) && i < 8; i++ {
		b := uint64(0xff)
		if a.Offset+i == 0 {
			b = uint64(h.d.Flags())
		}
		v |= b << (8 * i)
	}
	return v
}

// Write implements devices.Handler: byte 0 sets the flags; byte 4 and 8
// carry the pre-protocol unplug requests of old SUSE and VMDP drivers
// (docs/misc/hvm-emulated-unplug.pandoc; QEMU's
// xen_platform_ioport_writeb): 1 at byte 4 unplugs disks and NICs, 1 at
// byte 8 disks, 2 at byte 8 NICs, anything else at byte 8 is a log byte.
func (h *ioBARHandler) Write(a devices.Access, v uint64) {
	for i := uint64(0); i < uint64(a.Size) && i < 8; i++ {
		b := byte(v >> (8 * i))
		switch a.Offset + i {
		case 0:
			h.d.setFlags(b)
		case 4:
			if b == 1 {
				h.d.unplug(UnplugDisks | UnplugNICs)
			}
		case 8:
			switch b {
			case 1:
				h.d.unplug(UnplugDisks)
			case 2:
				h.d.unplug(UnplugNICs)
			default:
				h.d.logByte(b)
			}
		}
	}
}

// mmioHandler is BAR1: reads 0, writes are dropped, both counted.
type mmioHandler struct{ d *Device }

// Read implements devices.Handler.
func (h *mmioHandler) Read(a devices.Access) uint64 {
	h.d.mmioAccesses.Add(1)
	return 0
}

// Write implements devices.Handler.
func (h *mmioHandler) Write(a devices.Access, v uint64) { h.d.mmioAccesses.Add(1) }
