package ioreq

import (
	"testing"

	"godm/devices"
	"godm/memory"
)

// sliceMem is an allocation-free guest memory for allocation tests: RAM at
// [base, base+len(mem)), unmapped elsewhere (a sentinel error).
type sliceMem struct {
	base uint64
	mem  []byte
}

func (m *sliceMem) span(gpa uint64, n int) (int, bool) {
	if gpa < m.base || gpa-m.base > uint64(len(m.mem)) || uint64(len(m.mem))-(gpa-m.base) < uint64(n) {
		return 0, false
	}
	return int(gpa - m.base), true
}

func (m *sliceMem) Read(gpa memory.GPA, p []byte) error {
	off, ok := m.span(uint64(gpa), len(p))
	if !ok {
		return memory.ErrUnmapped
	}
	copy(p, m.mem[off:])
	return nil
}

func (m *sliceMem) Write(gpa memory.GPA, p []byte) error {
	off, ok := m.span(uint64(gpa), len(p))
	if !ok {
		return memory.ErrUnmapped
	}
	copy(m.mem[off:], p)
	return nil
}

// allocRig is a worker over fakes that allocate nothing.
type allocRig struct {
	page []byte
	sp   *SharedPage
	ring *ringWriter
	w    *worker
	ev   *nopEvents
}

func newAllocRig(t testing.TB) *allocRig {
	page := newPage(t)
	sp, err := NewSharedPage(page, 2)
	if err != nil {
		t.Fatal(err)
	}
	rw := newRingWriter(t)
	bus := devices.NewBus()
	if err := bus.PCI.Register(devices.NewSBDF(0, 0, 2, 0), &countHandler{}); err != nil {
		t.Fatal(err)
	}
	d := NewDispatcher(Targets{
		PIO: &countSpace{}, MMIO: &countSpace{}, PCI: bus.PCI,
		Memory:     &sliceMem{base: 0x100000, mem: make([]byte, 1<<16)},
		Invalidate: func() {},
	})
	ev := &nopEvents{}
	w := newWorker(d, ev, rw.r, WorkerConfig{})
	w.addSlot(sp.Slot(0), 10)
	w.addSlot(sp.Slot(1), 11)
	return &allocRig{page: page, sp: sp, ring: rw, w: w, ev: ev}
}

// countHandler is an allocation-free devices.Handler.
type countHandler struct{ n uint64 }

func (h *countHandler) Read(a devices.Access) uint64 { h.n++; return 0x8086 }
func (h *countHandler) Write(devices.Access, uint64) { h.n++ }

var allocCases = []struct {
	name string
	req  Request
}{
	{"pio read", Request{Type: TypePIO, Addr: 0x3f8, Size: 1, Count: 1, Read: true}},
	{"pio write", Request{Type: TypePIO, Addr: 0x3f8, Size: 4, Count: 1, Data: 7}},
	{"pio rep ins", Request{Type: TypePIO, Addr: 0x1f0, Size: 2, Count: 256, Read: true, DataIsPtr: true, Data: 0x100000}},
	{"pio rep outs df", Request{Type: TypePIO, Addr: 0x1f0, Size: 4, Count: 64, DataIsPtr: true, DF: true, Data: 0x101000}},
	{"pio rep unmapped", Request{Type: TypePIO, Addr: 0x1f0, Size: 2, Count: 8, Read: true, DataIsPtr: true, Data: 0x10}},
	{"mmio read", Request{Type: TypeCopy, Addr: 0xfebf0000, Size: 8, Count: 1, Read: true}},
	{"mmio write", Request{Type: TypeCopy, Addr: 0xfebf0000, Size: 4, Count: 1, Data: 1}},
	{"mmio rep stos", Request{Type: TypeCopy, Addr: 0xfebf0000, Size: 4, Count: 16, Data: 1}},
	{"mmio movs to ram", Request{Type: TypeCopy, Addr: 0xfebf0000, Size: 8, Count: 1024, Read: true, DataIsPtr: true, Data: 0x100000}},
	{"mmio movs from ram df", Request{Type: TypeCopy, Addr: 0xfebf0000, Size: 1, Count: 4096, DataIsPtr: true, DF: true, Data: 0x10ffff}},
	{"pci read", Request{Type: TypePCIConfig, Addr: uint64(devices.NewSBDF(0, 0, 2, 0))<<32 | 0, Size: 4, Count: 1, Read: true}},
	{"pci write unclaimed", Request{Type: TypePCIConfig, Addr: uint64(devices.NewSBDF(0, 0, 9, 0))<<32 | 4, Size: 2, Count: 1, Data: 6}},
	{"pci bad reg", Request{Type: TypePCIConfig, Addr: 0x2000, Size: 4, Count: 1, Read: true}},
	{"timeoffset", Request{Type: TypeTimeOffset, Size: 8, Count: 1, Data: 5}},
	{"invalidate", Request{Type: TypeInvalidate, Size: 4, Count: 1, Data: ^uint64(0)}},
	{"bad type", Request{Type: 200, Size: 4, Count: 1, Read: true}},
	{"bad size", Request{Type: TypeCopy, Size: 3, Count: 1, Read: true}},
	{"bad count", Request{Type: TypePIO, Size: 1, Count: 0, Read: true}},
}

func TestZeroAllocPerRequest(t *testing.T) {
	rig := newAllocRig(t)
	s := rig.sp.Slot(1)
	for _, tc := range allocCases {
		t.Run(tc.name, func(t *testing.T) {
			before := rig.ev.notified.Load()
			allocs := testing.AllocsPerRun(200, func() {
				post(s, tc.req)
				if !rig.w.poll() {
					t.Fatal("poll found no request")
				}
				complete(s)
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per request, want 0", allocs)
			}
			if rig.ev.notified.Load() == before {
				t.Fatal("no notification sent")
			}
		})
	}
}

func TestZeroAllocBuffered(t *testing.T) {
	rig := newAllocRig(t)
	s := rig.sp.Slot(0)
	allocs := testing.AllocsPerRun(200, func() {
		rig.ring.send(TypeCopy, 2, 0xa0000, 1)
		rig.ring.send(TypeCopy, 8, 0xa0008, 1<<40)
		rig.ring.send(TypeTimeOffset, 8, 0, 1)
		post(s, Request{Type: TypePIO, Addr: 0x3f8, Size: 1, Count: 1, Read: true})
		rig.w.poll()
		complete(s)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per buffered batch, want 0", allocs)
	}
	if !rig.ring.r.Empty() {
		t.Fatal("ring not drained")
	}
}

func TestZeroAllocStatsSnapshot(t *testing.T) {
	rig := newAllocRig(t)
	var c Counters
	allocs := testing.AllocsPerRun(100, func() { rig.w.st.Snapshot(&c) })
	if allocs != 0 {
		t.Fatalf("Snapshot: %v allocations, want 0", allocs)
	}
}
