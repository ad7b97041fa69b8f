package pci

import (
	"sync"
	"testing"

	"godm/devices"
	"godm/irq"
)

type msiMsg struct {
	addr uint64
	data uint32
}

// rig is a bus with recording interrupt sinks.
type rig struct {
	spaces *devices.Bus
	bus    *Bus

	mu     sync.Mutex
	msis   []msiMsg
	levels map[[3]uint8][]bool // (dev, fn, pin) -> levels sent
}

func (r *rig) INTx(dev, fn, pin uint8) irq.Line {
	key := [3]uint8{dev, fn, pin}
	return irq.LineFunc(func(high bool) {
		r.mu.Lock()
		r.levels[key] = append(r.levels[key], high)
		r.mu.Unlock()
	})
}

func (r *rig) SendMSI(addr uint64, data uint32) {
	r.mu.Lock()
	r.msis = append(r.msis, msiMsg{addr, data})
	r.mu.Unlock()
}

func (r *rig) takeMSIs() []msiMsg {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.msis
	r.msis = nil
	return m
}

func newRig(t testing.TB) *rig {
	t.Helper()
	r := &rig{spaces: devices.NewBus(), levels: map[[3]uint8][]bool{}}
	b, err := NewBus(BusConfig{Spaces: r.spaces, INTx: r, MSI: r})
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
