package i8042

import (
	"testing"

	"godm/devices"
	"godm/internal/testfake"
)

// A paused controller drops host input and holds its lines; a guest
// access that would raise IRQ 1 raises it only on Resume.
func TestPauseDropsInputHoldsLines(t *testing.T) {
	kbd := &testfake.Recorder{}
	c := New(Config{KeyboardIRQ: kbd})
	out := func(port uint64, v uint64) { c.Write(devices.Access{Addr: port, Size: 1}, v) }
	in := func(port uint64) uint64 { return c.Read(devices.Access{Addr: port, Size: 1}) }
	c.Pause()
	c.PutScancodes([]byte{0x1c})
	out(StatusPort, 0xaa) // self-test: its reply would raise IRQ 1
	if edges := kbd.Levels(); len(edges) != 0 {
		t.Errorf("lines moved while paused: %v", edges)
	}
	c.Resume()
	if edges := kbd.Levels(); len(edges) != 1 || !edges[0] {
		t.Fatalf("Resume: edges %v, want one rise", edges)
	}
	if got := in(DataPort); got != 0x55 {
		t.Errorf("data = %#x, want the self-test's 0x55", got)
	}
	if got := in(StatusPort); got&1 != 0 {
		t.Errorf("status %#x: the scancode given while paused was queued", got)
	}
}
