package pciserial

import (
	"fmt"

	"godm/devices"
	"godm/devices/savestate"
)

// StateVersion is the version of the pci-serial snapshot record.
const StateVersion = 1

// RecordName names pci-serial's records (QEMU's driver name).
const RecordName = "pci-serial"

// maxUARTRecord bounds the UART's record inside ours (its FIFO is 16
// bytes; the registers a few more).
const maxUARTRecord = 4096

var (
	_ devices.Snapshotter = (*Device)(nil)
	_ devices.Pauser      = (*Device)(nil)
	_ devices.Resetter    = (*Device)(nil)
)

// Snapshot implements devices.Snapshotter: the PCI function's state, then
// the UART's own record.
func (d *Device) Snapshot() ([]byte, error) {
	u, err := d.UART.Snapshot()
	if err != nil {
		return nil, err
	}
	var w savestate.Writer
	d.PCI.WriteState(&w)
	w.Bytes(u)
	return savestate.Record(RecordName, StateVersion, w.Out()), nil
}

// Restore implements devices.Snapshotter. A malformed record changes
// nothing of the UART (the function's state may be restored already:
// reset the device before using it again, as the board's Restore says).
func (d *Device) Restore(b []byte) error {
	_, r, err := savestate.Open(b, RecordName, StateVersion)
	if err != nil {
		return err
	}
	if err := d.PCI.ReadState(r); err != nil {
		return fmt.Errorf("pciserial: %w", err)
	}
	u := r.Bytes(maxUARTRecord)
	if err := r.Done(); err != nil {
		return fmt.Errorf("pciserial: restore: %w", err)
	}
	if err := d.UART.Restore(u); err != nil {
		return fmt.Errorf("pciserial: %w", err)
	}
	return nil
}

// Reset returns the function's configuration space and the UART to their
// power-on state (QEMU's system_reset: pci_device_reset, then
// serial_reset).
func (d *Device) Reset() {
	d.PCI.Reset()
	d.UART.Reset()
}

// Pause implements devices.Pauser (uart.UART's Pause).
func (d *Device) Pause() { d.UART.Pause() }

// Resume implements devices.Pauser.
func (d *Device) Resume() { d.UART.Resume() }
