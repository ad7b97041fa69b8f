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

// TestQEMUDiff_PMIO runs the PM I/O script (hvmloader's programming, then
// PM1a_CNT without SLP_EN, GPE0, the PCI hotplug block, the SCI edges) on
// QEMU and on this package's function behind configuration mechanism #1
// on the same port space; internal/machine runs it through xensim vCPUs.
func TestQEMUDiff_PMIO(t *testing.T) {
	if _, err := qtest.Find(qtest.Options{}); errors.Is(err, exec.ErrNotFound) {
		t.Skipf("qemu-system-x86_64 not installed: %v", err)
	}
	c, err := qtest.Start(qtest.Options{Args: []string{"-serial", "null"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.InterceptIRQ("ioapic"); err != nil {
		t.Fatal(err)
	}
	spaces := devices.NewBus()
	b, err := pci.NewBus(pci.BusConfig{Spaces: spaces})
	if err != nil {
		t.Fatal(err)
	}
	got := qtest.NewSpaceTarget(spaces.PIO)
	d, err := New(Config{COM1: true, SCI: got.Line(scripts.SCI)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Attach(b, spaces.PIO); err != nil {
		t.Fatal(err)
	}
	if err := spaces.PIO.Register(scripts.ConfigAddress, 8, &qtest.ConfigPorts{Config: spaces.PCI}); err != nil {
		t.Fatal(err)
	}
	qtest.Diff(t, scripts.PIIX4PMIO(), &qtest.QEMUTarget{C: c, Watch: []int{scripts.SCI}}, got)
}
