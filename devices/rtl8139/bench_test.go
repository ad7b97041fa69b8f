package rtl8139

import (
	"encoding/binary"
	"testing"

	"godm/devices"
	"godm/netback"
)

// Frames from the guest to the back-end through the device, next to the
// back-end alone in the same run: what the NIC model adds per frame. The
// far side (the test) takes each frame off the back-end's transmit queue
// as a back-end's writer would. Frames are 1514 bytes.

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

// BenchmarkTxNormal: 8139too's path, one TSD write per frame (the guest's
// register write is a direct handler call: the ioreq path is measured
// elsewhere).
func BenchmarkTxNormal(b *testing.B) {
	r := newRig(b, 64)
	r.wr(regChipCmd, 1, cmdTxEnb)
	r.poke(0x10000, frame(testMAC, benchFrame, 1))
	for n := range 4 {
		r.wr(regTxAddr0+4*uint8(n), 4, 0x10000)
	}
	rg := regs{r.d}
	n := uint64(0)
	b.SetBytes(benchFrame)
	b.ReportAllocs()
	for b.Loop() {
		rg.Write(devices.Access{Offset: regTxStatus0 + 4*(n%4), Size: 4}, benchFrame)
		n++
		r.be.TxQueue().Pop().Release()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

// BenchmarkTxCPlus: 8139cp's path, a descriptor handed over and TxPoll
// written per frame (the descriptor's OWN bit set again by the "guest").
func BenchmarkTxCPlus(b *testing.B) {
	r := newRig(b, 64)
	const ring = 0x30000
	r.wr(regCpCmd, 2, cpTxEnb)
	r.wr(regChipCmd, 1, cmdTxEnb)
	r.wr(regTxAddr0, 4, ring)
	r.poke(0x10000, frame(testMAC, benchFrame, 1))
	var desc [16]byte
	binary.LittleEndian.PutUint64(desc[8:], 0x10000)
	rg := regs{r.d}
	n := 0
	b.SetBytes(benchFrame)
	b.ReportAllocs()
	for b.Loop() {
		w0 := uint32(cpTxOwn | cpTxFS | cpTxLS | benchFrame)
		if n%cpTxRing == cpTxRing-1 {
			w0 |= cpTxEOR
		}
		binary.LittleEndian.PutUint32(desc[:], w0)
		r.poke(ring+uint64(16*(n%cpTxRing)), desc[:])
		rg.Write(devices.Access{Offset: regTxPoll, Size: 1}, 0x40)
		n++
		r.be.TxQueue().Pop().Release()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

// BenchmarkRxRing: a frame from the back-end into the normal-mode ring
// (header, frame, CRC), the driver's CAPR write freeing it.
func BenchmarkRxRing(b *testing.B) {
	r := newRig(b, 64)
	r.wr(regRxBuf, 4, 0x20000)
	r.wr(regRxConfig, 4, acceptMyPhys|1<<11|1<<12) // 64 KiB ring
	r.wr(regChipCmd, 1, cmdRxEnb)
	fr := frame(testMAC, benchFrame, 1)
	b.SetBytes(benchFrame)
	b.ReportAllocs()
	for b.Loop() {
		r.d.mu.Lock()
		r.d.receiveFrameLocked(fr, true)
		r.d.st.rxBufPtr = r.d.st.rxBufAddr
		r.d.mu.Unlock()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}
