package devices

// Bus is the three address spaces of one machine. Its fields are set by
// NewBus and must not be reassigned once the bus is shared.
type Bus struct {
	// PIO is the port I/O space (ports 0..0xffff).
	PIO *Space
	// MMIO is the guest-physical MMIO space.
	MMIO *Space
	// PCI is the PCI configuration space by SBDF.
	PCI *ConfigSpace
}

// NewBus returns a bus with three empty spaces.
func NewBus() *Bus {
	return &Bus{PIO: NewSpace("pio"), MMIO: NewSpace("mmio"), PCI: NewConfigSpace()}
}
