package piix3

import (
	"errors"
	"os/exec"
	"testing"

	"godm/devices"
	"godm/internal/qtest"
	"godm/internal/qtest/scripts"
)

// TestQEMUParity compares 00:01.0 with QEMU's PIIX3, at reset and after
// all-ones writes, through 0xcf8/0xcfc with the script internal/machine
// also runs through xensim vCPUs.
func TestQEMUParity(t *testing.T) {
	if _, err := qtest.Find(qtest.Options{}); errors.Is(err, exec.ErrNotFound) {
		t.Skipf("qemu-system-x86_64 not installed: %v", err)
	}
	c, err := qtest.Start(qtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m := newMachine(t)
	if want := devices.NewSBDF(0, 0, 1, 0); m.sbdf != want {
		t.Fatalf("PIIX3 at %v, want %v", m.sbdf, want)
	}
	got, err := qtest.NewConfigTarget(m.spaces.PCI)
	if err != nil {
		t.Fatal(err)
	}
	qtest.Diff(t, scripts.PCIConfig(1<<3), &qtest.QEMUTarget{C: c}, got)
}
