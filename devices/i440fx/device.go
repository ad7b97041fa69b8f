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
	// smramReset is C_BASE_SEG = 010b (QEMU's i440fx_realize).
	smramReset = 0x02
)

// Slot is where the host bridge lives on bus 0.
const Slot = 0

// Subsystem IDs QEMU gives devices that set none (Red Hat/Qumranet
// 1af4:1100, hw/pci/pci.c); guests such as Windows include them in device
// identities, so they are kept for parity with QEMU-built domains.
const (
	SubsystemVendorID = 0x1af4
	SubsystemID       = 0x1100
)

// RegRAMSize is the byte older coreboot reads the RAM size from, in 8 MiB
// units (QEMU's I440FX_COREBOOT_RAM_SIZE).
const RegRAMSize = 0x57

// Config describes the host bridge.
type Config struct {
	// RAMSize is the guest's RAM in bytes, reported in RegRAMSize
	// (capped at 255 units of 8 MiB, as QEMU does).
	RAMSize uint64
}

// Device is the host bridge.
type Device struct {
	fn   *pci.Device
	addr configAddress
}

// New returns a host bridge in its reset state. The device-specific
// registers 0x40..0xff are all writable, as in QEMU (its default wmask,
// hw/pci/pci.c pci_init_wmask; QEMU 7.2 reads back all-ones after an
// all-ones write).
func New(c Config) (*Device, error) {
	fn, err := pci.New(pci.Header{
		VendorID: VendorID, DeviceID: DeviceID, Revision: Revision, Class: Class,
		SubsystemVendorID: SubsystemVendorID, SubsystemID: SubsystemID,
	})
	if err != nil {
		return nil, fmt.Errorf("i440fx: %w", err)
	}
	var reset [pci.ConfigSize]byte
	reset[RegSMRAM] = smramReset
	reset[RegRAMSize] = byte(min(c.RAMSize>>23, 255))
	for off := uint32(0x40); off < pci.ConfigSize; off += 4 {
		v := uint32(reset[off]) | uint32(reset[off+1])<<8 | uint32(reset[off+2])<<16 | uint32(reset[off+3])<<24
		if err := fn.DefineRegister(off, 4, v, 0xffffffff, 0); err != nil {
			return nil, fmt.Errorf("i440fx: %w", err)
		}
	}
	// QEMU's i440FX has no reset handler of its own: a system reset
	// resets the standard header only (hw/pci/pci.c
	// pci_do_device_reset), so PAM, SMRAM and the rest keep the guest's
	// values.
	if err := fn.KeepOnReset(0x40, pci.ConfigSize-0x40); err != nil {
		return nil, fmt.Errorf("i440fx: %w", err)
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

// Reset is a system reset of the bridge as QEMU does it: the standard
// header resets; the device-specific registers and CONFIG_ADDRESS keep
// their values (QEMU resets neither: no i440FX reset handler, and
// hw/pci/pci_host.c never clears config_reg).
func (d *Device) Reset() {
	d.fn.Reset()
}
