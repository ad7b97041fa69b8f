package piix3

import (
	"errors"
	"math/rand/v2"
	"os/exec"
	"testing"

	"godm/devices"
	"godm/internal/qtest"
	"godm/internal/qtest/scripts"
)

// diffTargets starts QEMU and builds the PIIX3 (newMachine) behind
// configuration mechanism #1 on a port space of its own (the function's
// 0xcf9 shares the dword with 0xcf8).
func diffTargets(t *testing.T) (want, got qtest.Target) {
	t.Helper()
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
	st, err := qtest.NewConfigTarget(m.spaces.PCI)
	if err != nil {
		t.Fatal(err)
	}
	return &qtest.QEMUTarget{C: c}, st
}

// TestQEMUParity compares 00:01.0 with QEMU's PIIX3, at reset and after
// all-ones writes, through 0xcf8/0xcfc with the script internal/machine
// also runs through xensim vCPUs.
func TestQEMUParity(t *testing.T) {
	want, got := diffTargets(t)
	qtest.Diff(t, scripts.PCIConfig(1<<3), want, got)
}

// TestQEMUDiff_ConfigRandom runs random configuration reads and writes of
// every width (BARs aside).
func TestQEMUDiff_ConfigRandom(t *testing.T) {
	want, got := diffTargets(t)
	qtest.Diff(t, scripts.PCIConfigRandom(rand.New(rand.NewPCG(1, 0xcf8)), 3000, []uint8{1 << 3}, nil), want, got)
}
