package pci_test

import (
	"fmt"

	"godm/devices"
	"godm/irq"
	"godm/pci"
)

// regs is a device's register block behind a BAR.
type regs struct{ doorbell uint64 }

func (r *regs) Read(a devices.Access) uint64     { return r.doorbell }
func (r *regs) Write(a devices.Access, v uint64) { r.doorbell = v }

// A function with one 16 KiB memory BAR holding the device's registers and
// an MSI-X table, placed on bus 0; firmware programs the BAR and the guest
// driver enables MSI-X and unmasks vector 0.
func Example() {
	spaces := devices.NewBus()
	bus, err := pci.NewBus(pci.BusConfig{
		Spaces: spaces,
		MSI: irq.MSIFunc(func(addr uint64, data uint32) {
			fmt.Printf("MSI %#x <- %#x\n", addr, data)
		}),
	})
	if err != nil {
		panic(err)
	}
	dev, err := pci.New(pci.Header{VendorID: 0x1af4, DeviceID: 0x1110, Class: 0xff0000, InterruptPin: 1})
	if err != nil {
		panic(err)
	}
	r := &regs{}
	if err := dev.SetBAR(0, pci.BAR{Kind: pci.BARMem32, Size: 0x4000, Handler: r}); err != nil {
		panic(err)
	}
	msix, err := dev.AddMSIX(pci.MSIXConfig{Vectors: 4, TableBAR: 0, TableOffset: 0x2000, PBABAR: 0, PBAOffset: 0x3000})
	if err != nil {
		panic(err)
	}
	sbdf, err := bus.AddAuto(dev)
	if err != nil {
		panic(err)
	}
	fmt.Println("placed at", sbdf)

	// Firmware: size BAR0, place it, enable memory decoding.
	spaces.PCI.Write(sbdf, pci.RegBAR0, 4, 0, 0xffffffff)
	fmt.Printf("BAR0 size mask %#x\n", spaces.PCI.Read(sbdf, pci.RegBAR0, 4, 0))
	spaces.PCI.Write(sbdf, pci.RegBAR0, 4, 0, 0xfebf0000)
	spaces.PCI.Write(sbdf, pci.RegCommand, 2, 0, pci.CommandMemory|pci.CommandMaster)

	// Driver: program vector 0, enable MSI-X, unmask.
	spaces.MMIO.Write(0xfebf2000, 4, 0, 0xfee00000)
	spaces.MMIO.Write(0xfebf2008, 4, 0, 0x41)
	spaces.PCI.Write(sbdf, uint32(msix)+2, 2, 0, 0x8000)
	dev.Interrupt(0) // masked: held pending
	spaces.MMIO.Write(0xfebf200c, 4, 0, 0)

	spaces.MMIO.Write(0xfebf0000, 4, 0, 7) // the device's own register
	fmt.Println("doorbell", r.doorbell)
	// Output:
	// placed at 0000:00:00.0
	// BAR0 size mask 0xffffc000
	// MSI 0xfee00000 <- 0x41
	// doorbell 7
}
