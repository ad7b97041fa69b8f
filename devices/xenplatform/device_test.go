package xenplatform

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"godm/devices"
	"godm/devices/devicetest"
	"godm/internal/testfake"
	"godm/pci"
)

type recorder struct {
	mu      sync.Mutex
	events  []string
	lines   []string
	romFail error
}

func (r *recorder) Unplug(mask UnplugMask) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf("unplug %#x", uint16(mask)))
	return nil
}

func (r *recorder) SetROMLock(locked bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf("rom locked=%v", locked))
	return r.romFail
}

func (r *recorder) PlatformLog(line []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, string(line))
}

func (r *recorder) take() ([]string, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, l := r.events, r.lines
	r.events, r.lines = nil, nil
	return e, l
}

type machine struct {
	spaces *devices.Bus
	dev    *Device
	rec    *recorder
	clock  *testfake.Clock
	sbdf   devices.SBDF
}

func newMachine(t testing.TB) *machine {
	t.Helper()
	m := &machine{spaces: devices.NewBus(), rec: &recorder{}, clock: &testfake.Clock{}}
	var err error
	m.dev, err = New(Config{Unplug: m.rec, ROM: m.rec, Log: m.rec, Clock: m.clock.Wall(time.Unix(1000, 0)), LogBurst: 2, LogInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	b, err := pci.NewBus(pci.BusConfig{Spaces: m.spaces})
	if err != nil {
		t.Fatal(err)
	}
	m.sbdf, err = m.dev.Attach(b, m.spaces.PIO)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestConfigHeader(t *testing.T) {
	m := newMachine(t)
	cfg := m.spaces.PCI
	for _, tc := range []struct {
		name string
		reg  uint32
		size uint8
		want uint64
	}{
		{"id", 0x00, 4, 0x00015853},
		{"command", pci.RegCommand, 2, 0},
		{"class+rev", 0x08, 4, 0xff800001},
		{"subsystem", pci.RegSubsystemVID, 4, 0x00015853},
		{"pin", pci.RegInterruptPin, 1, 1},
		{"bar0", pci.RegBAR0, 4, 1},
		{"bar1", pci.RegBAR0 + 4, 4, 0x8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cfg.Read(m.sbdf, tc.reg, tc.size, 0); got != tc.want {
				t.Errorf("read %#x/%d = %#x, want %#x", tc.reg, tc.size, got, tc.want)
			}
		})
	}
	cfg.Write(m.sbdf, pci.RegBAR0, 4, 0, 0xffffffff)
	cfg.Write(m.sbdf, pci.RegBAR0+4, 4, 0, 0xffffffff)
	if got := cfg.Read(m.sbdf, pci.RegBAR0, 4, 0); got != 0xffffff01 {
		t.Errorf("bar0 size mask = %#x", got)
	}
	if got := cfg.Read(m.sbdf, pci.RegBAR0+4, 4, 0); got != 0xff000008 {
		t.Errorf("bar1 size mask = %#x", got)
	}
}

func TestFixedPorts(t *testing.T) {
	m := newMachine(t)
	pio := m.spaces.PIO
	for _, tc := range []struct {
		name string
		port uint64
		size uint8
		want uint64
	}{
		{"magic", 0x10, 2, Magic},
		{"version", 0x12, 1, ProtocolVersion},
		{"flags", 0x10, 1, 0},
		{"dword", 0x10, 4, 0xffffffff},
		{"other byte", 0x11, 1, 0xff},
		{"other word", 0x12, 2, 0xffff},
		{"end", 0x1f, 1, 0xff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pio.Read(tc.port, tc.size, 0); got != tc.want {
				t.Errorf("in%d(%#x) = %#x, want %#x", tc.size, tc.port, got, tc.want)
			}
		})
	}
	// The protocol in order: product, build, unplug.
	pio.Write(0x12, 2, 0, 1)
	pio.Write(0x10, 4, 0, 0x1234)
	pio.Write(0x10, 2, 0, uint64(UnplugDisks|UnplugNICs))
	pio.Write(0x10, 2, 0, uint64(UnplugNVMe))
	if p, b := m.dev.DriverInfo(); p != 1 || b != 0x1234 {
		t.Errorf("DriverInfo = %d, %#x; want 1, 0x1234", p, b)
	}
	ev, _ := m.rec.take()
	if want := []string{"unplug 0x3", "unplug 0x8"}; !slices.Equal(ev, want) {
		t.Errorf("unplugs = %v, want %v", ev, want)
	}
	if got := m.dev.Unplugged(); got != UnplugDisks|UnplugNICs|UnplugNVMe {
		t.Errorf("Unplugged = %#x", got)
	}
	// ROM lock via the fixed port and via BAR0.
	pio.Write(0x10, 1, 0, 0xff)
	if got := pio.Read(0x10, 1, 0); got != FlagROMLock {
		t.Errorf("flags = %#x, want ROM lock", got)
	}
	m.rec.romFail = errors.New("set_mem_type failed")
	pio.Write(0x10, 1, 0, 0)
	if got := m.dev.Flags(); got != FlagROMLock {
		t.Errorf("flags after failed unlock = %#x, want unchanged", got)
	}
	m.rec.romFail = nil
	ev, _ = m.rec.take()
	if want := []string{"rom locked=true", "rom locked=false"}; !slices.Equal(ev, want) {
		t.Errorf("rom calls = %v, want %v", ev, want)
	}
	if got := m.dev.Stats().Errors; got != 1 {
		t.Errorf("Errors = %d, want 1", got)
	}
	m.dev.Reset()
	if ev, _ := m.rec.take(); !slices.Equal(ev, []string{"rom locked=false"}) || m.dev.Flags() != 0 {
		t.Errorf("reset: calls %v, flags %#x", ev, m.dev.Flags())
	}
	bl, err := New(Config{DriversBlacklisted: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := bl.FixedPorts().Read(devices.Access{Size: 2}); got != MagicBlacklisted {
		t.Errorf("blacklisted magic = %#x", got)
	}
}

func TestIOBAR(t *testing.T) {
	m := newMachine(t)
	cfg, pio := m.spaces.PCI, m.spaces.PIO
	cfg.Write(m.sbdf, pci.RegBAR0, 4, 0, 0xc000)
	cfg.Write(m.sbdf, pci.RegCommand, 2, 0, pci.CommandIO|pci.CommandMemory)
	pio.Write(0xc000, 1, 0, 1)
	if got := pio.Read(0xc000, 2, 0); got != 0xff01 {
		t.Errorf("bar0 word = %#x, want 0xff01", got)
	}
	for _, c := range []byte("hi\n") {
		pio.Write(0xc008, 1, 0, uint64(c))
	}
	_, lines := m.rec.take()
	if want := []string{"hi"}; !slices.Equal(lines, want) {
		t.Errorf("log = %q, want %q", lines, want)
	}
	// Pre-protocol unplug requests through BAR0 (old SUSE and VMDP).
	pio.Write(0xc004, 1, 0, 1)
	pio.Write(0xc004, 1, 0, 2) // ignored
	pio.Write(0xc008, 1, 0, 1)
	pio.Write(0xc008, 1, 0, 2)
	if ev, _ := m.rec.take(); !slices.Equal(ev, []string{"unplug 0x3", "unplug 0x1", "unplug 0x2"}) {
		t.Errorf("legacy unplugs = %v", ev)
	}
	cfg.Write(m.sbdf, pci.RegBAR0+4, 4, 0, 0xf0000000)
	if got := m.spaces.MMIO.Read(0xf0000010, 4, 0); got != 0 {
		t.Errorf("mmio read = %#x, want 0", got)
	}
	m.spaces.MMIO.Write(0xf0000004, 4, 0, 1)
	if got := m.dev.Stats().MMIOAccesses; got != 2 {
		t.Errorf("MMIOAccesses = %d, want 2", got)
	}
}

func TestLog(t *testing.T) {
	m := newMachine(t)
	pio := m.spaces.PIO
	say := func(s string) {
		for _, c := range []byte(s) {
			pio.Write(0x12, 1, 0, uint64(c))
		}
	}
	say("one\ntwo\x1b[0m\nthree\n") // burst of 2: the third is dropped
	m.clock.Advance(time.Second)
	say("four\n")
	m.clock.Advance(time.Second)
	// A full buffer flushes without a newline; the byte that found it
	// full is lost (log_writeb in xen_platform.c).
	say(strings.Repeat("x", 5000))
	m.clock.Advance(10 * time.Second)
	say("\n")
	_, lines := m.rec.take()
	want := []string{"one", "two.[0m", "four", strings.Repeat("x", logBufferSize-1), strings.Repeat("x", 5000-logBufferSize)}
	if !slices.Equal(lines, want) {
		t.Errorf("got %d lines, want %d: %.40q", len(lines), len(want), lines)
	}
	if got := m.dev.Stats(); got.LogLines != 5 || got.LogDropped != 1 {
		t.Errorf("LogLines, LogDropped = %d, %d; want 5, 1", got.LogLines, got.LogDropped)
	}
}

func TestConformance(t *testing.T) {
	newDev := func() *Device {
		d, err := New(Config{Unplug: &recorder{}, ROM: &recorder{}, Log: &recorder{}, Clock: (&testfake.Clock{}).Wall(time.Time{})})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	t.Run("config", func(t *testing.T) {
		devicetest.Run(t, func() devices.Handler { return newDev().Function() }, pci.ConfigSize)
	})
	t.Run("fixed", func(t *testing.T) {
		devicetest.Run(t, func() devices.Handler { return newDev().FixedPorts() }, FixedLen)
	})
	t.Run("iobar", func(t *testing.T) {
		devicetest.Run(t, func() devices.Handler { return &newDev().iobar }, IOBARSize)
	})
}

func TestZeroAlloc(t *testing.T) {
	m := newMachine(t)
	pio := m.spaces.PIO
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"magic", func() { _ = pio.Read(0x10, 2, 0) }},
		{"log byte", func() { pio.Write(0x12, 1, 0, 'a') }},
		{"log line dropped", func() { pio.Write(0x12, 1, 0, '\n') }},
	} {
		if got := testing.AllocsPerRun(100, tc.fn); got != 0 {
			t.Errorf("%s: allocs = %v, want 0", tc.name, got)
		}
	}
}

func FuzzFixedPorts(f *testing.F) {
	f.Add([]byte{0, 2, 0xd2, 0x49, 2, 1, 'a', 0, 2, 1, '\n', 0})
	f.Add([]byte{0, 2, 0x03, 0x00, 0, 4, 0x34, 0x12})
	f.Fuzz(func(t *testing.T, script []byte) {
		m := newMachine(t)
		pio := m.spaces.PIO
		for len(script) >= 4 {
			off, size, read := uint64(script[0]%FixedLen), []uint8{1, 2, 4}[script[1]%3], script[1]&0x80 != 0
			v := uint64(script[2]) | uint64(script[3])<<8
			script = script[4:]
			if read {
				_ = pio.Read(FixedPort+off, size, 0)
				continue
			}
			pio.Write(FixedPort+off, size, 0, v)
			m.clock.Advance(time.Millisecond)
		}
		if got := pio.Read(0x10, 2, 0); got != Magic {
			t.Fatalf("magic = %#x", got)
		}
		if got := m.dev.Flags(); got&^FlagROMLock != 0 {
			t.Fatalf("flags = %#x", got)
		}
		_, lines := m.rec.take()
		for _, l := range lines {
			if strings.ContainsAny(l, "\n\x00") || len(l) >= logBufferSize {
				t.Fatalf("bad log line %q", l)
			}
		}
	})
}
