package i440fx

import (
	"errors"
	"math/rand/v2"
	"os/exec"
	"testing"

	"godm/devices"
	"godm/internal/qtest"
	"godm/internal/qtest/scripts"
	"godm/pci"
)

// diffTargets starts QEMU with 128 MiB of RAM (the qtest default) and
// builds 00:00.0 with the same, behind configuration mechanism #1.
func diffTargets(t *testing.T) (want, got qtest.Target) {
	t.Helper()
	if _, err := qtest.Find(qtest.Options{}); errors.Is(err, exec.ErrNotFound) {
		t.Skipf("qemu-system-x86_64 not installed: %v", err)
	}
	c, err := qtest.Start(qtest.Options{Args: []string{"-m", "128"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
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
	if want := devices.NewSBDF(0, 0, 0, 0); s != want {
		t.Fatalf("host bridge at %v, want %v", s, want)
	}
	st, err := qtest.NewConfigTarget(spaces.PCI)
	if err != nil {
		t.Fatal(err)
	}
	return &qtest.QEMUTarget{C: c}, st
}

// TestQEMUParity compares 00:00.0 with QEMU's i440FX, at reset and after
// all-ones writes, through 0xcf8/0xcfc with the script internal/machine
// also runs through xensim vCPUs.
func TestQEMUParity(t *testing.T) {
	want, got := diffTargets(t)
	qtest.Diff(t, scripts.PCIConfig(0), want, got)
}

// TestQEMUDiff_ConfigRandom runs random configuration reads and writes of
// every width (BARs aside), PAM and SMRAM included.
func TestQEMUDiff_ConfigRandom(t *testing.T) {
	want, got := diffTargets(t)
	qtest.Diff(t, scripts.PCIConfigRandom(rand.New(rand.NewPCG(1, 0xcf8)), 3000, []uint8{0}, nil), want, got)
}

// TestQEMUParityThroughPorts runs the same script with godm's side
// reached through its own CONFIG_ADDRESS and CONFIG_DATA ports (the path
// a guest takes when Xen has no latched 0xcf8, e.g. after xl restore),
// not through PCI-config requests.
func TestQEMUParityThroughPorts(t *testing.T) {
	want, _ := diffTargets(t)
	spaces := devices.NewBus()
	b, err := pci.NewBus(pci.BusConfig{Spaces: spaces})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{RAMSize: 128 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Attach(b); err != nil {
		t.Fatal(err)
	}
	if err := d.AttachPorts(spaces.PIO, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.AttachDataPorts(spaces.PIO, spaces.PCI); err != nil {
		t.Fatal(err)
	}
	qtest.Diff(t, scripts.PCIConfig(0), want, qtest.NewSpaceTarget(spaces.PIO))
}
