package uart

import (
	"sync"
	"testing"

	"godm/devices"
	"godm/devices/chardev"
	"godm/internal/testfake"
)

// fakeBackend records output and lets the test feed input.
type fakeBackend struct {
	mu     sync.Mutex
	out    []byte
	limit  int // max buffered output; 0 = unlimited
	sink   chardev.Sink
	readys int
	// wire, if set, lets feed model the serial line: it moves time to
	// the receiver's next character slot and reports whether it did.
	wire func() bool
}

func (b *fakeBackend) Write(p []byte) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if b.limit > 0 && len(b.out)+n > b.limit {
		n = b.limit - len(b.out)
	}
	b.out = append(b.out, p[:n]...)
	return n
}

func (b *fakeBackend) Attach(s chardev.Sink) {
	b.mu.Lock()
	b.sink = s
	b.mu.Unlock()
}

func (b *fakeBackend) Ready() {
	b.mu.Lock()
	b.readys++
	b.mu.Unlock()
}

func (b *fakeBackend) Stats() chardev.Stats { return chardev.Stats{} }
func (b *fakeBackend) Close() error         { return nil }

// feed offers p to the attached sink and returns how much it took. With
// a wire it models the line carrying p: when the receiver refuses input
// only because the next character's slot has not come, time moves to that
// slot and the rest is offered again, so feed takes what the receiver has
// room for, at the line's pace.
func (b *fakeBackend) feed(p []byte) int {
	b.mu.Lock()
	s, wire := b.sink, b.wire
	b.mu.Unlock()
	if s == nil {
		return 0
	}
	n := s.Receive(p)
	for n < len(p) && wire != nil && wire() {
		n += s.Receive(p[n:])
	}
	return n
}

// toNextSlot advances c to u's next receive slot if u refused input for
// the line's pace (its slot timer then offers Ready), and reports whether
// it did.
func toNextSlot(u *UART, c *testfake.Clock) bool {
	u.mu.Lock()
	waiting, at := u.rxWaiting, u.rxNextAt
	u.mu.Unlock()
	if !waiting {
		return false
	}
	if now := c.Now(); at > now {
		c.Advance(at - now)
	} else {
		c.Advance(0)
	}
	return true
}

func (b *fakeBackend) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.out)
}

// rig is a UART with fakes around it.
type rig struct {
	t     *testing.T
	u     *UART
	line  *testfake.Recorder
	be    *fakeBackend
	clock *testfake.Clock
}

func newRig(t *testing.T) *rig {
	r := &rig{t: t, line: &testfake.Recorder{}, be: &fakeBackend{}, clock: &testfake.Clock{}}
	r.u = New(Config{IRQ: r.line, Backend: r.be, Clock: r.clock})
	r.be.wire = func() bool { return toNextSlot(r.u, r.clock) }
	t.Cleanup(func() { r.u.Close() })
	return r
}

func (r *rig) out(off uint64, v uint8) {
	r.u.Write(devices.Access{Addr: 0x3f8 + off, Offset: off, Size: 1}, uint64(v))
}

func (r *rig) in(off uint64) uint8 {
	return uint8(r.u.Read(devices.Access{Addr: 0x3f8 + off, Offset: off, Size: 1}))
}

// expect reads a register and checks its value.
func (r *rig) expect(off uint64, want uint8) {
	r.t.Helper()
	if got := r.in(off); got != want {
		r.t.Errorf("in(%d) = %#02x, want %#02x", off, got, want)
	}
}
