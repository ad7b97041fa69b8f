package i440fx

import (
	"testing"

	"godm/devices"
	"godm/pci"
	"godm/pci/pcitest"
)

// TestQEMUParity compares 00:00.0 with QEMU's i440FX (128 MiB of RAM, the
// qtest default), at reset and after all-ones writes.
func TestQEMUParity(t *testing.T) {
	q := pcitest.StartQEMU(t, "-m", "128")
	spaces := devices.NewBus()
	b, err := pci.NewBus(pci.BusConfig{Spaces: spaces})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{RAMSize: 128 << 20})
	if err != nil {
		t.Fatal(err)
	}
	s, err := d.Attach(b)
	if err != nil {
		t.Fatal(err)
	}
	pcitest.CompareQEMU(t, q, 0, spaces.PCI, s, nil)
}
