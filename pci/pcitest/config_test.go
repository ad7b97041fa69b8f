package pcitest

import (
	"testing"

	"godm/devices"
	"godm/pci"
)

func newFunction(tb testing.TB) *pci.Device {
	tb.Helper()
	fn, err := pci.New(pci.Header{VendorID: 0x1234, DeviceID: 0x5678, InterruptPin: 1})
	if err != nil {
		tb.Fatal(err)
	}
	if err := fn.DefineRegister(0x40, 4, 0x12345678, 0x00ff00ff, 0xff000000); err != nil {
		tb.Fatal(err)
	}
	if err := fn.SetBAR(0, pci.BAR{Kind: pci.BARIO, Size: 0x40}); err != nil {
		tb.Fatal(err)
	}
	return fn
}

func TestLearnMasks(t *testing.T) {
	m := LearnMasks(t, func() (*pci.Device, func()) { return newFunction(t), nil })
	for _, tc := range []struct {
		off      uint32
		w, w1c   byte
		describe string
	}{
		{0x00, 0, 0, "vendor ID"},
		{0x04, 0x07, 0, "command: I/O, memory, master"},
		{0x05, 0x05, 0, "command: SERR, INTx disable"},
		{0x06, 0, 0, "status low: INTx status read-only"},
		{0x07, 0, 0xf9, "status high: error bits"},
		{0x0c, 0xff, 0, "cache line size"},
		{0x10, 0xc0, 0, "BAR0 low byte of a 64-byte I/O BAR"},
		{0x11, 0xff, 0, "BAR0 byte 1"},
		{0x3c, 0xff, 0, "interrupt line"},
		{0x3d, 0, 0, "interrupt pin"},
		{0x40, 0xff, 0, "defined register byte 0"},
		{0x41, 0, 0, "defined register byte 1"},
		{0x43, 0, 0xff, "defined register byte 3"},
		{0x80, 0, 0, "unused"},
	} {
		if got, got1 := m.Writable[tc.off], m.W1C[tc.off]; got != tc.w || got1 != tc.w1c {
			t.Errorf("%s [%#x]: writable %#02x w1c %#02x, want %#02x %#02x", tc.describe, tc.off, got, got1, tc.w, tc.w1c)
		}
	}
}

// brokenHandler stands in front of a function and corrupts one access
// kind, to show the checker notices.
type brokenHandler struct {
	fn   *pci.Device
	mode int
}

func (h *brokenHandler) Read(a devices.Access) uint64 {
	v := h.fn.Read(a)
	if h.mode == 1 && a.Offset == 0 {
		v ^= 1
	}
	return v
}

func (h *brokenHandler) Write(a devices.Access, v uint64) {
	h.fn.Write(a, v)
	if h.mode == 2 {
		h.fn.SetConfig(0, 1, 0x35) // clobbers the vendor ID
	}
}

type fatalRecorder struct {
	testing.TB
	failed bool
}

func (r *fatalRecorder) Helper() {}
func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.failed = true
	panic(r)
}

func TestConfigCheckerCatches(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode int
		step func(c *ConfigChecker, tb testing.TB)
		want bool
	}{
		{"good write", 0, func(c *ConfigChecker, tb testing.TB) { c.Write(tb, 0x40, 4, 0xffffffff) }, false},
		{"good read", 0, func(c *ConfigChecker, tb testing.TB) { c.Read(tb, 0x3e, 4) }, false},
		{"straddling miss", 0, func(c *ConfigChecker, tb testing.TB) { c.Write(tb, 0xffe, 4, 0) }, false},
		{"w1c", 0, func(c *ConfigChecker, tb testing.TB) { c.SetW1C(tb, ^uint64(0)); c.Write(tb, 0x42, 2, 0x0f00) }, false},
		{"read corrupted", 1, func(c *ConfigChecker, tb testing.TB) { c.Read(tb, 0, 2) }, true},
		{"write clobbers identity", 2, func(c *ConfigChecker, tb testing.TB) { c.Write(tb, 0x3c, 1, 5) }, true},
		{"identity check", 2, func(c *ConfigChecker, tb testing.TB) {
			c.cfg.Write(c.sbdf, 0x0c, 1, 0, 1)
			c.Check(tb)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fn := newFunction(t)
			cfg := devices.NewConfigSpace()
			sbdf := devices.NewSBDF(0, 0, 3, 0)
			if err := cfg.Register(sbdf, &brokenHandler{fn: fn, mode: tc.mode}); err != nil {
				t.Fatal(err)
			}
			m := LearnMasks(t, func() (*pci.Device, func()) { return newFunction(t), nil })
			c := NewConfigChecker(t, cfg, sbdf, fn, m, StatusINTx)
			r := &fatalRecorder{TB: t}
			func() {
				defer func() {
					if p := recover(); p != nil && p != r {
						panic(p)
					}
				}()
				tc.step(c, r)
			}()
			if r.failed != tc.want {
				t.Errorf("checker failed = %v, want %v", r.failed, tc.want)
			}
		})
	}
}

func TestStepsRoundTrip(t *testing.T) {
	in := []Step{
		{Op: 1, Off: 0x104, Size: 4, Val: 0xdeadbeef},
		{Op: 0xff, Off: 0x8003, Size: 8, Val: 1},
		{Op: 2, Off: 7, Size: 3, Val: 0},
		{Op: 3, Off: 0x3c, Size: 1, Val: 0x0b},
	}
	var got []Step
	for s := range Steps(append(Encode(in...), 1, 2, 3)) {
		got = append(got, s)
	}
	if len(got) != len(in) {
		t.Fatalf("decoded %d steps, want %d", len(got), len(in))
	}
	for i := range in {
		want := in[i]
		want.Val |= (want.Val ^ 0xa5a5a5a5) << 32
		if got[i] != want {
			t.Errorf("step %d = %+v, want %+v", i, got[i], want)
		}
	}
	for _, tc := range []struct {
		off  uint16
		want uint32
	}{{0, 0}, {0x107, 0x107}, {0x108, 0}, {0x8000, 0xff8}, {0x800f, 0x1007}} {
		if got := (Step{Off: tc.off}).ConfigOffset(); got != tc.want {
			t.Errorf("ConfigOffset(%#x) = %#x, want %#x", tc.off, got, tc.want)
		}
	}
}
