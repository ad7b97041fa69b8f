package uart

import (
	"errors"
	"math/rand/v2"
	"os/exec"
	"testing"

	"godm/devices"
	"godm/internal/qtest"
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
	u := New(Config{IRQ: st.Line(4), Clock: &fakeClock{}})
	t.Cleanup(func() { u.Close() })
	if _, err := RegisterCOM(pio, 1, u); err != nil {
		t.Fatal(err)
	}
	return &qtest.QEMUTarget{C: c, Watch: []int{4}}, st
}

func out(off uint16, v uint64) qtest.Step { return qtest.Out(com1+off, v) }
func in(off uint16) qtest.Step            { return qtest.In(com1 + off) }

func why(s qtest.Step, reason string) qtest.Step { s.Why = reason; return s }

// readAll reads the eight registers (RBR and MSR have side effects, which
// are part of what is compared).
func readAll() []qtest.Step {
	return []qtest.Step{in(1), in(2), in(3), in(4), in(5), in(6), in(7), in(0)}
}

func cat(parts ...[]qtest.Step) []qtest.Step {
	var s []qtest.Step
	for _, p := range parts {
		s = append(s, p...)
	}
	return s
}

func uartScripts() map[string][]qtest.Step {
	return map[string][]qtest.Step{
		"defaults": readAll(),
		"scratch and LCR": {
			out(7, 0x55), in(7), out(7, 0xaa), in(7), out(3, 0x7f), in(3), out(3, 0x03), in(3),
		},
		"divisor latch": {
			out(3, 0x80), in(0), in(1), out(0, 0x01), out(1, 0x00), in(0), in(1),
			out(1, 0xff), in(1), out(3, 0x03), in(0), in(1), out(3, 0x80), in(1), out(3, 0),
		},
		"IER masks and THRE": {
			out(1, 0xff), in(1), in(2), in(2), out(1, 0), in(2), out(1, 0x02), in(2), in(5),
			out(0, 'A'), in(5), in(2), in(2), out(1, 0x00), out(1, 0x02), out(1, 0x02), in(2),
		},
		"FIFO enable and reset bits": {
			out(2, 0x01), in(2), out(2, 0x07), in(2), out(1, 0x02), in(2), in(5),
			out(2, 0xc1), in(2), out(2, 0x00), in(2), out(2, 0x08), in(2), out(2, 0x09), in(2),
		},
		"loopback MSR mapping": cat(
			[]qtest.Step{out(4, 0x10), in(6), out(4, 0x11), in(6), out(4, 0x12), in(6),
				out(4, 0x14), in(6), out(4, 0x18), in(6), out(4, 0x1f), in(6), in(4),
				out(4, 0x08), in(6), in(4)},
		),
		"loopback receive without FIFO": {
			out(4, 0x18), out(1, 0x01), out(0, 'x'), in(5), in(2), in(0), in(5), in(2),
			out(0, 'y'), out(0, 'z'), in(5), out(1, 0x05), in(2), in(5), in(2), in(0), in(5),
		},
		"loopback FIFO trigger levels": cat(
			[]qtest.Step{out(4, 0x18), out(1, 0x01)},
			trig(0x01, 2), trig(0x41, 5), trig(0x81, 9), trig(0xc1, 15),
		),
		"loopback FIFO overrun": cat(
			[]qtest.Step{out(4, 0x18), out(2, 0x07), out(1, 0x05)},
			repeat(out(0, 'o'), 17),
			[]qtest.Step{in(5), in(2), in(5), in(2)},
			repeat(in(0), 17),
			[]qtest.Step{in(5), in(2)},
		),
		"RX FIFO reset clears data": {
			out(4, 0x18), out(2, 0x01), out(1, 0x01), out(0, 1), out(0, 2), in(5), in(2),
			out(2, 0x03), in(5), in(2), in(0),
		},
		"all sources at once": {
			out(4, 0x18), out(2, 0x01), out(1, 0x0f), in(2), out(0, 'a'), in(2), in(2),
			out(4, 0x1b), in(6), in(2), in(0), in(2), in(6), out(4, 0x08), in(6), in(2),
		},
		"wide accesses": {
			out(7, 0x5a),
			qtest.Step{Port: com1, Size: 2}, qtest.Step{Port: com1 + 4, Size: 4},
			qtest.Step{Write: true, Port: com1 + 6, Size: 2, Value: 0x3311},
			in(7), qtest.Step{Port: com1 + 2, Size: 2},
			qtest.Step{Write: true, Port: com1, Size: 4, Value: 0x00030201},
			qtest.Step{Port: com1, Size: 4},
		},
		"MSR deltas outside loopback": {
			why(in(6), "QEMU: -serial null has no TIOCM: the lines stay at reset (CTS, DSR, DCD)"),
			out(1, 0x08), in(2), in(6),
		},
	}
}

// trig programs FCR=fcr, clears the FIFO and sends n bytes in loopback,
// sampling IIR and LSR as the FIFO fills around the trigger level.
func trig(fcr uint64, n int) []qtest.Step {
	s := []qtest.Step{out(2, fcr|0x02)}
	for i := 0; i < n; i++ {
		s = append(s, out(0, uint64(0x30+i)), in(2))
	}
	s = append(s, in(5))
	for i := 0; i < n; i++ {
		s = append(s, in(0), in(2))
	}
	return s
}

func repeat(s qtest.Step, n int) []qtest.Step {
	r := make([]qtest.Step, n)
	for i := range r {
		r[i] = s
	}
	return r
}

func TestQEMUDiff_UART(t *testing.T) {
	for name, script := range uartScripts() {
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
			script := randomUARTScript(rand.New(rand.NewPCG(seed, 0x16550)), 1500)
			if n := qtest.Diff(t, script, want, got); n > 0 {
				t.Logf("seed %d: %d mismatching steps", seed, n)
			}
		})
	}
}

func randomUARTScript(r *rand.Rand, n int) []qtest.Step {
	values := [...]uint64{0x00, 0x01, 0x02, 0x03, 0x05, 0x07, 0x08, 0x0f, 0x10, 0x11, 0x13, 0x18, 0x1f,
		0x41, 0x80, 0x81, 0x83, 0xc1, 0xc7, 0xff}
	s := make([]qtest.Step, 0, n)
	for len(s) < n {
		off := uint16(r.IntN(8))
		if r.IntN(10) == 0 {
			// A wide access inside the block: QEMU splits it into byte
			// accesses in ascending order, and so does godm.
			size := uint8(2 << r.IntN(2))
			st := qtest.Step{Write: r.IntN(2) == 0, Port: com1 + off&^uint16(size-1), Size: size}
			if st.Write {
				st.Value = values[r.IntN(len(values))] * 0x01010101 & (1<<(8*uint(size)) - 1) &^ 0x80808080
			}
			s = append(s, st)
			continue
		}
		if r.IntN(2) == 0 {
			v := values[r.IntN(len(values))]
			if off == 3 && r.IntN(4) != 0 {
				v &^= 0x80 // keep DLAB mostly clear so THR/IER get traffic
			}
			if off == 4 && r.IntN(3) != 0 {
				v |= 0x10 // mostly loopback: the only input QEMU has here
			}
			s = append(s, out(off, v))
		} else {
			s = append(s, in(off))
		}
	}
	return s
}
