package pci

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"godm/devices"
	"godm/irq"
)

// Set-up errors.
var (
	// ErrBusy is returned by set-up methods once the Device is on a Bus.
	ErrBusy = errors.New("pci: device is on a bus; its layout is fixed")
	// ErrInvalid is returned for a malformed description (bad BAR index,
	// size that is not a power of two, interrupt pin above 4, ...).
	ErrInvalid = errors.New("pci: invalid description")
	// ErrNoSpace is returned when configuration space has no room left for
	// a capability or a register overlaps one already defined.
	ErrNoSpace = errors.New("pci: no room in configuration space")
)

// Header describes the identity of a function: the read-only part of its
// type 0 configuration header.
type Header struct {
	// VendorID and DeviceID identify the function.
	VendorID, DeviceID uint16
	// Revision is the revision ID register.
	Revision uint8
	// Class is the 24-bit class code: base class<<16 | subclass<<8 |
	// programming interface.
	Class uint32
	// SubsystemVendorID and SubsystemID identify the board.
	SubsystemVendorID, SubsystemID uint16
	// InterruptPin is 0 for none, 1..4 for INTA#..INTD#.
	InterruptPin uint8
	// MultiFunction sets bit 7 of the header type. Bus sets it on function
	// 0 of a slot by itself when another function joins the slot.
	MultiFunction bool
	// Extended gives the function a 4 KiB configuration space (PCI
	// Express); otherwise it has 256 bytes and registers above read
	// all-ones.
	Extended bool
	// Command is the command register's value at reset; usually 0, since
	// QEMU's PCI reset clears the writable command bits (hw/pci/pci.c
	// pci_do_device_reset).
	Command uint16
	// Status holds read-only status bits present at reset, such as
	// DEVSEL timing (0x0200 is "medium").
	Status uint16
}

// Stats are a Device's counters.
type Stats struct {
	// MapErrors counts BAR placements the address space refused (the guest
	// programmed overlapping BARs); the BAR stays unmapped.
	MapErrors uint64
	// MSIDropped counts MSI or MSI-X triggers for vectors the guest did not
	// allocate.
	MSIDropped uint64
}

// Device is one PCI function: configuration space, BARs and interrupts. It
// implements devices.Handler for its configuration space (Access.Offset is
// the register) and devices.Resetter.
type Device struct {
	hdr Header

	// mapMu serialises guest writes that can change BAR mappings, the
	// mapping state and the write hook. Lock order: mapMu, then mu.
	mapMu sync.Mutex

	mu sync.Mutex
	// cfg, wmask and w1c are the register bytes and their writable and
	// write-1-to-clear masks, one byte per register offset.
	cfg, wmask, w1c []byte // guarded by mu
	// resetImage is the configuration image restored by Reset, taken
	// when the device joins a bus or is first written, whichever comes
	// first; the layout is fixed from then on.
	resetImage []byte                       // guarded by mu
	claimed    [ExtendedConfigSize / 8]byte // bytes above the header in use (bitmap)
	extLast    uint16                       // offset of the last extended capability, 0 if none
	capLast    uint8                        // offset of the last capability, 0 if none
	bars       [numBARs + 1]bar             // BAR 0..5 and the expansion ROM
	msi        msiState                     // guarded by mu
	msix       msixState                    // guarded by mu
	intxLevel  bool                         // guarded by mu: the device's condition
	intxOut    bool                         // guarded by mu: the level last sent
	intxLine   intxAdapter

	// Wiring set by Bus.Add before the function becomes visible and
	// cleared by Bus.Remove, both with mapMu and mu held; read with
	// either held.
	bus  *Bus
	sbdf devices.SBDF
	intx irq.Line
	send irq.MSISender
	pio  *devices.Space
	mmio *devices.Space

	onWrite func(off uint32, size uint8)

	// keep marks the device-specific bytes Reset leaves as they are (nil:
	// none); set up with KeepOnReset, then read-only.
	keep []bool

	mapErrors  atomic.Uint64
	msiDropped atomic.Uint64
}

var (
	_ devices.Handler  = (*Device)(nil)
	_ devices.Resetter = (*Device)(nil)
)

// New returns a function with header h, no BARs and no capabilities.
func New(h Header) (*Device, error) {
	if h.InterruptPin > 4 {
		return nil, fmt.Errorf("pci: new %04x:%04x: interrupt pin %d: %w", h.VendorID, h.DeviceID, h.InterruptPin, ErrInvalid)
	}
	if h.Class > 0xffffff {
		return nil, fmt.Errorf("pci: new %04x:%04x: class %#x: %w", h.VendorID, h.DeviceID, h.Class, ErrInvalid)
	}
	size := ConfigSize
	if h.Extended {
		size = ExtendedConfigSize
	}
	d := &Device{
		hdr:   h,
		cfg:   make([]byte, size),
		wmask: make([]byte, size),
		w1c:   make([]byte, size),
	}
	d.intxLine.d = d
	for i := range d.bars {
		d.bars[i].wrap = barHandler{d: d, i: i}
	}
	put16(d.cfg, RegVendorID, h.VendorID)
	put16(d.cfg, RegDeviceID, h.DeviceID)
	put16(d.cfg, RegCommand, h.Command&commandWritable)
	put16(d.wmask, RegCommand, commandWritable)
	put16(d.cfg, RegStatus, h.Status&^(statusINTx|statusCapList|statusWriteOneToClear))
	put16(d.w1c, RegStatus, statusWriteOneToClear)
	d.cfg[RegRevision] = h.Revision
	d.cfg[RegClass] = byte(h.Class)
	d.cfg[RegClass+1] = byte(h.Class >> 8)
	d.cfg[RegClass+2] = byte(h.Class >> 16)
	d.wmask[RegCacheLineSize] = 0xff
	if h.MultiFunction {
		d.cfg[RegHeaderType] = headerMultiFunction
	}
	put16(d.cfg, RegSubsystemVID, h.SubsystemVendorID)
	put16(d.cfg, RegSubsystemID, h.SubsystemID)
	d.cfg[RegInterruptPin] = h.InterruptPin
	d.wmask[RegInterruptLine] = 0xff
	return d, nil
}

// Header returns the header the device was created with.
func (d *Device) Header() Header { return d.hdr }

// SBDF returns the function's address; it is valid while the device is on
// a Bus.
func (d *Device) SBDF() devices.SBDF {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sbdf
}

// Stats returns the device's counters.
func (d *Device) Stats() Stats {
	return Stats{MapErrors: d.mapErrors.Load(), MSIDropped: d.msiDropped.Load()}
}

// ConfigSize returns the size of the function's configuration space (256
// or 4096).
func (d *Device) ConfigSize() int { return len(d.cfg) }

// setupCheck reports ErrBusy once the device is on a bus or the guest
// has written to it.
func (d *Device) setupCheck(what string) error {
	if d.bus != nil || d.resetImage != nil {
		return fmt.Errorf("pci: %s: %w", what, ErrBusy)
	}
	return nil
}

// claim marks [off, off+n) above the header as used; it fails if any byte
// is taken or outside the function's configuration space.
func (d *Device) claim(off, n uint32) error {
	if off < headerSize || off+n > uint32(len(d.cfg)) || off+n < off || n == 0 {
		return ErrNoSpace
	}
	for o := off; o < off+n; o++ {
		if d.claimed[o/8]&(1<<(o%8)) != 0 {
			return ErrNoSpace
		}
	}
	for o := off; o < off+n; o++ {
		d.claimed[o/8] |= 1 << (o % 8)
	}
	return nil
}

// DefineRegister declares a device-specific register of size bytes (1, 2
// or 4) at off (0x40 up to the end of the configuration space): its reset
// value, writable mask and write-1-to-clear mask. Undeclared bytes read 0
// and ignore writes.
func (d *Device) DefineRegister(off uint32, size uint8, reset, wmask, w1c uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.setupCheck("define register"); err != nil {
		return err
	}
	if size != 1 && size != 2 && size != 4 {
		return fmt.Errorf("pci: define register %#x size %d: %w", off, size, ErrInvalid)
	}
	if err := d.claim(off, uint32(size)); err != nil {
		return fmt.Errorf("pci: define register %#x size %d: %w", off, size, err)
	}
	for i := uint32(0); i < uint32(size); i++ {
		d.cfg[off+i] = byte(reset >> (8 * i))
		d.wmask[off+i] = byte(wmask >> (8 * i))
		d.w1c[off+i] = byte(w1c >> (8 * i))
	}
	return nil
}

// KeepOnReset makes Reset leave the n bytes at off (device-specific
// registers, 0x40 up) as the guest last wrote them. QEMU's system reset
// touches only the standard header (hw/pci/pci.c pci_do_device_reset) and
// the registers a device's own reset handler names, so a device following
// QEMU keeps the rest. Bus.Remove still returns them to their reset
// values (a card plugged again starts from power-on).
func (d *Device) KeepOnReset(off, n uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.setupCheck("keep on reset"); err != nil {
		return err
	}
	if off < headerSize || off+n > uint32(len(d.cfg)) || off+n < off {
		return fmt.Errorf("pci: keep on reset [%#x+%d]: %w", off, n, ErrInvalid)
	}
	if d.keep == nil {
		d.keep = make([]bool, len(d.cfg))
	}
	for i := off; i < off+n; i++ {
		d.keep[i] = true
	}
	return nil
}

// KeptOnReset implements devices.ResetKeeper (see KeepOnReset).
func (d *Device) KeptOnReset(off uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.keep != nil && off < uint64(len(d.keep)) && d.keep[off]
}

// SetWriteHook installs fn, called after every guest configuration write
// (once the registers and BAR mappings are updated) with the write's offset
// and size, for devices with side effects on their own registers. fn runs
// without the Device's register lock, so it may call ConfigRead; guest
// writes to the device are serialised around it.
func (d *Device) SetWriteHook(fn func(off uint32, size uint8)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.setupCheck("set write hook"); err != nil {
		return err
	}
	d.onWrite = fn
	return nil
}

// ConfigRead returns size bytes (1, 2 or 4) of configuration space at off
// as the guest would read them.
func (d *Device) ConfigRead(off uint32, size uint8) uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return uint32(d.readLocked(off, size))
}

// SetConfig stores size bytes of v at off regardless of the writable
// masks: the device's own view of a read-only register. It does not
// re-evaluate BAR mappings.
func (d *Device) SetConfig(off uint32, size uint8, v uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := uint32(0); i < uint32(size) && i < 4; i++ {
		if o := off + i; o < uint32(len(d.cfg)) {
			d.cfg[o] = byte(v >> (8 * i))
		}
	}
}

// Read implements devices.Handler for configuration space. Registers
// beyond the function's space read all-ones, as QEMU's
// pci_host_config_read_common (hw/pci/pci_host.c) answers for offsets at or
// above the limit QEMU's Xen path passes (PCI_CONFIG_SPACE_SIZE, 256, in
// cpu_ioreq_config, hw/xen/xen-hvm-common.c).
func (d *Device) Read(a devices.Access) uint64 {
	d.mu.Lock()
	v := d.readLocked(uint32(a.Offset), a.Size)
	d.mu.Unlock()
	return v
}

func (d *Device) readLocked(off uint32, size uint8) uint64 {
	var v uint64
	n := uint32(len(d.cfg))
	for i := uint32(0); i < uint32(size) && i < 8; i++ {
		b := byte(0xff)
		if o := off + i; o >= off && o < n {
			b = d.cfg[o]
		}
		v |= uint64(b) << (8 * i)
	}
	return v
}

// Write implements devices.Handler for configuration space. Each byte
// keeps its read-only bits, takes the writable bits of v and clears the
// write-1-to-clear bits set in v. Bytes beyond the function's space are
// dropped (pci_host_config_write_common, hw/pci/pci_host.c).
func (d *Device) Write(a devices.Access, v uint64) {
	off, size := uint32(a.Offset), a.Size
	d.mapMu.Lock()
	d.mu.Lock()
	d.freezeLocked()
	remap := d.writeLocked(off, size, v)
	d.mu.Unlock()
	if remap {
		d.updateMappings()
	}
	if d.onWrite != nil {
		d.onWrite(off, size)
	}
	d.mapMu.Unlock()
}

// freezeLocked takes the reset image if it has not been taken yet.
func (d *Device) freezeLocked() {
	if d.resetImage == nil {
		d.resetImage = append([]byte(nil), d.cfg...)
	}
}

// overlaps reports whether [off, off+size) intersects [lo, hi).
func overlaps(off uint32, size uint8, lo, hi uint32) bool {
	return off < hi && off+uint32(size) > lo
}

// writeLocked applies a guest write and its register side effects; it
// reports whether BAR mappings must be re-evaluated.
func (d *Device) writeLocked(off uint32, size uint8, v uint64) bool {
	n := uint32(len(d.cfg))
	if size > 8 {
		size = 8
	}
	for i := uint32(0); i < uint32(size); i++ {
		o := off + i
		if o < off || o >= n {
			break
		}
		b := byte(v >> (8 * i))
		w := d.wmask[o]
		nb := (d.cfg[o] &^ w) | (b & w)
		d.cfg[o] = nb &^ (b & d.w1c[o])
	}
	remap := false
	if overlaps(off, size, RegCommand, RegCommand+2) {
		remap = true
		d.updateINTxLocked()
	}
	if overlaps(off, size, RegBAR0, RegBAR0+4*numBARs) || overlaps(off, size, RegROM, RegROM+4) {
		remap = true
	}
	if c := uint32(d.msi.cap); c != 0 && overlaps(off, size, c, c+uint32(d.msi.size)) {
		d.msiUpdateLocked()
		d.updateINTxLocked()
	}
	if c := uint32(d.msix.cap); c != 0 && overlaps(off, size, c+msixControl, c+msixControl+2) {
		d.msixUpdateLocked()
		d.updateINTxLocked()
	}
	return remap
}

// Reset implements devices.Resetter: configuration space returns to the
// image it had when the device joined its bus or was first written (BARs
// zero, decoding as created; bytes marked with KeepOnReset excepted), MSI and MSI-X are disabled with every vector
// masked and nothing pending, and INTx is deasserted. The BARs are
// unmapped.
func (d *Device) Reset() {
	d.mapMu.Lock()
	d.mu.Lock()
	if d.resetImage != nil {
		for i := range d.cfg {
			if d.keep == nil || !d.keep[i] {
				d.cfg[i] = d.resetImage[i]
			}
		}
	}
	d.msixResetLocked()
	d.intxLevel = false
	d.updateINTxLocked()
	d.mu.Unlock()
	d.updateMappings()
	d.mapMu.Unlock()
}

// INTx returns the function's interrupt pin as an irq.Line: the device
// asserts and deasserts its condition there; the level reaches the bus only
// when it changes, while the command register's Interrupt Disable bit is
// clear and while neither MSI nor MSI-X is enabled. The Interrupt Status
// bit follows the condition. The returned Line does not allocate.
func (d *Device) INTx() irq.Line { return &d.intxLine }

// SetINTx sets the function's INTx condition (see INTx).
func (d *Device) SetINTx(level bool) {
	d.mu.Lock()
	d.intxLevel = level
	d.updateINTxLocked()
	d.mu.Unlock()
}

func (d *Device) updateINTxLocked() {
	st := get16(d.cfg, RegStatus) &^ statusINTx
	if d.intxLevel {
		st |= statusINTx
	}
	put16(d.cfg, RegStatus, st)
	// A function with MSI or MSI-X enabled must not use its INTx pin (PCI
	// Local Bus 3.0, the MSI Enable and MSI-X Enable bits in §6.8.1.3 and
	// §6.8.2.3).
	out := d.intxLevel && d.hdr.InterruptPin != 0 && get16(d.cfg, RegCommand)&CommandINTxDisable == 0 &&
		!d.msi.enabledLocked(d) && !d.msix.enabledLocked(d)
	if out == d.intxOut {
		return
	}
	d.intxOut = out
	if d.intx != nil {
		d.intx.SetLevel(out)
	}
}

type intxAdapter struct{ d *Device }

// SetLevel implements irq.Line.
func (a *intxAdapter) SetLevel(high bool) { a.d.SetINTx(high) }

// Interrupt delivers vector through MSI-X if it is enabled, else through
// MSI if that is enabled. It reports whether a message path was enabled
// (the message may then be held pending behind a mask); when it reports
// false the device should use INTx. It does not allocate.
func (d *Device) Interrupt(vector int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.msix.enabledLocked(d) {
		d.msixTriggerLocked(vector)
		return true
	}
	if d.msi.enabledLocked(d) {
		d.msiTriggerLocked(vector)
		return true
	}
	return false
}

func get16(b []byte, off int) uint16 { return uint16(b[off]) | uint16(b[off+1])<<8 }

func put16(b []byte, off int, v uint16) { b[off], b[off+1] = byte(v), byte(v>>8) }

func get32(b []byte, off int) uint32 {
	return uint32(b[off]) | uint32(b[off+1])<<8 | uint32(b[off+2])<<16 | uint32(b[off+3])<<24
}

func put32(b []byte, off int, v uint32) {
	b[off], b[off+1], b[off+2], b[off+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

// NewFunction is the short way to build a simple function: New(h), then
// bars[i] as BAR i in order (a BARMem64 also takes the next register, so
// the following BAR moves up one). Use the returned Device's INTx line, or
// AddMSI/AddMSIX and Interrupt, for its interrupts.
func NewFunction(h Header, bars ...BAR) (*Device, error) {
	d, err := New(h)
	if err != nil {
		return nil, err
	}
	i := 0
	for _, b := range bars {
		if err := d.SetBAR(i, b); err != nil {
			return nil, err
		}
		i++
		if b.Kind == BARMem64 {
			i++
		}
	}
	return d, nil
}
