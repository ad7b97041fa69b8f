package uart

import (
	"errors"
	"math/rand/v2"
	"os/exec"
	"testing"

	"godm/devices"
	"godm/internal/qtest"
	"godm/internal/qtest/scripts"
	"godm/internal/testfake"
)

const com1 = 0x3f8

// diffTargets starts QEMU with a UART on COM1 (IRQ 4, "-serial null": no
// input, output discarded) and a godm UART on a port space with a frozen
// clock (QEMU runs with -S, so its virtual clock never moves either).
func diffTargets(t *testing.T) (want, got qtest.Target) {
	t.Helper()
	if _, err := qtest.Find(qtest.Options{}); errors.Is(err, exec.ErrNotFound) {
		t.Skipf("qemu-system-x86_64 not installed (scripts/test.sh installs qemu-system-x86): %v", err)
	}
	c, err := qtest.Start(qtest.Options{Args: []string{"-serial", "null"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.InterceptIRQ("ioapic"); err != nil {
		t.Fatal(err)
	}
	pio := devices.NewSpace("pio")
	st := qtest.NewSpaceTarget(pio)
	u := New(Config{IRQ: st.Line(4), Clock: &testfake.Clock{}})
	t.Cleanup(func() { u.Close() })
	if _, err := RegisterCOM(pio, 1, u); err != nil {
		t.Fatal(err)
	}
	return &qtest.QEMUTarget{C: c, Watch: []int{4}}, st
}

// TestQEMUDiff_UART runs the UART scripts (internal/qtest/scripts, shared
// with internal/machine's run of the same scripts through xensim vCPUs)
// on QEMU and on this package's UART.
func TestQEMUDiff_UART(t *testing.T) {
	for name, script := range scripts.UART(com1) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want, got := diffTargets(t)
			qtest.Diff(t, script, want, got)
		})
	}
}

// TestQEMUDiff_UARTRandom runs seeded random access scripts (byte
// accesses to the 8 registers, values biased to meaningful bits) through
// both models.
func TestQEMUDiff_UARTRandom(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run("seed", func(t *testing.T) {
			t.Parallel()
			want, got := diffTargets(t)
			script := scripts.UARTRandom(rand.New(rand.NewPCG(seed, 0x16550)), com1, 1500)
			if n := qtest.Diff(t, script, want, got); n > 0 {
				t.Logf("seed %d: %d mismatching steps", seed, n)
			}
		})
	}
}
