package pci

import (
	"sync"
	"testing"

	"godm/devices"
	"godm/internal/testfake"
)

// rig is a bus with recording interrupt sinks.
type rig struct {
	spaces *devices.Bus
	bus    *Bus
	irq    *testfake.Recorder // MSIs, and the INTx pins as irq.Pin(dev, fn, pin)
}

// levels returns the levels sent on INTx pin (dev, fn, pin).
func (r *rig) levels(dev, fn, pin uint8) []bool { return r.irq.Pin(dev, fn, pin).Levels() }

func (r *rig) takeMSIs() []testfake.MSI { return r.irq.TakeMSIs() }

func newRig(t testing.TB) *rig {
	t.Helper()
	r := &rig{spaces: devices.NewBus(), irq: &testfake.Recorder{}}
	b, err := NewBus(BusConfig{Spaces: r.spaces, INTx: r.irq, MSI: r.irq})
	if err != nil {
		t.Fatalf("NewBus: %v", err)
	}
	r.bus = b
	return r
}

func (r *rig) cfgRead(sbdf devices.SBDF, reg uint32, size uint8) uint64 {
	return r.spaces.PCI.Read(sbdf, reg, size, 0)
}

func (r *rig) cfgWrite(sbdf devices.SBDF, reg uint32, size uint8, v uint64) {
	r.spaces.PCI.Write(sbdf, reg, size, 0, v)
}

// memHandler is a BAR handler backed by bytes.
type memHandler struct {
	mu  sync.Mutex
	mem []byte
}

func (m *memHandler) Read(a devices.Access) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return readBytes(m.mem, a.Offset, a.Size)
}

func (m *memHandler) Write(a devices.Access, v uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := uint64(0); i < uint64(a.Size); i++ {
		if o := a.Offset + i; o < uint64(len(m.mem)) {
			m.mem[o] = byte(v >> (8 * i))
		}
	}
}

func mustNew(t testing.TB, h Header) *Device {
	t.Helper()
	d, err := New(h)
	if err != nil {
		t.Fatalf("New(%+v): %v", h, err)
	}
	return d
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
