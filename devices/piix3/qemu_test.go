package piix3

import (
	"testing"

	"godm/pci/pcitest"
)

// TestQEMUParity compares 00:01.0 with QEMU's PIIX3, at reset and after
// all-ones writes.
func TestQEMUParity(t *testing.T) {
	q := pcitest.StartQEMU(t)
	m := newMachine(t)
	pcitest.CompareQEMU(t, q, 1<<3, m.spaces.PCI, m.sbdf, nil)
}
