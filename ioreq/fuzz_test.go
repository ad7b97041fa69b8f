package ioreq

import (
	"bytes"
	"testing"

	"godm/devices"
)

// fuzzDispatcher routes to a small bus over allocation-free handlers and a
// 64 KiB RAM at 1 MiB, so fuzzed requests reach devices, RAM, holes and
// every fallback.
func fuzzDispatcher(t testing.TB) *Dispatcher {
	bus := devices.NewBus()
	for _, err := range []error{
		bus.PIO.Register(0x3f8, 8, &countHandler{}),
		bus.PIO.Register(0xcfc, 4, &countHandler{}),
		bus.MMIO.Register(0xfebf0000, 0x1000, &countHandler{}),
		bus.MMIO.Register(0xa0000, 0x20000, &countHandler{}),
		bus.PCI.Register(devices.NewSBDF(0, 0, 3, 0), &countHandler{}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return NewDispatcher(Targets{
		PIO: bus.PIO, MMIO: bus.MMIO, PCI: bus.PCI,
		Memory:     &sliceMem{base: 0x100000, mem: make([]byte, 1<<16)},
		Invalidate: func() {},
	})
}

// FuzzSharedPage feeds arbitrary 4 KiB ioreq pages (128 slots) to a
// worker's poll: every READY slot must end IORESP_READY with only its data
// and state changed; every other slot must be left alone.
func FuzzSharedPage(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		page := newPage(t)
		copy(page, data)
		before := append([]byte(nil), page...)
		sp, err := NewSharedPage(page, MaxVCPUs)
		if err != nil {
			t.Fatal(err)
		}
		w := newWorker(fuzzDispatcher(t), &nopEvents{}, nil, WorkerConfig{Spin: -1})
		ready := make([]bool, MaxVCPUs)
		for i := range MaxVCPUs {
			ready[i] = sp.Slot(i).Ready()
			w.addSlot(sp.Slot(i), uint32(i))
		}
		w.poll()
		for i := range MaxVCPUs {
			got, was := page[i*32:(i+1)*32], before[i*32:(i+1)*32]
			if !ready[i] {
				if !bytes.Equal(got, was) {
					t.Fatalf("slot %d was not READY but changed:\n% x\n% x", i, was, got)
				}
				continue
			}
			if st := sp.Slot(i).State(); st != StateRespReady {
				t.Fatalf("slot %d: state %d after poll, want IORESP_READY", i, st)
			}
			// addr, count, size, vp_eport, _pad0, type and the flag bits
			// other than state are Xen's.
			if !bytes.Equal(got[:8], was[:8]) || !bytes.Equal(got[16:30], was[16:30]) ||
				got[31] != was[31] || got[30]&^0xf != was[30]&^0xf {
				t.Fatalf("slot %d: Xen's fields changed:\n% x\n% x", i, was, got)
			}
		}
	})
}

// FuzzBufferedPage feeds arbitrary buffered iopages to one drain pass: it
// must not panic, must consume everything the pointers announce (or skip
// an impossible backlog), and must leave the ring empty.
func FuzzBufferedPage(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		page := newPage(t)
		copy(page, data)
		r, err := NewRing(page)
		if err != nil {
			t.Fatal(err)
		}
		var st Stats
		n, more := r.Drain(fuzzDispatcher(t), make([]byte, 64), &st)
		if more || !r.Empty() {
			t.Fatalf("ring not empty after a pass of %d entries", n)
		}
		if n < 0 {
			t.Fatalf("consumed %d", n)
		}
	})
}
