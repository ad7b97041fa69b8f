package devicetest_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"godm/devices"
	"godm/devices/devicetest"
)

// regs is a well-behaved device: 16 byte registers, little-endian
// multi-byte access, a reset that clears them.
type regs struct{ r [16]byte }

func (d *regs) Read(a devices.Access) uint64 {
	var v uint64
	for i := range uint64(a.Size) {
		if a.Offset+i < uint64(len(d.r)) {
			v |= uint64(d.r[a.Offset+i]) << (8 * i)
		}
	}
	return v
}

func (d *regs) Write(a devices.Access, v uint64) {
	for i := range uint64(a.Size) {
		if a.Offset+i < uint64(len(d.r)) {
			d.r[a.Offset+i] = byte(v >> (8 * i))
		}
	}
}

func (d *regs) Reset() { d.r = [16]byte{} }

// closer counts Close calls.
type closer struct {
	regs
	closed *int
}

func (c *closer) Close() error { *c.closed++; return nil }

func TestRun_ClosesDevices(t *testing.T) {
	n, closed := 0, 0
	t.Run("run", func(t *testing.T) {
		devicetest.Run(t, func() devices.Handler { n++; return &closer{closed: &closed} }, 4)
	})
	if n == 0 || closed != n {
		t.Errorf("made %d devices, closed %d", n, closed)
	}
}

func TestRun_GoodDevice(t *testing.T) {
	devicetest.Run(t, func() devices.Handler { return &regs{} }, 16)
	devicetest.Run(t, func() devices.Handler { return devices.Locked(&regs{}) }, 16)
}

type unmasked struct{ regs }

func (d *unmasked) Read(devices.Access) uint64 { return ^uint64(0) }

// panicky indexes its registers without bounds checks.
type panicky struct{ regs }

func (d *panicky) Read(a devices.Access) uint64 { return uint64(d.r[a.Offset+uint64(a.Size)-1]) }

// sticky forgets to reset all but its first register.
type sticky struct{ regs }

func (d *sticky) Reset() { d.r[0] = 0 }

// badDevices are devices Run must fail, with a word of the expected report.
var badDevices = map[string]struct {
	h    func() devices.Handler
	size uint64
	want string
}{
	"unmasked": {func() devices.Handler { return &unmasked{} }, 8, "has bits above size"},
	"sticky":   {func() devices.Handler { return &sticky{} }, 8, "depends on history"},
	"panicky":  {func() devices.Handler { return &panicky{} }, 64, "panicked"},
}

// TestRun_BadDevices checks that Run detects each defect. Run takes a real
// *testing.T, so each bad device runs in a child test process (selected by
// an environment variable) whose failure and output are checked here.
func TestRun_BadDevices(t *testing.T) {
	if name := os.Getenv("DEVICETEST_BAD"); name != "" {
		b := badDevices[name]
		devicetest.Run(t, b.h, b.size)
		return
	}
	for name, b := range badDevices {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestRun_BadDevices$", "-test.count=1")
			cmd.Env = append(os.Environ(), "DEVICETEST_BAD="+name)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("Run passed a %s device; output:\n%s", name, out)
			}
			if !strings.Contains(string(out), b.want) {
				t.Errorf("Run on a %s device: output lacks %q:\n%s", name, b.want, out)
			}
		})
	}
}
