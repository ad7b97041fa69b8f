package piix4pm

import (
	"errors"
	"os/exec"
	"testing"

	"godm/devices"
	"godm/internal/qtest"
	"godm/internal/qtest/scripts"
	"godm/pci"
)

// TestQEMUParity compares 00:01.3 with QEMU's PIIX4 PM function, at reset
// and after all-ones writes, through 0xcf8/0xcfc with the script
// internal/machine also runs through xensim vCPUs (scripts.PIIX4PMDeviations aside: no SMM under Xen).
func TestQEMUParity(t *testing.T) {
	if _, err := qtest.Find(qtest.Options{}); errors.Is(err, exec.ErrNotFound) {
		t.Skipf("qemu-system-x86_64 not installed: %v", err)
	}
	c, err := qtest.Start(qtest.Options{Args: []string{"-serial", "null"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
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
	if want := devices.NewSBDF(0, 0, 1, 3); s != want {
		t.Fatalf("PM function at %v, want %v", s, want)
	}
	got, err := qtest.NewConfigTarget(spaces.PCI)
	if err != nil {
		t.Fatal(err)
	}
	qtest.Diff(t, scripts.PCIConfig(1<<3|3, scripts.PIIX4PMDeviations()...), &qtest.QEMUTarget{C: c}, got)
}
