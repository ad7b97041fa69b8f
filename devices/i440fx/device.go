package i440fx

import (
	"fmt"

	"godm/devices"
	"godm/pci"
)

// Identity and registers (QEMU hw/pci-host/i440fx.c).
const (
	VendorID = 0x8086
	DeviceID = 0x1237
	Revision = 0x02
	Class    = 0x060000 // host bridge

	// RegPAM is the first of the seven Programmable Attribute Map
	// registers (PAM0..PAM6).
	RegPAM = 0x59
	// NumPAM is the number of PAM registers.
	NumPAM = 7
	// RegSMRAM is the System Management RAM control register.
	RegSMRAM = 0x72
	// smramReset is C_BASE_SEG = 010b, the only value the 440FX supports.
	smramReset = 0x02
	// smramWritable: D_OPEN, D_CLS, D_LCK and G_SMRAME (bits 6:3);
	// C_BASE_SEG is hardwired.
	smramWritable = 0x78
)

// Slot is where the host bridge lives on bus 0.
const Slot = 0

// Device is the host bridge.
type Device struct {
	fn *pci.Device
}

// New returns a host bridge in its reset state.
func New() (*Device, error) {
	fn, err := pci.New(pci.Header{VendorID: VendorID, DeviceID: DeviceID, Revision: Revision, Class: Class})
	if err != nil {
		return nil, fmt.Errorf("i440fx: %w", err)
	}
	// QEMU leaves the whole device-specific area writable (hw/pci/pci.c
	// pci_init_wmask); the SMRAM register keeps its hardwired bits.
	for off := uint32(0x40); off < pci.ConfigSize; off += 4 {
		reset, wmask := uint32(0), uint32(0xffffffff)
		if off == RegSMRAM&^3 {
			sh := 8 * (RegSMRAM & 3)
			reset = smramReset << sh
			wmask &^= 0xff << sh
			wmask |= smramWritable << sh
		}
		if err := fn.DefineRegister(off, 4, reset, wmask, 0); err != nil {
			return nil, fmt.Errorf("i440fx: %w", err)
		}
	}
	return &Device{fn: fn}, nil
}

// Function returns the PCI function.
func (d *Device) Function() *pci.Device { return d.fn }

// Attach places the host bridge at 00:00.0.
func (d *Device) Attach(b *pci.Bus) (devices.SBDF, error) {
	s, err := b.Add(d.fn, Slot, 0)
	if err != nil {
		return 0, fmt.Errorf("i440fx: attach: %w", err)
	}
	return s, nil
}

// PAM returns PAM register i (0..6).
func (d *Device) PAM(i int) uint8 {
	if i < 0 || i >= NumPAM {
		return 0
	}
	return uint8(d.fn.ConfigRead(uint32(RegPAM+i), 1))
}

// SMRAM returns the SMRAM control register.
func (d *Device) SMRAM() uint8 { return uint8(d.fn.ConfigRead(RegSMRAM, 1)) }

// Reset returns the bridge to its reset state.
func (d *Device) Reset() { d.fn.Reset() }
