package scripts

import (
	"math/rand/v2"

	"godm/internal/qtest"
)

// The i8042's ports and interrupts (QEMU's "pc" machine and godm's xenfv
// platform both have it there).
const (
	I8042Data     = 0x60
	I8042Status   = 0x64
	KeyboardIRQ   = 1
	MouseIRQ      = 12
	i8042ResetCmd = 0xfe
)

func cmd(v uint64) qtest.Step  { return qtest.Out(I8042Status, v) }
func data(v uint64) qtest.Step { return qtest.Out(I8042Data, v) }
func st() qtest.Step           { return qtest.In(I8042Status) }
func rd() qtest.Step           { return qtest.In(I8042Data) }

// drain reads status and data n times.
func drain(n int) []qtest.Step {
	var s []qtest.Step
	for i := 0; i < n; i++ {
		s = append(s, st(), rd())
	}
	return append(s, st())
}

// I8042 returns the named command/status scripts for the i8042 at
// 0x60/0x64 (IRQ 1 and 12): self-test, command byte, interface tests,
// port enables, output-buffer writes, keyboard and mouse commands, the
// interrupt masks of the command byte, both devices pending and queue
// overflow. None pulses the reset line.
func I8042() map[string][]qtest.Step {
	return map[string][]qtest.Step{
		"defaults": {st(), rd(), st()},
		"self test and command byte": Cat(
			[]qtest.Step{cmd(0xaa)}, drain(1),
			[]qtest.Step{cmd(0x20)}, drain(1),
			[]qtest.Step{cmd(0x60), st(), data(0x47), st(), cmd(0x20)}, drain(1),
			[]qtest.Step{cmd(0x60), data(0x00), cmd(0x20), st(), rd(), st(), rd()},
		),
		"interface tests, ports and version": Cat(
			[]qtest.Step{cmd(0xab)}, drain(1), []qtest.Step{cmd(0xa9)}, drain(1),
			[]qtest.Step{cmd(0xc0)}, drain(1), []qtest.Step{cmd(0xd0)}, drain(1),
			[]qtest.Step{cmd(0xdd), cmd(0xd0)}, drain(1),
			[]qtest.Step{cmd(0xdf), cmd(0xd0)}, drain(1),
			[]qtest.Step{cmd(0xa1), st(), cmd(0x21), st(), cmd(0xf1), st(), cmd(0xff), st()},
		),
		"enable and disable ports": Cat(
			[]qtest.Step{cmd(0xad), cmd(0x20)}, drain(1),
			[]qtest.Step{cmd(0xa7), cmd(0x20)}, drain(1),
			[]qtest.Step{cmd(0xae), cmd(0xa8), cmd(0x20)}, drain(1),
		),
		"output buffer writes": Cat(
			[]qtest.Step{cmd(0xd2), data(0x12)}, drain(1),
			[]qtest.Step{cmd(0xd3), data(0x34)}, drain(1),
			[]qtest.Step{cmd(0xd2), data(0x56), cmd(0xd3), data(0x78)}, drain(2),
			[]qtest.Step{cmd(0x60), data(0x00), cmd(0xd3), data(0x9a), st(), rd(), cmd(0x60), data(0x03)}, drain(1),
		),
		"keyboard commands": Cat(
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
		"translated identify": Cat(
			[]qtest.Step{cmd(0x60), data(0x43), data(0xf2)}, drain(4),
			[]qtest.Step{data(0xf0), rd(), data(0x00)}, drain(2),
		),
		"keyboard reply supersedes unread reply": Cat(
			[]qtest.Step{data(0xf2), st(), data(0xee)}, drain(3),
		),
		"keyboard disabled holds its data": Cat(
			[]qtest.Step{cmd(0xad), data(0xf2), st(), rd(), st()}, drain(3),
			[]qtest.Step{cmd(0xad), cmd(0xd2), data(0x11)}, drain(1),
		),
		"mouse commands": Cat(
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
		"mouse interrupt masked by command byte": Cat(
			[]qtest.Step{cmd(0x60), data(0x01), cmd(0xd4), data(0xf2)}, drain(3),
			[]qtest.Step{cmd(0x60), data(0x02), cmd(0xa7), cmd(0xd4), data(0xf2)}, drain(3),
		),
		"keyboard and mouse both pending": Cat(
			[]qtest.Step{cmd(0xad), data(0xf2), cmd(0xd4), data(0xf2), st()}, drain(6),
		),
		"queue overflow": Cat(
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

// I8042Random returns a random command/data script of at least n steps
// that never pulses the reset line (0xfe would reboot QEMU's machine and
// reset every device; godm leaves the reboot to its reset requester).
func I8042Random(r *rand.Rand, n int) []qtest.Step {
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

// I8042Reset is the reset-line pulse (command 0xfe), which reboots the
// machine: QEMU resets itself, godm asks Xen for a reboot.
func I8042Reset() qtest.Step { return cmd(i8042ResetCmd) }
