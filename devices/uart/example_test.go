package uart_test

import (
	"fmt"

	"godm/devices"
	"godm/devices/chardev"
	"godm/devices/uart"
	"godm/irq"
)

// A COM1 UART on the port I/O space: the guest enables the THR-empty
// interrupt, identifies it through IIR (which clears it) and sends a byte.
func Example() {
	pio := devices.NewSpace("pio")
	out := chardev.NewNull()
	u := uart.New(uart.Config{
		IRQ:     irq.LineFunc(func(high bool) { fmt.Println("IRQ4", high) }),
		Backend: out,
	})
	defer u.Close()
	if _, err := uart.RegisterCOM(pio, 1, u); err != nil {
		panic(err)
	}
	pio.Write(0x3f9, 1, 0, 0x02) // IER: THRE interrupt
	fmt.Printf("IIR %#x\n", pio.Read(0x3fa, 1, 0))
	pio.Write(0x3f8, 1, 0, 'A') // THR
	fmt.Printf("LSR %#x, host got %d byte\n", pio.Read(0x3fd, 1, 0), out.Stats().Written)
	// Output:
	// IRQ4 true
	// IRQ4 false
	// IIR 0x2
	// IRQ4 true
	// LSR 0x60, host got 1 byte
}
