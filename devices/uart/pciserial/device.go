package pciserial

import (
	"fmt"

	"godm/devices/uart"
	"godm/pci"
)

// Identity of QEMU's pci-serial function (hw/char/serial-pci.c,
// include/hw/pci/pci.h PCI_VENDOR_ID_REDHAT / PCI_DEVICE_ID_REDHAT_SERIAL,
// PCI_SUBVENDOR_ID_REDHAT_QUMRANET / PCI_SUBDEVICE_ID_QEMU).
const (
	VendorID          = 0x1b36
	DeviceID          = 0x0002
	Revision          = 1
	Class             = 0x070002 // serial controller, 16550-compatible
	SubsystemVendorID = 0x1af4
	SubsystemID       = 0x1100
)

// Device is one PCI serial function.
type Device struct {
	// PCI is the function; add it to a pci.Bus.
	PCI *pci.Device
	// UART is the 16550A behind BAR 0.
	UART *uart.UART
}

// New returns a PCI serial function. cfg.IRQ is ignored: the UART's
// interrupt is the function's INTA#.
func New(cfg uart.Config) (*Device, error) {
	p, err := pci.New(pci.Header{
		VendorID:          VendorID,
		DeviceID:          DeviceID,
		Revision:          Revision,
		Class:             Class,
		SubsystemVendorID: SubsystemVendorID,
		SubsystemID:       SubsystemID,
		InterruptPin:      1,
	})
	if err != nil {
		return nil, fmt.Errorf("pciserial: %w", err)
	}
	cfg.IRQ = p.INTx()
	u := uart.New(cfg)
	if err := p.SetBAR(0, pci.BAR{Kind: pci.BARIO, Size: uart.Size, Handler: u}); err != nil {
		u.Close()
		return nil, fmt.Errorf("pciserial: BAR 0: %w", err)
	}
	return &Device{PCI: p, UART: u}, nil
}

// Close detaches the UART from its backend. It does not remove the
// function from its bus.
func (d *Device) Close() error { return d.UART.Close() }
