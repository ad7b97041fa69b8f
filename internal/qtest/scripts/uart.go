package scripts

import (
	"math/rand/v2"

	"godm/internal/qtest"
)

// COM1 is the base port of the first ISA serial port (IRQ 4).
const COM1 = 0x3f8

// uart builds steps for the 16550 at base.
type uart uint16

func (u uart) out(off uint16, v uint64) qtest.Step { return qtest.Out(uint16(u)+off, v) }
func (u uart) in(off uint16) qtest.Step            { return qtest.In(uint16(u) + off) }

// readAll reads the eight registers (RBR and MSR have side effects, which
// are part of what is compared).
func (u uart) readAll() []qtest.Step {
	return []qtest.Step{u.in(1), u.in(2), u.in(3), u.in(4), u.in(5), u.in(6), u.in(7), u.in(0)}
}

// UART returns the named scripts for a 16550 at base (register
// defaults, scratch and LCR, the divisor latch, IER and THRE, FIFO
// control, loopback with and without FIFO, trigger levels, overrun, all
// interrupt sources at once, wide accesses). They expect the UART to
// have no input ("-serial null" in QEMU) and a clock that does not move
// (QEMU runs with -S).
func UART(base uint16) map[string][]qtest.Step {
	u := uart(base)
	out, in := u.out, u.in
	return map[string][]qtest.Step{
		"defaults": u.readAll(),
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
		"loopback MSR mapping": {
			out(4, 0x10), in(6), out(4, 0x11), in(6), out(4, 0x12), in(6),
			out(4, 0x14), in(6), out(4, 0x18), in(6), out(4, 0x1f), in(6), in(4),
			out(4, 0x08), in(6), in(4),
		},
		"loopback receive without FIFO": {
			out(4, 0x18), out(1, 0x01), out(0, 'x'), in(5), in(2), in(0), in(5), in(2),
			out(0, 'y'), out(0, 'z'), in(5), out(1, 0x05), in(2), in(5), in(2), in(0), in(5),
		},
		"loopback FIFO trigger levels": Cat(
			[]qtest.Step{out(4, 0x18), out(1, 0x01)},
			u.trig(0x01, 2), u.trig(0x41, 5), u.trig(0x81, 9), u.trig(0xc1, 15),
		),
		"loopback FIFO overrun": Cat(
			[]qtest.Step{out(4, 0x18), out(2, 0x07), out(1, 0x05)},
			Repeat(out(0, 'o'), 17),
			[]qtest.Step{in(5), in(2), in(5), in(2)},
			Repeat(in(0), 17),
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
			qtest.Step{Port: base, Size: 2}, qtest.Step{Port: base + 4, Size: 4},
			qtest.Step{Write: true, Port: base + 6, Size: 2, Value: 0x3311},
			in(7), qtest.Step{Port: base + 2, Size: 2},
			qtest.Step{Write: true, Port: base, Size: 4, Value: 0x00030201},
			qtest.Step{Port: base, Size: 4},
		},
		"MSR deltas outside loopback": {
			Why(in(6), "QEMU: -serial null has no TIOCM: the lines stay at reset (CTS, DSR, DCD)"),
			out(1, 0x08), in(2), in(6),
		},
	}
}

// trig programs FCR=fcr, clears the FIFO and sends n bytes in loopback,
// sampling IIR and LSR as the FIFO fills around the trigger level.
func (u uart) trig(fcr uint64, n int) []qtest.Step {
	s := []qtest.Step{u.out(2, fcr|0x02)}
	for i := 0; i < n; i++ {
		s = append(s, u.out(0, uint64(0x30+i)), u.in(2))
	}
	s = append(s, u.in(5))
	for i := 0; i < n; i++ {
		s = append(s, u.in(0), u.in(2))
	}
	return s
}

// UARTRandom returns a random access script of n steps for the 16550 at
// base: byte accesses to the 8 registers with values biased to
// meaningful bits, mostly in loopback (the only input QEMU has with
// "-serial null"), and some wide accesses inside the block.
func UARTRandom(r *rand.Rand, base uint16, n int) []qtest.Step {
	u := uart(base)
	values := [...]uint64{0x00, 0x01, 0x02, 0x03, 0x05, 0x07, 0x08, 0x0f, 0x10, 0x11, 0x13, 0x18, 0x1f,
		0x41, 0x80, 0x81, 0x83, 0xc1, 0xc7, 0xff}
	s := make([]qtest.Step, 0, n)
	for len(s) < n {
		off := uint16(r.IntN(8))
		if r.IntN(10) == 0 {
			// A wide access inside the block: QEMU splits it into byte
			// accesses in ascending order, and so does godm.
			size := uint8(2 << r.IntN(2))
			st := qtest.Step{Write: r.IntN(2) == 0, Port: base + off&^uint16(size-1), Size: size}
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
			s = append(s, u.out(off, v))
		} else {
			s = append(s, u.in(off))
		}
	}
	return s
}
