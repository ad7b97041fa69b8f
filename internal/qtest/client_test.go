package qtest

import (
	"errors"
	"os/exec"
	"testing"
)

// startQEMU starts a client or skips when the binary is absent (the test
// command installs it, so in CI these tests run).
func startQEMU(t *testing.T, args ...string) *Client {
	t.Helper()
	if _, err := Find(Options{}); errors.Is(err, exec.ErrNotFound) {
		t.Skipf("qemu-system-x86_64 not installed (scripts/test.sh installs qemu-system-x86): %v", err)
	}
	c, err := Start(Options{Args: args})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestClient_PCIHostBridge(t *testing.T) {
	c := startQEMU(t)
	if _, err := c.Out(0xcf8, 4, 0x80000000); err != nil {
		t.Fatal(err)
	}
	v, _, err := c.In(0xcfc, 4)
	if err != nil {
		t.Fatal(err)
	}
	// i440FX host bridge, 8086:1237 (ORACLES.md §2).
	if got, want := v, uint64(0x12378086); got != want {
		t.Errorf("PCI 00:00.0 id = %#x, want %#x", got, want)
	}
}

func TestClient_IRQAndFail(t *testing.T) {
	c := startQEMU(t, "-serial", "null")
	if err := c.InterceptIRQ("ioapic"); err != nil {
		t.Fatal(err)
	}
	ev, err := c.Out(0x3f9, 1, 0x02) // UART IER = THRE: the line rises
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ev, []IRQEvent{{Line: 4, High: true}}; len(got) != 1 || got[0] != want[0] {
		t.Errorf("events = %v, want %v", got, want)
	}
	if _, err := c.Command("no_such_command"); !errors.Is(err, ErrFailed) {
		t.Errorf("bogus command error = %v, want ErrFailed", err)
	}
	pid := c.PID()
	if pid <= 0 {
		t.Fatalf("PID = %d", pid)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestReplyValue(t *testing.T) {
	for _, tc := range []struct {
		words []string
		want  uint64
		ok    bool
	}{
		{[]string{"0x0041"}, 0x41, true},
		{[]string{"0xffffffff"}, 0xffffffff, true},
		{nil, 0, false},
		{[]string{"zz"}, 0, false},
	} {
		got, err := Reply{Words: tc.words}.Value()
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("Value(%q) = %#x, %v; want %#x, ok=%v", tc.words, got, err, tc.want, tc.ok)
		}
	}
}

func TestStepString(t *testing.T) {
	for _, tc := range []struct {
		s    Step
		want string
	}{
		{Out(0x3f8, 0x41), "outb 0x3f8 0x41"},
		{In(0x64), "inb 0x64"},
		{Step{Port: 0x3f8, Size: 4}, "inl 0x3f8"},
		{Step{Write: true, Port: 0x60, Size: 2, Value: 0x1234}, "outw 0x60 0x1234"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

func TestClient_Memory(t *testing.T) {
	c := startQEMU(t)
	for _, tc := range []struct {
		size uint8
		v    uint64
	}{{1, 0xab}, {2, 0xbeef}, {4, 0xdeadbeef}, {8, 0x0123456789abcdef}} {
		if _, err := c.WriteMem(0x1000, tc.size, tc.v); err != nil {
			t.Fatal(err)
		}
		got, _, err := c.ReadMem(0x1000, tc.size)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.v {
			t.Errorf("RAM size %d = %#x, want %#x", tc.size, got, tc.v)
		}
	}
	if _, _, err := c.ReadMem(0x1000, 3); err == nil {
		t.Error("ReadMem size 3 succeeded")
	}
}

func TestClient_SetIRQIn(t *testing.T) {
	c := startQEMU(t)
	if err := c.InterceptIRQ("ioapic"); err != nil {
		t.Fatal(err)
	}
	ev, err := c.SetIRQIn("ioapic", "unnamed-gpio-in", 10, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != 1 || ev[0] != (IRQEvent{Line: 10, High: true}) {
		t.Errorf("events = %v, want [raise 10]", ev)
	}
}
