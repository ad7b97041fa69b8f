package i8042

import (
	"errors"
	"math/rand/v2"
	"os/exec"
	"testing"

	"godm/devices"
	"godm/internal/qtest"
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

func cmd(v uint64) qtest.Step  { return qtest.Out(StatusPort, v) }
func data(v uint64) qtest.Step { return qtest.Out(DataPort, v) }
func st() qtest.Step           { return qtest.In(StatusPort) }
func rd() qtest.Step           { return qtest.In(DataPort) }

// drain reads status and data n times.
func drain(n int) []qtest.Step {
	var s []qtest.Step
	for i := 0; i < n; i++ {
		s = append(s, st(), rd())
	}
	return append(s, st())
}

func cat(parts ...[]qtest.Step) []qtest.Step {
	var s []qtest.Step
	for _, p := range parts {
		s = append(s, p...)
	}
	return s
}

func i8042Scripts() map[string][]qtest.Step {
	return map[string][]qtest.Step{
		"defaults": {st(), rd(), st()},
		"self test and command byte": cat(
			[]qtest.Step{cmd(0xaa)}, drain(1),
			[]qtest.Step{cmd(0x20)}, drain(1),
			[]qtest.Step{cmd(0x60), st(), data(0x47), st(), cmd(0x20)}, drain(1),
			[]qtest.Step{cmd(0x60), data(0x00), cmd(0x20), st(), rd(), st(), rd()},
		),
		"interface tests, ports and version": cat(
			[]qtest.Step{cmd(0xab)}, drain(1), []qtest.Step{cmd(0xa9)}, drain(1),
			[]qtest.Step{cmd(0xc0)}, drain(1), []qtest.Step{cmd(0xd0)}, drain(1),
			[]qtest.Step{cmd(0xdd), cmd(0xd0)}, drain(1),
			[]qtest.Step{cmd(0xdf), cmd(0xd0)}, drain(1),
			[]qtest.Step{cmd(0xa1), st(), cmd(0x21), st(), cmd(0xf1), st(), cmd(0xff), st()},
		),
		"enable and disable ports": cat(
			[]qtest.Step{cmd(0xad), cmd(0x20)}, drain(1),
			[]qtest.Step{cmd(0xa7), cmd(0x20)}, drain(1),
			[]qtest.Step{cmd(0xae), cmd(0xa8), cmd(0x20)}, drain(1),
		),
		"output buffer writes": cat(
			[]qtest.Step{cmd(0xd2), data(0x12)}, drain(1),
			[]qtest.Step{cmd(0xd3), data(0x34)}, drain(1),
			[]qtest.Step{cmd(0xd2), data(0x56), cmd(0xd3), data(0x78)}, drain(2),
			[]qtest.Step{cmd(0x60), data(0x00), cmd(0xd3), data(0x9a), st(), rd(), cmd(0x60), data(0x03)}, drain(1),
		),
		"keyboard commands": cat(
			[]qtest.Step{data(0xff)}, drain(3),
			[]qtest.Step{data(0xf2)}, drain(4),
			[]qtest.Step{data(0xed), st(), rd(), data(0x07)}, drain(1),
			[]qtest.Step{data(0xf0), rd(), data(0x00)}, drain(3),
			[]qtest.Step{data(0xf0), rd(), data(0x03), rd(), data(0xf0), rd(), data(0x00)}, drain(2),
			[]qtest.Step{data(0xf0), rd(), data(0x07)}, drain(1),
			[]qtest.Step{data(0xee)}, drain(1),
			[]qtest.Step{data(0xf5), rd(), data(0xf4), rd(), data(0xf6), rd(), data(0xf3), rd(), data(0x20)}, drain(1),
			[]qtest.Step{data(0x00), rd(), data(0x05), rd(), data(0x42), rd(), data(0xfa), rd(), data(0xfc), rd(), data(0x01)}, drain(1),
		),
		"translated identify": cat(
			[]qtest.Step{cmd(0x60), data(0x43), data(0xf2)}, drain(4),
			[]qtest.Step{data(0xf0), rd(), data(0x00)}, drain(2),
		),
		"keyboard reply supersedes unread reply": cat(
			[]qtest.Step{data(0xf2), st(), data(0xee)}, drain(3),
		),
		"keyboard disabled holds its data": cat(
			[]qtest.Step{cmd(0xad), data(0xf2), st(), rd(), st()}, drain(3),
			[]qtest.Step{cmd(0xad), cmd(0xd2), data(0x11)}, drain(1),
		),
		"mouse commands": cat(
			[]qtest.Step{cmd(0xd4), data(0xff)}, drain(4),
			[]qtest.Step{cmd(0xd4), data(0xf2)}, drain(3),
			[]qtest.Step{cmd(0xd4), data(0xe9)}, drain(5),
			[]qtest.Step{cmd(0xd4), data(0xf3), rd(), cmd(0xd4), data(200), rd(),
				cmd(0xd4), data(0xf3), rd(), cmd(0xd4), data(100), rd(),
				cmd(0xd4), data(0xf3), rd(), cmd(0xd4), data(80), rd(),
				cmd(0xd4), data(0xf2)}, drain(3),
			[]qtest.Step{cmd(0xd4), data(0xe8), rd(), cmd(0xd4), data(0x03), rd(), cmd(0xd4), data(0xe7), rd(),
				cmd(0xd4), data(0xf4), rd(), cmd(0xd4), data(0xf0), rd(), cmd(0xd4), data(0xe9)}, drain(5),
			[]qtest.Step{cmd(0xd4), data(0xeb)}, drain(6),
			[]qtest.Step{cmd(0xd4), data(0xee), rd(), cmd(0xd4), data(0x42), cmd(0xd4), data(0xec)}, drain(3),
			[]qtest.Step{cmd(0xd4), data(0xf6), cmd(0xd4), data(0xf5), cmd(0xd4), data(0xea), cmd(0xd4), data(0xe6), cmd(0xd4), data(0x99)}, drain(5),
		),
		"mouse interrupt masked by command byte": cat(
			[]qtest.Step{cmd(0x60), data(0x01), cmd(0xd4), data(0xf2)}, drain(3),
			[]qtest.Step{cmd(0x60), data(0x02), cmd(0xa7), cmd(0xd4), data(0xf2)}, drain(3),
		),
		"keyboard and mouse both pending": cat(
			[]qtest.Step{cmd(0xad), data(0xf2), cmd(0xd4), data(0xf2), st()}, drain(6),
		),
		"queue overflow": cat(
			[]qtest.Step{cmd(0xd4), data(0xee)},
			func() []qtest.Step {
				var s []qtest.Step
				for i := 0; i < 20; i++ {
					s = append(s, cmd(0xd4), data(uint64(i)), st())
				}
				return s
			}(),
			drain(18),
		),
	}
}

func TestQEMUDiff_I8042(t *testing.T) {
	for name, script := range i8042Scripts() {
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
			script := randomI8042Script(rand.New(rand.NewPCG(seed, 0x8042)), 1500)
			qtest.Diff(t, script, want, got)
		})
	}
}

func randomI8042Script(r *rand.Rand, n int) []qtest.Step {
	cmds := [...]uint64{0x20, 0x60, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xad, 0xae, 0xc0, 0xd0,
		0xd2, 0xd3, 0xd4, 0xd4, 0xd4, 0xdd, 0xdf, 0xff, 0xf1, 0x21, 0xa1}
	kbdBytes := [...]uint64{0x00, 0x05, 0xed, 0xee, 0xf0, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xfa, 0xfc, 0xff,
		0x01, 0x02, 0x03, 0x07}
	mouseBytes := [...]uint64{0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xeb, 0xec, 0xee, 0xf0, 0xf2, 0xf3, 0xf4,
		0xf5, 0xf6, 0xff, 200, 100, 80, 0x03}
	modes := [...]uint64{0x00, 0x01, 0x02, 0x03, 0x13, 0x23, 0x33, 0x43, 0x47, 0x61}
	var s []qtest.Step
	for len(s) < n {
		switch r.IntN(6) {
		case 0:
			c := cmds[r.IntN(len(cmds))]
			s = append(s, cmd(c))
			switch c {
			case 0x60:
				s = append(s, data(modes[r.IntN(len(modes))]))
			case 0xd2, 0xd3:
				s = append(s, data(uint64(r.IntN(256))))
			case 0xd4:
				s = append(s, data(mouseBytes[r.IntN(len(mouseBytes))]))
			}
		case 1:
			s = append(s, data(kbdBytes[r.IntN(len(kbdBytes))]))
		case 2, 3:
			s = append(s, st())
		default:
			s = append(s, rd())
		}
	}
	return s
}
