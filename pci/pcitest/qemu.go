package pcitest

import (
	"errors"
	"os/exec"
	"testing"

	"godm/devices"
	"godm/internal/qtest"
)

// QEMU is a stopped QEMU "pc" machine reached through qtest.
type QEMU struct {
	t *testing.T
	c *qtest.Client
}

// StartQEMU launches QEMU with extra arguments, or skips the test when
// QEMU is not installed. The machine is closed when the test ends.
func StartQEMU(t *testing.T, args ...string) *QEMU {
	t.Helper()
	if _, err := qtest.Find(qtest.Options{}); errors.Is(err, exec.ErrNotFound) {
		t.Skipf("qemu-system-x86_64 not installed: %v", err)
	}
	c, err := qtest.Start(qtest.Options{Args: args})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &QEMU{t: t, c: c}
}

func (q *QEMU) address(devfn uint8, reg uint32) {
	q.t.Helper()
	if _, err := q.c.Out(0xcf8, 4, uint64(0x80000000|uint32(devfn)<<8|reg&0xfc)); err != nil {
		q.t.Fatal(err)
	}
}

// Read returns the configuration dword at reg of bus 0, devfn.
func (q *QEMU) Read(devfn uint8, reg uint32) uint32 {
	q.t.Helper()
	q.address(devfn, reg)
	v, _, err := q.c.In(0xcfc, 4)
	if err != nil {
		q.t.Fatal(err)
	}
	return uint32(v)
}

// Write stores a configuration dword at reg of bus 0, devfn.
func (q *QEMU) Write(devfn uint8, reg uint32, v uint32) {
	q.t.Helper()
	q.address(devfn, reg)
	if _, err := q.c.Out(0xcfc, 4, uint64(v)); err != nil {
		q.t.Fatal(err)
	}
}

// CompareQEMU checks that the 256-byte configuration space of sbdf in cfg
// equals QEMU's devfn at reset and after an all-ones write to every dword
// (which shows the writable masks). ignore returns, per dword, the bits
// that may differ (documented deviations); nil ignores nothing. The BAR
// registers (0x10..0x27, 0x30) are not written.
func CompareQEMU(t *testing.T, q *QEMU, devfn uint8, cfg *devices.ConfigSpace, sbdf devices.SBDF, ignore func(reg uint32) uint32) {
	t.Helper()
	check := func(when string) {
		t.Helper()
		for reg := uint32(0); reg < 0x100; reg += 4 {
			var mask uint32
			if ignore != nil {
				mask = ignore(reg)
			}
			want := q.Read(devfn, reg) &^ mask
			if got := uint32(cfg.Read(sbdf, reg, 4, 0)) &^ mask; got != want {
				t.Errorf("%s: config[%#02x] = %#08x, QEMU %#08x", when, reg, got, want)
			}
		}
	}
	check("reset")
	for reg := uint32(0); reg < 0x100; reg += 4 {
		if (reg >= 0x10 && reg < 0x28) || reg == 0x30 {
			continue
		}
		q.Write(devfn, reg, 0xffffffff)
		cfg.Write(sbdf, reg, 4, 0, 0xffffffff)
	}
	check("after all-ones writes")
}
