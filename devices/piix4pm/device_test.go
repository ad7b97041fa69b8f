package piix4pm

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"godm/devices"
	"godm/devices/devicetest"
	"godm/pci"
)

type recorder struct {
	mu     sync.Mutex
	events []string
	fail   error
}

func (r *recorder) log(format string, args ...any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
	return r.fail
}

func (r *recorder) RemoteShutdown(reason uint32) error { return r.log("shutdown %d", reason) }
func (r *recorder) SuspendToRAM() error                { return r.log("s3") }
func (r *recorder) EjectPCISlot(slot uint8) error      { return r.log("eject %d", slot) }
func (r *recorder) SetLevel(high bool)                 { _ = r.log("sci %v", high) }

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.events
	r.events = nil
	return e
}

type machine struct {
	spaces *devices.Bus
	dev    *Device
	rec    *recorder
	sbdf   devices.SBDF
}

func newMachine(t testing.TB) *machine {
	t.Helper()
	m := &machine{spaces: devices.NewBus(), rec: &recorder{}}
	var err error
	m.dev, err = New(Config{SCI: m.rec, Shutdown: m.rec, Suspend: m.rec, Eject: m.rec, RemovableSlots: 0xfffffff8, VCPUs: 10})
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

func TestConfigRegisters(t *testing.T) {
	m := newMachine(t)
	cfg := m.spaces.PCI
	if want := devices.NewSBDF(0, 0, 1, 3); m.sbdf != want {
		t.Errorf("SBDF = %v, want %v", m.sbdf, want)
	}
	// hvmloader's pci_setup for class 0x0680 (tools/firmware/hvmloader/pci.c).
	cfg.Write(m.sbdf, 0x20, 2, 0, 0)
	cfg.Write(m.sbdf, RegSMBHSTCFG, 2, 0, 0)
	cfg.Write(m.sbdf, 0x22, 2, 0, 0)
	cfg.Write(m.sbdf, pci.RegInterruptLine, 2, 0, 0x0009)
	cfg.Write(m.sbdf, 0x3d, 2, 0, 0x0001)
	cfg.Write(m.sbdf, RegPMBA, 4, 0, 0xb000|1)
	cfg.Write(m.sbdf, RegPMRegMisc, 1, 0, 1)
	for _, tc := range []struct {
		name string
		reg  uint32
		size uint8
		want uint64
	}{
		{"id", 0x00, 4, 0x71138086},
		{"status", pci.RegStatus, 2, 0x0280},
		{"class+rev", 0x08, 4, 0x06800003},
		{"line+pin", pci.RegInterruptLine, 2, 0x0109},
		{"pmba", RegPMBA, 4, 0xb001},
		{"pmregmisc", RegPMRegMisc, 1, 1},
		{"smbba", RegSMBBA, 4, 0xb101},
		{"smbus disabled by hvmloader", RegSMBHSTCFG, 1, 0},
		{"smm initialised", 0x5b, 1, 0x02},
		{"device resources", 0x5c, 4, 0x10000000},
		{"device resources 2", 0x60, 4, 0x60000000},
		{"subsystem", 0x2c, 4, 0x11001af4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cfg.Read(m.sbdf, tc.reg, tc.size, 0); got != tc.want {
				t.Errorf("read %#x/%d = %#x, want %#x", tc.reg, tc.size, got, tc.want)
			}
		})
	}
	// A system reset sets what QEMU's piix4_pm_reset sets (PMBA's low
	// byte, 0x58-0x5b, PMREGMISC) and keeps the rest (hw/acpi/piix4.c).
	m.dev.Reset()
	for _, tc := range []struct {
		what string
		reg  uint32
		size uint8
		want uint64
	}{
		{"SMBHSTCFG kept", RegSMBHSTCFG, 1, 0},
		{"PMBA low byte reset, high kept", RegPMBA, 4, 0xb001},
		{"PMREGMISC reset", RegPMRegMisc, 1, 0},
		{"0x5b reset", 0x5b, 1, 0x02},
	} {
		if got := cfg.Read(m.sbdf, tc.reg, tc.size, 0); got != tc.want {
			t.Errorf("%s: %#x after reset = %#x, want %#x", tc.what, tc.reg, got, tc.want)
		}
	}
	cfg.Write(m.sbdf, RegPMBA, 4, 0, 0xffffffff)
	if got := cfg.Read(m.sbdf, RegPMBA, 4, 0); got != 0xffffffff {
		t.Errorf("pmba after all-ones = %#x, want all-ones (QEMU's wmask)", got)
	}
}

func TestPM1Control(t *testing.T) {
	m := newMachine(t)
	pio := m.spaces.PIO
	if got := pio.Read(PM1aControlPort, 2, 0); got != pm1SCIEnable {
		t.Errorf("PM1a_CNT reset = %#x, want SCI_EN", got)
	}
	for _, tc := range []struct {
		name  string
		port  uint64
		size  uint8
		v     uint64
		calls []string
		read  uint64
	}{
		{"store slp_typ", PM1aControlPort, 2, 5<<10 | 1, nil, 5<<10 | 1},
		{"s5 poweroff", PM1aControlPort, 2, 1<<13 | 0<<10 | 1, []string{"shutdown 0"}, 1},
		{"s3 suspend", PM1aControlPort, 2, 1<<13 | 1<<10 | 1, []string{"s3"}, 1<<10 | 1},
		{"high byte write", PM1aControlPort + 1, 1, 0x20, []string{"shutdown 0"}, 1},
		{"undefined type", PM1aControlPort, 2, 1<<13 | 2<<10, nil, 2 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pio.Write(tc.port, tc.size, 0, tc.v)
			if got := m.rec.take(); !slices.Equal(got, tc.calls) {
				t.Errorf("calls = %v, want %v", got, tc.calls)
			}
			if got := pio.Read(PM1aControlPort, 2, 0); got != tc.read {
				t.Errorf("PM1a_CNT = %#x, want %#x", got, tc.read)
			}
		})
	}
	if got, want := m.dev.Stats(), (Stats{PowerOffs: 2, Suspends: 1, Errors: 1}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
	// Xen's registers are not claimed.
	for _, port := range []uint64{0xb000, 0xb002, 0xb008} {
		if got := pio.Read(port, 2, 0); got != 0xffff {
			t.Errorf("port %#x reads %#x, want a miss (Xen's)", port, got)
		}
	}
}

func TestGPEAndHotplug(t *testing.T) {
	m := newMachine(t)
	pio := m.spaces.PIO
	m.dev.PCIPlugged(5) // enable bit clear: no SCI yet
	if got := m.rec.take(); len(got) != 0 {
		t.Errorf("SCI raised with GPE disabled: %v", got)
	}
	if got := pio.Read(GPE0Port, 4, 0); got != GPEPCIHotplug {
		t.Errorf("GPE0 = %#x, want status bit 1", got)
	}
	pio.Write(GPE0Port+2, 2, 0, GPEPCIHotplug|GPECPUHotplug) // enable
	if got, want := m.rec.take(), []string{"sci true"}; !slices.Equal(got, want) {
		t.Errorf("after enable: %v, want %v", got, want)
	}
	// _E01: PCIU/PCID read as dwords, once per slot; reads do not clear.
	for range 3 {
		if got := pio.Read(HotplugPort, 4, 0); got != 1<<5 {
			t.Fatalf("PCIU = %#x, want slot 5", got)
		}
	}
	if got := pio.Read(HotplugPort+4, 4, 0); got != 0 {
		t.Errorf("PCID = %#x, want 0", got)
	}
	if got := pio.Read(HotplugPort+12, 4, 0); got != 0xfffffff8 {
		t.Errorf("RMV = %#x", got)
	}
	pio.Write(GPE0Port, 1, 0, 0xff) // W1C status
	if got, want := m.rec.take(), []string{"sci false"}; !slices.Equal(got, want) {
		t.Errorf("after clear: %v, want %v", got, want)
	}
	if got := pio.Read(GPE0Port, 4, 0); got != uint64(GPEPCIHotplug|GPECPUHotplug)<<16 {
		t.Errorf("GPE0 = %#x, want only enables", got)
	}
	// Unplug request, then the guest's _EJ0 writes B0EJ.
	m.dev.PCIUnplugRequest(5)
	if got := pio.Read(HotplugPort, 8, 0); got != (1<<5)<<32 {
		t.Errorf("PCIU|PCID = %#x, want slot 5 down", got)
	}
	pio.Write(HotplugPort+8, 4, 0, 1<<5|1<<7)
	if got, want := m.rec.take(), []string{"sci true", "eject 5", "eject 7"}; !slices.Equal(got, want) {
		t.Errorf("eject calls = %v, want %v", got, want)
	}
	if got := pio.Read(HotplugPort, 8, 0); got != 0 {
		t.Errorf("PCIU|PCID after eject = %#x", got)
	}
	if got := pio.Read(HotplugPort+8, 4, 0); got != 0 {
		t.Errorf("B0EJ reads %#x, want 0", got)
	}
	// CPU presence.
	if got := pio.Read(CPUPresentPort, 4, 0); got != 0x3ff {
		t.Errorf("PRST = %#x, want 10 CPUs", got)
	}
	pio.Write(GPE0Port, 2, 0, 0xffff)
	m.rec.take()
	m.dev.SetCPUPresent(10, true)
	m.dev.SetCPUPresent(10, true) // no change: no new event
	if got := pio.Read(CPUPresentPort+1, 1, 0); got != 0x07 {
		t.Errorf("PRST[1] = %#x, want 0x07", got)
	}
	if got, want := m.rec.take(), []string{"sci true"}; !slices.Equal(got, want) {
		t.Errorf("cpu event calls = %v, want %v", got, want)
	}
	// Debug port.
	pio.Write(DebugPort, 2, 0, 0x8802)
	if got := pio.Read(DebugPort, 4, 0); got != 0x8802 {
		t.Errorf("DG1 = %#x", got)
	}
	m.dev.Reset()
	if got := pio.Read(GPE0Port, 4, 0); got != 0 {
		t.Errorf("GPE0 after reset = %#x", got)
	}
	if got := pio.Read(CPUPresentPort, 2, 0); got != 0x7ff {
		t.Errorf("PRST after reset = %#x, want unchanged 0x7ff", got)
	}
}

func TestFailuresCounted(t *testing.T) {
	m := newMachine(t)
	m.rec.fail = errors.New("boom")
	m.spaces.PIO.Write(PM1aControlPort, 2, 0, 1<<13)
	m.spaces.PIO.Write(HotplugPort+8, 4, 0, 2)
	if got := m.dev.Stats().Errors; got != 2 {
		t.Errorf("Errors = %d, want 2", got)
	}
	d, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	_, _, h := d.Handler(kindPM1Cnt)
	h.Write(devices.Access{Size: 2}, 1<<13|1<<10)
	if got := d.Stats().Errors; got != 1 {
		t.Errorf("Errors without wiring = %d, want 1", got)
	}
	if _, err := New(Config{VCPUs: 257}); err == nil {
		t.Errorf("New with 257 VCPUs succeeded")
	}
}

func TestConformance(t *testing.T) {
	newDev := func() *Device {
		d, err := New(Config{VCPUs: 4, Shutdown: &recorder{}, Suspend: &recorder{}, Eject: &recorder{}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	t.Run("config", func(t *testing.T) {
		devicetest.Run(t, func() devices.Handler { return newDev().Function() }, pci.ConfigSize)
	})
	for i := range numKinds {
		_, size, _ := newDev().Handler(i)
		t.Run(fmt.Sprintf("ports%d", i), func(t *testing.T) {
			devicetest.Run(t, func() devices.Handler { _, _, h := newDev().Handler(i); return h }, size)
		})
	}
}

func TestZeroAlloc(t *testing.T) {
	m := newMachine(t)
	pio := m.spaces.PIO
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"gpe read", func() { _ = pio.Read(GPE0Port, 4, 0) }},
		{"gpe enable write", func() { pio.Write(GPE0Port+2, 2, 0, 0) }},
		{"pciu read", func() { _ = pio.Read(HotplugPort, 4, 0) }},
		{"pm1 cnt write", func() { pio.Write(PM1aControlPort, 2, 0, 1) }},
	} {
		if got := testing.AllocsPerRun(100, tc.fn); got != 0 {
			t.Errorf("%s: allocs = %v, want 0", tc.name, got)
		}
	}
}

func FuzzPorts(f *testing.F) {
	f.Add([]byte{0, 0, 2, 0, 0x20})
	f.Add([]byte{1, 2, 2, 0xff, 0xff, 2, 0, 4, 0x20, 0})
	f.Fuzz(func(t *testing.T, script []byte) {
		m := newMachine(t)
		ports := portRanges()
		for len(script) >= 5 {
			kind, off, size := int(script[0])%numKinds, uint64(script[1]), []uint8{1, 2, 4}[script[2]%3]
			v := uint64(script[3]) | uint64(script[4])<<8
			script = script[5:]
			p := ports[kind]
			addr := p.base + off%(p.size+2)
			if off&0x80 != 0 {
				_ = m.spaces.PIO.Read(addr, size, 0)
			} else {
				m.spaces.PIO.Write(addr, size, 0, v|v<<16)
			}
			if kind == kindHotplug && off&0x40 != 0 {
				m.dev.PCIPlugged(uint8(v))
				m.dev.PCIUnplugRequest(uint8(v >> 8))
			}
		}
		m.rec.take()
		// SCI must equal (status & enable) != 0.
		sts := m.spaces.PIO.Read(GPE0Port, 4, 0)
		m.dev.mu.Lock()
		sci := m.dev.sci
		m.dev.mu.Unlock()
		if want := sts&0xffff&(sts>>16) != 0; sci != want {
			t.Fatalf("SCI = %v with GPE0 %#x", sci, sts)
		}
		if got := m.spaces.PIO.Read(PM1aControlPort, 2, 0); got&pm1SleepEnable != 0 {
			t.Fatalf("SLP_EN reads back set: %#x", got)
		}
	})
}
