package uart

import (
	"fmt"

	"godm/devices"
)

// ISAPlacement is the conventional port base and IRQ of a PC COM port.
type ISAPlacement struct {
	// Base is the first I/O port of the 8-port register block.
	Base uint64
	// IRQ is the ISA interrupt the port uses.
	IRQ uint8
}

// COM returns the conventional placement of COMn (n = 1..4): COM1
// 0x3f8/IRQ4, COM2 0x2f8/IRQ3, COM3 0x3e8/IRQ4, COM4 0x2e8/IRQ3 (the
// BIOS data area order; QEMU hw/char/serial-isa.c isa_serial_io/irq).
func COM(n int) (ISAPlacement, error) {
	switch n {
	case 1:
		return ISAPlacement{Base: 0x3f8, IRQ: 4}, nil
	case 2:
		return ISAPlacement{Base: 0x2f8, IRQ: 3}, nil
	case 3:
		return ISAPlacement{Base: 0x3e8, IRQ: 4}, nil
	case 4:
		return ISAPlacement{Base: 0x2e8, IRQ: 3}, nil
	}
	return ISAPlacement{}, fmt.Errorf("uart: no COM%d (want 1..4)", n)
}

// RegisterCOM registers u in the port I/O space pio at the base of COMn and
// returns the placement, whose IRQ the caller wires to u's Config.IRQ.
func RegisterCOM(pio *devices.Space, n int, u *UART) (ISAPlacement, error) {
	p, err := COM(n)
	if err != nil {
		return ISAPlacement{}, err
	}
	if err := pio.Register(p.Base, Size, u); err != nil {
		return ISAPlacement{}, fmt.Errorf("uart: register COM%d at %#x: %w", n, p.Base, err)
	}
	return p, nil
}
