package uart

import (
	"testing"
	"time"

	"godm/devices"
	"godm/devices/devicetest"
	"godm/internal/testfake"
)

func TestUART_Conformance(t *testing.T) {
	devicetest.Run(t, func() devices.Handler {
		return New(Config{Clock: &testfake.Clock{}, Backend: &fakeBackend{}})
	}, Size)
}

// checkInvariants checks state that must hold between any two accesses.
func checkInvariants(t *testing.T, r *rig, step int) {
	t.Helper()
	u := r.u
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.rxCount < 0 || u.rxCount > fifoLen {
		t.Fatalf("step %d: rxCount = %d", step, u.rxCount)
	}
	if u.fcr&fcrFE != 0 {
		if got, want := u.lsr&lsrDR != 0, u.rxCount > 0; got != want {
			t.Fatalf("step %d: LSR.DR = %v with %d bytes in the FIFO", step, got, u.rxCount)
		}
		if u.iir&iirFIFO != iirFIFO {
			t.Fatalf("step %d: FIFO on but IIR = %#x", step, u.iir)
		}
	} else if u.iir&iirFIFO != 0 {
		t.Fatalf("step %d: FIFO off but IIR = %#x", step, u.iir)
	}
	if u.lsr&(lsrTHRE|lsrTEMT) != lsrTHRE|lsrTEMT {
		t.Fatalf("step %d: transmitter not empty between accesses: LSR = %#x", step, u.lsr)
	}
	if got, want := r.line.Level(), u.iir&iirNoInt == 0; got != want {
		t.Fatalf("step %d: IRQ line %v but IIR = %#x", step, got, u.iir)
	}
	if u.ier&^ierMask != 0 || u.mcr&^mcrMask != 0 || u.fcr&^fcrSticky != 0 {
		t.Fatalf("step %d: reserved bits set: IER %#x MCR %#x FCR %#x", step, u.ier, u.mcr, u.fcr)
	}
}

// FuzzUART interprets the input as a script of guest accesses and host
// events (two bytes per step) and checks invariants after each step.
func FuzzUART(f *testing.F) {
	f.Add([]byte{0x02, 0x01, 0x01, 0x0f, 0x04, 0x10, 0x00, 'a', 0x80, 0x00, 0x85, 0x00})
	f.Add([]byte{0x02, 0xc7, 0x01, 0x05, 0xc0, 'x', 0xc0, 'y', 0xd0, 0x04, 0x80, 0x00})
	f.Add([]byte{0x03, 0x80, 0x00, 0x01, 0x01, 0x00, 0x03, 0x03, 0xe0, 0x00, 0xf0, 0x00})
	f.Fuzz(func(t *testing.T, script []byte) {
		r := newRig(t)
		for i := 0; i+1 < len(script); i += 2 {
			op, v := script[i], script[i+1]
			off := uint64(op & 7)
			switch op >> 4 {
			case 0x0, 0x1, 0x2, 0x3: // write
				r.out(off, v)
			case 0x8, 0x9, 0xa, 0xb: // read
				r.in(off)
			case 0xc: // host input
				r.be.feed([]byte{v, v + 1, v + 2})
			case 0xd: // time passes
				r.clock.Advance(time.Duration(v) * time.Millisecond)
			case 0xe: // break
				r.u.SendBreak()
			case 0xf: // modem lines, reset, or a wide access
				switch v & 3 {
				case 0:
					r.u.SetModemLines(ModemLines{CTS: v&4 != 0, DSR: v&8 != 0, RI: v&16 != 0, DCD: v&32 != 0})
				case 1:
					r.u.Reset()
				case 2:
					r.u.Read(devices.Access{Offset: off, Size: 1 << (v >> 6)})
				case 3:
					r.u.Write(devices.Access{Offset: off, Size: 1 << (v >> 6)}, uint64(v)*0x0101010101010101)
				}
			default:
				r.u.Read(devices.Access{Offset: off + 8, Size: 1}) // outside the block
			}
			checkInvariants(t, r, i/2)
		}
	})
}
