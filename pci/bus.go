package pci

import (
	"errors"
	"fmt"
	"sync"

	"godm/devices"
	"godm/irq"
)

// Registry errors.
var (
	// ErrSlotInUse is returned when the requested device/function is taken.
	ErrSlotInUse = errors.New("pci: slot/function in use")
	// ErrBusFull is returned when no slot is free for an automatic placement.
	ErrBusFull = errors.New("pci: no free slot")
	// ErrNotOnBus is returned when removing a device that is not on this bus.
	ErrNotOnBus = errors.New("pci: device is not on this bus")
)

// Slots and functions of one bus.
const (
	NumSlots     = 32
	NumFunctions = 8
)

// INTxRouter gives each function's interrupt pin its line. The PCI-ISA
// bridge (devices/piix3) implements it; functions of one slot that share a
// pin are wired-OR by the router.
type INTxRouter interface {
	// INTx returns the line of pin (1..4 = INTA#..INTD#) of function fn in
	// slot dev. It is called when a function joins the bus.
	INTx(dev, fn, pin uint8) irq.Line
}

// BusConfig wires a Bus.
type BusConfig struct {
	// Spaces holds the configuration space the functions are registered
	// in and the port I/O and MMIO spaces their BARs decode in. Required.
	Spaces *devices.Bus
	// INTx routes interrupt pins; nil leaves INTx unconnected.
	INTx INTxRouter
	// MSI sends message-signalled interrupts; nil drops them.
	MSI irq.MSISender
}

// Bus is the registry of the functions on PCI bus 0 (segment 0): it places
// each at a fixed or automatic slot/function, registers its configuration
// space with the devices.ConfigSpace and connects its BARs and interrupts.
// It is safe for concurrent use; Add and Remove are control-path calls.
type Bus struct {
	cfg BusConfig

	mu    sync.Mutex
	slots [NumSlots][NumFunctions]*Device // guarded by mu
	// reserved marks slots held by functions registered in the
	// configuration space outside the registry (PCI passthrough, see
	// Reserve). Guarded by mu.
	reserved [NumSlots]bool
}

// NewBus returns an empty bus.
func NewBus(c BusConfig) (*Bus, error) {
	if c.Spaces == nil || c.Spaces.PCI == nil {
		return nil, fmt.Errorf("pci: new bus: no configuration space: %w", ErrInvalid)
	}
	return &Bus{cfg: c}, nil
}

// Add places d at slot dev, function fn and makes it visible.
func (b *Bus) Add(d *Device, dev, fn uint8) (devices.SBDF, error) {
	if dev >= NumSlots || fn >= NumFunctions {
		return 0, fmt.Errorf("pci: add %02x.%x: %w", dev, fn, ErrInvalid)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addLocked(d, dev, fn)
}

// AddAuto places d at function 0 of the lowest free slot: one with no
// function of the registry, not reserved, and with nothing registered in
// the configuration space by anyone else.
func (b *Bus) AddAuto(d *Device) (devices.SBDF, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	foreign := b.foreignSlots()
	for dev := range uint8(NumSlots) {
		if b.slotEmptyLocked(dev) && !foreign[dev] {
			return b.addLocked(d, dev, 0)
		}
	}
	return 0, fmt.Errorf("pci: add %04x:%04x: %w", d.hdr.VendorID, d.hdr.DeviceID, ErrBusFull)
}

// foreignSlots returns the slots of bus 0 in which the configuration space
// holds a function the registry did not place.
func (b *Bus) foreignSlots() [NumSlots]bool {
	var out [NumSlots]bool
	for _, f := range b.cfg.Spaces.PCI.Functions() {
		if f.Seg() == 0 && f.Bus() == 0 {
			out[f.Dev()] = true
		}
	}
	return out
}

// Reserve claims slot dev for functions registered in the configuration
// space outside the registry (a passed-through function registers its own
// handler): AddAuto and AddFunction skip it and Add refuses it until
// Release. It fails with ErrSlotInUse if the slot holds a function or is
// reserved already.
func (b *Bus) Reserve(dev uint8) error {
	if dev >= NumSlots {
		return fmt.Errorf("pci: reserve %02x: %w", dev, ErrInvalid)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.slotEmptyLocked(dev) || b.foreignSlots()[dev] {
		return fmt.Errorf("pci: reserve %02x: %w", dev, ErrSlotInUse)
	}
	b.reserved[dev] = true
	return nil
}

// ReserveAuto reserves the lowest free slot from 1 (slot 0 is the host
// bridge's) and returns it.
func (b *Bus) ReserveAuto() (uint8, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	foreign := b.foreignSlots()
	for dev := uint8(1); dev < NumSlots; dev++ {
		if b.slotEmptyLocked(dev) && !foreign[dev] {
			b.reserved[dev] = true
			return dev, nil
		}
	}
	return 0, fmt.Errorf("pci: reserve: %w", ErrBusFull)
}

// Release frees a slot Reserve or ReserveAuto claimed. It fails with
// ErrNotOnBus if the slot is not reserved.
func (b *Bus) Release(dev uint8) error {
	if dev >= NumSlots {
		return fmt.Errorf("pci: release %02x: %w", dev, ErrInvalid)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.reserved[dev] {
		return fmt.Errorf("pci: release %02x: %w", dev, ErrNotOnBus)
	}
	b.reserved[dev] = false
	return nil
}

// Reserved reports whether slot dev is reserved.
func (b *Bus) Reserved(dev uint8) bool {
	if dev >= NumSlots {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reserved[dev]
}

// AddFunction places d at the lowest free function of slot dev; function 0
// must be taken first, since a slot without function 0 is invisible to
// enumeration.
func (b *Bus) AddFunction(d *Device, dev uint8) (devices.SBDF, error) {
	if dev >= NumSlots {
		return 0, fmt.Errorf("pci: add %02x: %w", dev, ErrInvalid)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.reserved[dev] {
		return 0, fmt.Errorf("pci: add %02x: %w", dev, ErrSlotInUse)
	}
	if b.slots[dev][0] == nil {
		return b.addLocked(d, dev, 0)
	}
	for fn := range uint8(NumFunctions) {
		if b.slots[dev][fn] == nil {
			return b.addLocked(d, dev, fn)
		}
	}
	return 0, fmt.Errorf("pci: add %02x: %w", dev, ErrSlotInUse)
}

func (b *Bus) slotEmptyLocked(dev uint8) bool {
	if b.reserved[dev] {
		return false
	}
	for _, f := range b.slots[dev] {
		if f != nil {
			return false
		}
	}
	return true
}

func (b *Bus) addLocked(d *Device, dev, fn uint8) (devices.SBDF, error) {
	sbdf := devices.NewSBDF(0, 0, dev, fn)
	if b.slots[dev][fn] != nil || b.reserved[dev] {
		return 0, fmt.Errorf("pci: add %v: %w", sbdf, ErrSlotInUse)
	}
	d.mapMu.Lock()
	defer d.mapMu.Unlock()
	d.mu.Lock()
	if d.bus != nil {
		d.mu.Unlock()
		return 0, fmt.Errorf("pci: add %v: %w", sbdf, ErrBusy)
	}
	d.freezeLocked()
	d.bus, d.sbdf = b, sbdf
	d.pio, d.mmio, d.send = b.cfg.Spaces.PIO, b.cfg.Spaces.MMIO, b.cfg.MSI
	d.intx = nil
	if b.cfg.INTx != nil && d.hdr.InterruptPin != 0 {
		d.intx = b.cfg.INTx.INTx(dev, fn, d.hdr.InterruptPin)
	}
	if fn != 0 {
		if f0 := b.slots[dev][0]; f0 != nil {
			f0.setMultiFunction()
		}
	} else if !b.slotEmptyLocked(dev) {
		d.cfg[RegHeaderType] |= headerMultiFunction
		d.resetImage[RegHeaderType] |= headerMultiFunction
	}
	d.mu.Unlock()
	if err := b.cfg.Spaces.PCI.Register(sbdf, d); err != nil {
		d.mu.Lock()
		d.bus, d.intx, d.send, d.pio, d.mmio = nil, nil, nil, nil, nil
		d.mu.Unlock()
		return 0, fmt.Errorf("pci: add %v: %w", sbdf, err)
	}
	b.slots[dev][fn] = d
	// A device created with decoding on decodes its BARs as soon as
	// they hold an address; at this point they are still zero, so this
	// maps nothing unless a BAR was preset with SetConfig.
	d.updateMappings()
	return sbdf, nil
}

// setMultiFunction sets the multi-function bit of function 0, both live
// and in the reset image.
func (d *Device) setMultiFunction() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cfg[RegHeaderType] |= headerMultiFunction
	if d.resetImage != nil {
		d.resetImage[RegHeaderType] |= headerMultiFunction
	}
}

// Remove takes d off the bus: its configuration space and BARs are
// unregistered, its INTx is deasserted and its registers return to their
// reset state. d may be added again.
func (b *Bus) Remove(d *Device) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	d.mapMu.Lock()
	defer d.mapMu.Unlock()
	d.mu.Lock()
	onBus, sbdf := d.bus == b, d.sbdf
	d.mu.Unlock()
	if !onBus {
		return fmt.Errorf("pci: remove %04x:%04x: %w", d.hdr.VendorID, d.hdr.DeviceID, ErrNotOnBus)
	}
	err := b.cfg.Spaces.PCI.Unregister(sbdf)
	b.slots[sbdf.Dev()][sbdf.Fn()] = nil
	d.unmapAll()
	d.mu.Lock()
	if d.intxOut && d.intx != nil {
		d.intx.SetLevel(false)
	}
	d.intxOut = false
	d.bus, d.intx, d.send, d.pio, d.mmio = nil, nil, nil, nil, nil
	// A function plugged in again starts from reset, as a new card would.
	copy(d.cfg, d.resetImage)
	d.msixResetLocked()
	d.intxLevel = false
	d.mu.Unlock()
	if err != nil {
		return fmt.Errorf("pci: remove %v: %w", sbdf, err)
	}
	return nil
}

// Lookup returns the function at dev.fn, or nil.
func (b *Bus) Lookup(dev, fn uint8) *Device {
	if dev >= NumSlots || fn >= NumFunctions {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.slots[dev][fn]
}

// Reset resets every function on the bus.
func (b *Bus) Reset() {
	b.mu.Lock()
	var all []*Device
	for dev := range b.slots {
		for _, f := range b.slots[dev] {
			if f != nil {
				all = append(all, f)
			}
		}
	}
	b.mu.Unlock()
	for _, f := range all {
		f.Reset()
	}
}
