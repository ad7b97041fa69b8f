package pci_test

import (
	"fmt"

	"godm/devices"
	"godm/irq"
	"godm/pci"
)

// uart stands in for a 16550 register block.
type uart struct{ irq irq.Line }

func (u *uart) Read(a devices.Access) uint64 { return 0 }

func (u *uart) Write(a devices.Access, v uint64) {
	u.irq.SetLevel(a.Offset == 1 && v != 0) // "IER written": raise INTx
}

// A PCI serial port (QEMU's pci-serial, 1b36:0002): one 8-byte I/O BAR
// and INTA#. The register block drives the function's INTx line, which the
// bus's INTx router (the PIIX3 under Xen) forwards only on changes.
func ExampleNewFunction() {
	spaces := devices.NewBus()
	router := routerFunc(func(dev, fn, pin uint8) irq.Line {
		return irq.LineFunc(func(high bool) { fmt.Printf("INTx %02x.%d pin %d = %v\n", dev, fn, pin, high) })
	})
	bus, err := pci.NewBus(pci.BusConfig{Spaces: spaces, INTx: router})
	if err != nil {
		panic(err)
	}
	u := &uart{}
	fn, err := pci.NewFunction(pci.Header{
		VendorID: 0x1b36, DeviceID: 0x0002, Revision: 1, Class: 0x070002,
		SubsystemVendorID: 0x1af4, SubsystemID: 0x1100, InterruptPin: 1,
	}, pci.BAR{Kind: pci.BARIO, Size: 8, Handler: u})
	if err != nil {
		panic(err)
	}
	u.irq = fn.INTx()
	sbdf, err := bus.Add(fn, 5, 0)
	if err != nil {
		panic(err)
	}
	spaces.PCI.Write(sbdf, pci.RegBAR0, 4, 0, 0xc010)
	spaces.PCI.Write(sbdf, pci.RegCommand, 2, 0, pci.CommandIO)
	spaces.PIO.Write(0xc011, 1, 0, 0x0f)
	spaces.PIO.Write(0xc011, 1, 0, 0x0f) // still high: not forwarded
	spaces.PIO.Write(0xc011, 1, 0, 0)
	// Output:
	// INTx 05.0 pin 1 = true
	// INTx 05.0 pin 1 = false
}

type routerFunc func(dev, fn, pin uint8) irq.Line

func (f routerFunc) INTx(dev, fn, pin uint8) irq.Line { return f(dev, fn, pin) }
