package i8042

import (
	"errors"
	"math/rand/v2"
	"os/exec"
	"testing"

	"godm/devices"
	"godm/internal/qtest"
	"godm/internal/qtest/scripts"
)

// diffTargets starts QEMU (whose "pc" machine always has an i8042 at
// 0x60/0x64 on IRQ 1 and 12) and a godm controller on a port space.
func diffTargets(t *testing.T) (want, got qtest.Target, resets *int) {
	t.Helper()
	if _, err := qtest.Find(qtest.Options{}); errors.Is(err, exec.ErrNotFound) {
		t.Skipf("qemu-system-x86_64 not installed (scripts/test.sh installs qemu-system-x86): %v", err)
	}
	c, err := qtest.Start(qtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.InterceptIRQ("ioapic"); err != nil {
		t.Fatal(err)
	}
	pio := devices.NewSpace("pio")
	st := qtest.NewSpaceTarget(pio)
	n := 0
	k := New(Config{KeyboardIRQ: st.Line(KeyboardIRQ), MouseIRQ: st.Line(MouseIRQ), Reset: ResetFunc(func() { n++ })})
	if err := Register(pio, k); err != nil {
		t.Fatal(err)
	}
	return &qtest.QEMUTarget{C: c, Watch: []int{KeyboardIRQ, MouseIRQ}}, st, &n
}

// TestQEMUDiff_I8042 runs the i8042 scripts (internal/qtest/scripts,
// shared with internal/machine's run of the same scripts through xensim
// vCPUs) on QEMU and on this package's controller.
func TestQEMUDiff_I8042(t *testing.T) {
	for name, script := range scripts.I8042() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want, got, _ := diffTargets(t)
			qtest.Diff(t, script, want, got)
		})
	}
}

// TestQEMUDiff_I8042Random runs seeded random command/data sequences that
// avoid the reset pulse (it would reboot QEMU's machine and reset every
// device, which godm leaves to its ResetRequester).
func TestQEMUDiff_I8042Random(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run("seed", func(t *testing.T) {
			t.Parallel()
			want, got, _ := diffTargets(t)
			script := scripts.I8042Random(rand.New(rand.NewPCG(seed, 0x8042)), 1500)
			qtest.Diff(t, script, want, got)
		})
	}
}
