package uart

import (
	"testing"
	"time"

	"godm/devices"
	"godm/internal/testfake"
)

// A paused UART takes no host input and moves its interrupt line neither
// for input nor for the character timeout; Resume sends the level its
// state calls for and takes input again.
func TestPauseHoldsInputAndInterrupts(t *testing.T) {
	clk, line := &testfake.Clock{}, &testfake.Recorder{}
	u := New(Config{Clock: clk, IRQ: line})
	defer u.Close()
	w := func(off, v uint64) { u.Write(devices.Access{Addr: off, Offset: off, Size: 1}, v) }
	r := func(off uint64) uint64 { return u.Read(devices.Access{Addr: off, Offset: off, Size: 1}) }
	w(regIIR, 0x01) // FIFO on, trigger level 1
	w(regIER, 0x01) // received data interrupt
	if n := u.Receive([]byte{'a'}); n != 1 {
		t.Fatalf("Receive = %d", n)
	}
	w(regIER, 0x00)   // drop the line, keep the byte
	line.TakeLevels() // from here on, only what the pause lets through
	u.Pause()
	if n := u.Receive([]byte("bc")); n != 0 {
		t.Errorf("paused UART took %d bytes", n)
	}
	w(regIER, 0x01) // the guest's write is served (the line would rise)
	clk.Advance(time.Second)
	if edges := line.Levels(); len(edges) != 0 {
		t.Errorf("line moved while paused: %v", edges)
	}
	u.Resume()
	if edges := line.Levels(); len(edges) == 0 || !edges[len(edges)-1] {
		t.Errorf("Resume did not raise the line: %v", edges)
	}
	if got := r(regRBR); got != 'a' {
		t.Errorf("RBR = %#x, want 'a'", got)
	}
	if n := u.Receive([]byte("b")); n != 1 {
		t.Errorf("resumed UART took %d bytes", n)
	}
}
