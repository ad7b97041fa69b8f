package virtionet

import (
	"encoding/binary"
	"testing"

	"godm/devices/virtio"
)

// FuzzChains gives the device transmit, receive and control rings whose
// descriptors (addresses in and out of guest memory, any length, flags
// and next, indirect tables), avail entries and index come from the
// input, then runs the control commands, kicks the transmit queue and
// delivers a frame (the filter the commands set decides whether it is
// taken). The device
// either returns chains (never more than were made available, never a
// used length past the buffers, only Ethernet frames to the back-end) or
// breaks itself; it never hangs or crashes, and a reset brings it back.
func FuzzChains(f *testing.F) {
	// A good transmit chain (header, frame), a good receive buffer.
	good := func(l uint32, flags, next byte) []byte {
		return []byte{0, byte(l), byte(l >> 8), byte(l >> 16), byte(l >> 24), flags, next}
	}
	seed := append(append(good(12, 1, 1), good(60, 0, 0)...), good(2048, 2, 0)...)
	f.Add(byte(FMrgRxBuf>>8), uint16(100), []byte{1, 0, 1, 2}, seed)
	f.Add(byte(0), uint16(1514), []byte{1, 0, 1, 0}, append(good(0x20, 4, 0), good(4, 2, 0)...))
	f.Add(byte(0xff), uint16(60), []byte{3, 0, 1, 2, 2, 0}, append(good(12, 1, 0), good(1, 3, 0)...))
	r := newRig(f, 8)
	r.d.Pause() // receive runs on the fuzzing goroutine
	addrs := []uint64{bufBase, bufBase + 0x800, memSize - 8, 1 << 40, ^uint64(0) - 4, rxRing, txRing}
	f.Fuzz(func(t *testing.T, feat byte, flen uint16, avail []byte, descs []byte) {
		r.t = t
		r.out(18, 1, 0)
		for _, q := range []*ring{&r.tx, &r.rx} {
			q.avail, q.nextD = 0, 0
			r.put(q.base, make([]byte, 0x3000))
		}
		r.put(ctrlRing, make([]byte, 0x2000))
		features := uint32(fLegacyBase) | virtio.FIndirectDesc | FCtrlVQ | fCtrlRx
		if feat&1 != 0 {
			features |= FMrgRxBuf
		}
		if feat&2 != 0 {
			features |= virtio.FEventIdx
		}
		r.legacy(features)
		r.out(14, 2, CtrlQueue)
		r.out(8, 4, ctrlRing>>12)
		cq := &ring{base: ctrlRing}
		// Descriptors: 7 bytes each (address selector, length, flags,
		// next), the same table in both rings; an indirect table's
		// address points into the ring itself.
		n := 0
		for len(descs) >= 7 && n < 32 {
			a := addrs[int(descs[0])%len(addrs)]
			l := binary.LittleEndian.Uint32(descs[1:5])
			fl, nx := uint16(descs[5]&7), uint16(descs[6])
			r.desc(&r.tx, uint16(n), a, l, fl&^2, nx)
			r.desc(&r.rx, uint16(n), a, l, fl, nx)
			r.desc(cq, uint16(n), a, l, fl, nx)
			descs = descs[7:]
			n++
		}
		// Avail: the first byte is how far each index runs, the rest the
		// heads.
		if len(avail) == 0 {
			return
		}
		idx := uint16(avail[0])
		for i, h := range avail[1:] {
			if i >= QueueSize {
				break
			}
			for _, q := range []*ring{&r.tx, &r.rx} {
				if q.ar.Store16(4+2*i, uint16(h)) != nil {
					t.Fatal("avail ring")
				}
			}
		}
		for _, q := range []*ring{&r.tx, &r.rx} {
			if q.ar.Store16(2, idx) != nil {
				t.Fatal("avail index")
			}
		}
		// The control queue's avail ring (64 entries) at +0x400.
		for i, h := range avail[1:min(len(avail), 1+CtrlQueueSize)] {
			r.put(ctrlRing+0x400+4+2*uint64(i), []byte{h, 0})
		}
		r.put(ctrlRing+0x400+2, []byte{byte(idx), 0})
		r.d.mu.Lock()
		r.d.ctrlLocked()
		r.d.mu.Unlock()
		if u := binary.LittleEndian.Uint16(r.get(ctrlRing+0x1000+2, 2)); u > idx && !r.d.Transport().Broken() {
			t.Fatalf("control used index %d past avail %d", u, idx)
		}
		// The worker is paused (a kick would wait for it): transmit on
		// this goroutine.
		r.d.mu.Lock()
		r.d.txLocked()
		r.d.mu.Unlock()
		for {
			g := r.be.TxQueue().Pop()
			if g == nil {
				break
			}
			if l := len(g.Bytes()); l < 14 || l > r.be.MaxLen() {
				t.Fatalf("a %d-byte frame reached the back-end", l)
			}
			g.Release()
		}
		if r.be.Pool().Free() > 0 && r.be.RxQueue().Len() < 4 {
			r.deliver(frame(testMAC, 14+int(flen)%(1514-13), 1))
		}
		r.d.mu.Lock()
		r.d.rxLocked()
		r.d.mu.Unlock()
		for _, q := range []*ring{&r.tx, &r.rx} {
			if u := r.usedIdx(q); u > idx && !r.d.Transport().Broken() {
				t.Fatalf("used index %d past avail %d", u, idx)
			}
		}
		for i := range r.usedIdx(&r.rx) {
			if _, l := r.used(&r.rx, i); l > hdrMrg+1514 {
				t.Fatalf("used length %d for a frame of at most 1514 bytes", l)
			}
		}
		r.out(18, 1, 0)
		if r.d.Transport().Broken() {
			t.Fatal("reset left the device broken")
		}
		// Frames left in the back-end go, so the next input starts
		// clean.
		for g := r.be.RxPop(); g != nil; g = r.be.RxPop() {
			g.Release()
		}
	})
}
