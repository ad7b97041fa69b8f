package piix4pm

import (
	"testing"

	"godm/devices"
	"godm/pci"
	"godm/pci/pcitest"
)

// TestQEMUParity compares 00:01.3 with QEMU's PIIX4 PM function, at reset
// and after all-ones writes. One documented difference: QEMU's TCG "pc"
// machine has SMM, so it leaves 0x5b at 0; under Xen there is no SMM and
// QEMU sets 0x02 there, as this package does.
func TestQEMUParity(t *testing.T) {
	q := pcitest.StartQEMU(t, "-serial", "null")
	spaces := devices.NewBus()
	b, err := pci.NewBus(pci.BusConfig{Spaces: spaces})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{COM1: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := d.Attach(b, spaces.PIO)
	if err != nil {
		t.Fatal(err)
	}
	pcitest.CompareQEMU(t, q, 1<<3|3, spaces.PCI, s, func(reg uint32) uint32 {
		if reg == 0x58 {
			return 0xff000000
		}
		return 0
	})
}
