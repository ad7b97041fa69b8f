package uart

import (
	"bytes"
	"testing"
	"time"
)

// setLine programs the divisor and LCR as a guest driver does.
func (r *rig) setLine(divisor uint16, lcr uint8) {
	r.out(regLCR, lcrDLAB)
	r.out(regRBR, uint8(divisor))
	r.out(regIER, uint8(divisor>>8))
	r.out(regLCR, lcr)
}

// TestUART_RxPace: host input enters the receiver one character per frame
// time of the programmed line, however much the host offers.
func TestUART_RxPace(t *testing.T) {
	for _, tc := range []struct {
		name    string
		divisor uint16
		lcr     uint8
		bits    int // start + data + parity + stop
	}{
		{"115200 8N1", 1, 0x03, 10},
		{"9600 8N1", 12, 0x03, 10},
		{"9600 7E2", 12, 0x02 | lcrParity | lcrStop2 | 0x10, 1 + 7 + 1 + 2},
		{"38400 5N1", 3, 0x00, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.be.wire = nil     // this test is the wire
			r.out(regIIR, 0xc1) // FIFO, trigger 14
			r.setLine(tc.divisor, tc.lcr)
			frame := time.Duration(int64(time.Second)/int64(DefaultBaudBase/uint32(tc.divisor))) * time.Duration(tc.bits)
			flood := bytes.Repeat([]byte{'x'}, 64)
			if got := r.u.Receive(flood); got != 1 {
				t.Fatalf("idle line: first offer took %d, want 1", got)
			}
			if got := r.u.Receive(flood); got != 0 {
				t.Fatalf("offer before the next slot took %d, want 0", got)
			}
			readys := r.be.readys
			r.clock.Advance(frame - 1)
			if r.be.readys != readys || r.u.Receive(flood) != 0 {
				t.Fatalf("a character was taken (or Ready sent) one nanosecond before its slot")
			}
			r.clock.Advance(1)
			if r.be.readys != readys+1 {
				t.Fatalf("no Ready at the slot (%d readys, want %d)", r.be.readys, readys+1)
			}
			if got := r.u.Receive(flood); got != 1 {
				t.Fatalf("offer at the slot took %d, want 1", got)
			}
			// A continuous offer over many frames: one character per
			// frame, plus at most one of catch-up after a late wake-up.
			const frames = 12
			took := 0
			for range frames {
				r.clock.Advance(frame)
				took += r.u.Receive(flood)
			}
			if took != frames {
				t.Errorf("took %d characters in %d frames, want %d", took, frames, frames)
			}
			r.in(regRBR)                // room again
			r.clock.Advance(10 * frame) // a sleepy timer: 10 frames late
			if got := r.u.Receive(flood); got < 1 || got > 2 {
				t.Errorf("after 10 idle frames the offer took %d, want 1 or 2 (no credit for idle time)", got)
			}
			if r.u.Stats().RxPaced == 0 {
				t.Error("RxPaced counter never counted a refused offer")
			}
		})
	}
}

// TestUART_FloodDoesNotHoldTheGuest is the livelock of issue 19: a guest
// whose every register access takes 66 µs (an ioreq round trip through a
// proxy) runs Linux's 8250 receive loop (read RBR, read LSR, until LSR.DR
// is clear) while the host floods the port. With the receiver refilled at
// the guest's own pace the loop never ends; paced at the line rate (9600
// 8N1: 1.04 ms per character) it ends after the characters that arrived
// meanwhile.
func TestUART_FloodDoesNotHoldTheGuest(t *testing.T) {
	r := newRig(t)
	r.be.wire = nil
	const access = 66 * time.Microsecond
	r.out(regIIR, 0xc1)
	r.out(regIER, ierRDI)
	flood := bytes.Repeat([]byte{'y'}, 1<<20)
	off := 0
	offer := func() { off += r.u.Receive(flood[off:]) }
	// The backend offers again at every Ready: model it by offering
	// after every access and every clock step.
	slow := func(f func()) {
		f()
		r.clock.Advance(access)
		offer()
	}
	offer()
	r.clock.Advance(20 * time.Millisecond) // let the FIFO fill up to trigger level and beyond
	for range 40 {
		r.clock.Advance(time.Millisecond)
		offer()
	}
	if !r.line.Level() {
		t.Fatal("no receive interrupt with a full FIFO")
	}
	// The interrupt handler.
	iterations := 0
	for {
		slow(func() { r.in(regRBR) })
		var lsr uint8
		slow(func() { lsr = r.in(regLSR) })
		iterations++
		if lsr&lsrDR == 0 {
			break
		}
		if iterations > 1000 {
			t.Fatalf("the guest's receive loop still finds data after %d characters: the flood holds its CPU", iterations)
		}
	}
	// Each character costs the guest 132 µs of accesses, the line brings
	// one per 1.04 ms: the FIFO's 16 plus the few that arrived meanwhile.
	if iterations > 20 {
		t.Errorf("the receive loop read %d characters, want at most 20", iterations)
	}
	t.Logf("receive loop ended after %d characters; %d of %d host bytes taken", iterations, off, len(flood))
}

// TestUART_RxPaceResetAndClose: Reset forgets the line's schedule, and a
// slot timer firing after Close does nothing.
func TestUART_RxPaceResetAndClose(t *testing.T) {
	r := newRig(t)
	r.be.wire = nil
	r.out(regIIR, 0xc1)
	in := []byte("ab")
	if r.u.Receive(in) != 1 {
		t.Fatal("first byte not taken")
	}
	r.u.Reset()
	r.out(regIIR, 0xc1)
	if got := r.u.Receive(in[1:]); got != 1 {
		t.Errorf("after Reset the idle line took %d, want 1", got)
	}
	if r.u.Receive(in) != 0 {
		t.Fatal("paced offer taken")
	}
	readys := r.be.readys
	r.u.Close()
	r.clock.Advance(time.Second)
	if r.be.readys != readys {
		t.Error("the slot timer offered Ready after Close")
	}
}
