package ioreq

import "testing"

// BenchmarkDispatch measures one request through the worker's slot path
// (claim, dispatch, respond, notify) per request type, on allocation-free
// fakes: the cost godm adds per request, without the hypervisor.
func BenchmarkDispatch(b *testing.B) {
	for _, tc := range allocCases {
		b.Run(tc.name, func(b *testing.B) {
			rig := newAllocRig(b)
			s := rig.sp.Slot(1)
			b.ReportAllocs()
			for b.Loop() {
				post(s, tc.req)
				rig.w.poll()
				complete(s)
			}
		})
	}
}

// BenchmarkBufferedDrain measures draining a ring of 64 four-byte writes
// (per entry: ns/op divided by 64).
func BenchmarkBufferedDrain(b *testing.B) {
	rig := newAllocRig(b)
	b.ReportAllocs()
	for b.Loop() {
		for range 64 {
			rig.ring.send(TypeCopy, 4, 0xa0000, 1)
		}
		rig.ring.r.Drain(rig.w.d, rig.w.ringScratch, &rig.w.st)
	}
}

// BenchmarkIdlePoll measures one scan of 128 idle slots (what a spinning
// worker does between requests).
func BenchmarkIdlePoll(b *testing.B) {
	sp, err := NewSharedPage(newPage(b), MaxVCPUs)
	if err != nil {
		b.Fatal(err)
	}
	w := newWorker(NewDispatcher(Targets{}), &nopEvents{}, nil, WorkerConfig{})
	for i := range MaxVCPUs {
		w.addSlot(sp.Slot(i), uint32(i))
	}
	b.ReportAllocs()
	for b.Loop() {
		w.poll()
	}
}
