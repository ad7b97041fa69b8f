package virtionet

import (
	"testing"

	"godm/netback"
)

// Frames between the guest and the back-end through the device, next to
// the back-end alone in the same run (as devices/e1000's benchmarks, so
// that `go test -bench . ./devices/e1000 ./devices/virtionet` puts the
// two NICs side by side). Frames are 1514 bytes; the driver is Linux's
// virtio_net with VERSION_1 semantics over the legacy registers (a
// 12-byte header, mergeable buffers). The kick is a direct handler call
// (the ioreq path is measured elsewhere).

const benchFrame = 1514

// BenchmarkBackendAlone is the floor: a frame taken from the back-end's
// pool, filled, transmitted and taken by the far side.
func BenchmarkBackendAlone(b *testing.B) {
	be := portBE{netback.NewPort(netback.PortConfig{Depth: 64})}
	defer be.Close()
	src := frame(testMAC, benchFrame, 1)
	b.SetBytes(benchFrame)
	b.ReportAllocs()
	for b.Loop() {
		f := be.TxFrame()
		f.SetLen(copy(f.Buf(), src))
		be.Transmit(f)
		be.TxQueue().Pop().Release()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

// BenchmarkTx: one chain (header and frame in one buffer, as Linux puts
// them) made available and kicked per frame; the chain is popped, the
// frame gathered into a pool frame and handed over, the used element
// written.
func BenchmarkTx(b *testing.B) {
	r := newRig(b, 64)
	r.legacy(fLegacyBase | FMrgRxBuf)
	r.put(bufBase, append(make([]byte, hdrMrg), frame(testMAC, benchFrame, 1)...))
	for i := range uint16(QueueSize) {
		r.desc(&r.tx, i, bufBase, hdrMrg+benchFrame, 0, 0)
	}
	b.SetBytes(benchFrame)
	b.ReportAllocs()
	for b.Loop() {
		r.publish(&r.tx, r.tx.avail%QueueSize)
		r.kick(TxQueue)
		r.be.TxQueue().Pop().Release()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

// BenchmarkRx: a frame from the back-end's queue into one mergeable
// buffer of 2048 bytes (header, frame, used element), the driver making
// the buffer available again. The worker is paused; the receive runs on
// the benchmark's goroutine.
func BenchmarkRx(b *testing.B) {
	r := newRig(b, 64)
	r.legacy(fLegacyBase | FMrgRxBuf)
	for i := range uint16(QueueSize) {
		r.desc(&r.rx, i, bufBase+0x10000, 2048, 2, 0)
	}
	r.d.Pause()
	defer r.d.Resume()
	src := frame(testMAC, benchFrame, 2)
	b.SetBytes(benchFrame)
	b.ReportAllocs()
	for b.Loop() {
		r.publish(&r.rx, r.rx.avail%QueueSize)
		f := r.be.Pool().Get()
		f.SetLen(copy(f.Buf(), src))
		r.be.Deliver(f)
		r.d.mu.Lock()
		r.d.rxLocked()
		r.d.mu.Unlock()
	}
	if r.d.Stats().RxFrames.Load() < uint64(b.N) {
		b.Fatalf("%d frames received of %d", r.d.Stats().RxFrames.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}
