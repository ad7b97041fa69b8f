package e1000

import (
	"testing"

	"godm/netback"
)

// Frames from the guest to the back-end through the device, next to the
// back-end alone in the same run: what the NIC model adds per frame. The
// far side (the test) takes each frame off the back-end's transmit queue
// as a back-end's writer would. Frames are 1514 bytes. The guest's
// register write is a direct handler call (the ioreq path is measured
// elsewhere).

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

// BenchmarkTx: Linux's e1000 path for a frame without offloads, one
// legacy descriptor handed over by a TDT write, DD written back.
func BenchmarkTx(b *testing.B) {
	r := newRig(b, 64)
	const ring = 0x10000
	r.setupTx(ring, 64)
	r.poke(0x40000, frame(testMAC, benchFrame, 1))
	for i := range uint64(64) {
		r.poke(ring+16*i, txDesc(0x40000, benchFrame|txdEOP|txdRS, 0))
	}
	tail := uint32(0)
	b.SetBytes(benchFrame)
	b.ReportAllocs()
	for b.Loop() {
		tail = (tail + 1) % 64
		r.wr(regTDT, tail)
		r.be.TxQueue().Pop().Release()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

// BenchmarkTxTSO: a 64 KiB TCP send cut into 1448-byte segments (what
// Linux's e1000 hands over with TSO): bytes are the payload's.
func BenchmarkTxTSO(b *testing.B) {
	r := newRig(b, 64)
	const ring, payload, mss = 0x10000, 45 * 1448, 1448
	r.setupTx(ring, 64)
	r.poke(0x40000, tcpFrame(payload))
	r.poke(ring, ctxDesc(14, 24, 33, 34, 50, 0, txdTSE|txdIP|txdTCP|payload, 54, mss))
	r.poke(ring+16, txDesc(0x40000, (54+payload)|txdDEXT|txdDTYPD|txdTSE|txdEOP|txdRS, 3<<8))
	b.SetBytes(payload)
	b.ReportAllocs()
	for b.Loop() {
		r.wr(regTDH, 0)
		r.wr(regTDT, 2)
		for range 45 {
			r.be.TxQueue().Pop().Release()
		}
	}
	b.ReportMetric(float64(b.N)*45/b.Elapsed().Seconds(), "frames/s")
}

// BenchmarkRx: a frame from the back-end into the ring (descriptor read,
// buffer and descriptor written back), the driver's RDT write freeing it.
func BenchmarkRx(b *testing.B) {
	r := newRig(b, 64)
	r.setupRx(0x20000, 0x100000, 64, rctlEN|rctlUPE)
	fr := frame(testMAC, benchFrame, 1)
	b.SetBytes(benchFrame)
	b.ReportAllocs()
	for b.Loop() {
		r.d.mu.Lock()
		r.d.receiveFrameLocked(fr)
		r.d.st.r[ix(regRDT)] = (r.d.st.r[ix(regRDH)] + 63) % 64
		r.d.mu.Unlock()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}
