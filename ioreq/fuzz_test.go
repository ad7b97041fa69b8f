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

// FuzzRequest feeds arbitrary decoded requests to the dispatcher with a
// small scratch buffer (many chunks): it must not panic, and a read
// without data_is_ptr must be answered within its size.
func FuzzRequest(f *testing.F) {
	f.Add(uint64(0x3f8), uint64(0), uint32(1), uint32(1), uint8(0), true, false, false)
	f.Add(uint64(0xfebf0000), uint64(0x100ff8), uint32(300), uint32(8), uint8(1), true, true, true)
	f.Add(uint64(0x18)<<32|0xffc, uint64(0), uint32(1), uint32(4), uint8(2), true, false, false)
	f.Add(uint64(0), ^uint64(0)-3, uint32(4096), uint32(2), uint8(0), false, true, false)
	f.Fuzz(func(t *testing.T, addr, data uint64, count, size uint32, typ uint8, read, ptr, df bool) {
		d := fuzzDispatcher(t)
		var st Stats
		r := Request{Addr: addr, Data: data, Count: count, Size: size, Type: Type(typ), Read: read, DataIsPtr: ptr, DF: df}
		v, write := d.Handle(&r, make([]byte, 24), &st)
		if write != (read && !ptr && r.Type != TypeTimeOffset && r.Type != TypeInvalidate) {
			t.Fatalf("%+v: writeData = %v", r, write)
		}
		if write && (size == 1 || size == 2 || size == 4 || size == 8) && v&^devices.SizeMask(uint8(size)) != 0 &&
			(r.Type == TypePIO || r.Type == TypeCopy || r.Type == TypePCIConfig) {
			// Valid sizes answer within the size (bad sizes answer ~0).
			if !(r.Type != TypeCopy && size == 8) {
				t.Fatalf("%+v: answer %#x wider than %d bytes", r, v, size)
			}
		}
	})
}
