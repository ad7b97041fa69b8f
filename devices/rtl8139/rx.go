package rtl8139

import (
	"encoding/binary"
	"hash/crc32"

	"godm/devices/nic"
	"godm/netback"
)

// C+ receive descriptor bits (QEMU CP_RX_*; RTL8139C+ datasheet, receive
// descriptor format).
const (
	cpRxOwn    = 1 << 31
	cpRxEOR    = 1 << 30
	cpRxFS     = 1 << 29
	cpRxLS     = 1 << 28
	cpRxMAR    = 1 << 26
	cpRxPAM    = 1 << 25
	cpRxBAR    = 1 << 24
	cpRxSize   = 1<<13 - 1
	cpRxTAVA   = 1 << 16
	cpRxVLANMk = 0xffff
)

// receiveLocked hands the guest the frames waiting in the back-end, as
// many as it has room for (QEMU's can_receive decides when to stop).
// Bounded: each pass takes one frame off a bounded queue.
func (d *Device) receiveLocked() {
	if d.be == nil {
		return
	}
	for n := 0; n < 2*netback.DefaultDepth; n++ {
		f := d.be.RxPeek()
		if f == nil || !d.canReceiveLocked() {
			return
		}
		if d.st.linkDown {
			// No cable: QEMU's net layer delivers nothing to a NIC whose
			// link is down (net/net.c qemu_deliver_packet_iov).
			d.stats.RxMissed.Add(1)
			if g := d.be.RxPop(); g != nil {
				g.Release()
			}
			continue
		}
		b := f.Bytes()
		if f.Hdr.Flags&netback.VnetFlagNeedsCsum != 0 {
			finishCsum(b, int(f.Hdr.CsumStart), int(f.Hdr.CsumOffset))
		}
		if len(b) > netback.MaxFrame {
			d.stats.RxTooLong.Add(1)
		} else {
			d.receiveFrameLocked(b, true)
		}
		if g := d.be.RxPop(); g != nil {
			g.Release()
		}
	}
}

// canReceiveLocked is QEMU's rtl8139_can_receive: frames are taken (and
// dropped) while the receiver is off; in C+ mode always; in normal mode
// while the ring has room for a full frame (or RxOverflow is unmasked:
// then a frame that does not fit is dropped with that interrupt).
func (d *Device) canReceiveLocked() bool {
	s := &d.st
	if !s.clockEnabled || s.cmd&cmdRxEnb == 0 {
		return true
	}
	if s.cpCmd&cpRxEnb != 0 && s.cpRxValid() {
		return true
	}
	avail := (s.rxBufSize + s.rxBufPtr - s.rxBufAddr) & (s.rxBufSize - 1)
	return avail == 0 || avail >= 1514 || s.imr&IntRxOverflow != 0
}

// cpRxValid: Linux enables the receiver before it writes the ring's
// address (QEMU rtl8139_cp_rx_valid).
func (s *state) cpRxValid() bool { return s.rxRingLo != 0 || s.rxRingHi != 0 }

// mcastIndex is the multicast hash filter's bit for a destination: the
// top six bits of the big-endian (MSB-first) Ethernet CRC-32 of the
// address (QEMU compute_mcast_idx / net_crc32; Linux ether_crc >> 26).
func mcastIndex(addr []byte) uint {
	crc := uint32(0xffffffff)
	for _, b := range addr[:6] {
		for j := 0; j < 8; j++ {
			carry := crc>>31 ^ uint32(b&1)
			crc <<= 1
			b >>= 1
			if carry != 0 {
				crc = crc ^ 0x04c11db6 | carry
			}
		}
	}
	return uint(crc >> 26)
}

// receiveFrameLocked is QEMU's rtl8139_do_receive for one frame buf.
// irq says whether to update the interrupt line (loopback defers it to
// the transmit's own update).
func (d *Device) receiveFrameLocked(buf []byte, irq bool) {
	s := &d.st
	if !s.clockEnabled || s.cmd&cmdRxEnb == 0 {
		d.stats.RxMissed.Add(1)
		return
	}
	if len(buf) < 6 {
		d.stats.RxFiltered.Add(1)
		return
	}
	var hdr uint32
	if s.rcr&acceptAllPhys == 0 {
		switch {
		case isBroadcast(buf):
			if s.rcr&acceptBroadcast == 0 {
				s.tally.rxErr++
				d.stats.RxFiltered.Add(1)
				return
			}
			hdr |= rxBroadcast
			s.tally.rxOKBrd++
		case buf[0]&1 != 0:
			i := mcastIndex(buf)
			if s.rcr&acceptMulticast == 0 || s.mult[i>>3]&(1<<(i&7)) == 0 {
				s.tally.rxErr++
				d.stats.RxFiltered.Add(1)
				return
			}
			hdr |= rxMulticast
			s.tally.rxOKMul++
		case [6]byte(buf[:6]) == s.phys:
			if s.rcr&acceptMyPhys == 0 {
				s.tally.rxErr++
				d.stats.RxFiltered.Add(1)
				return
			}
			hdr |= rxPhysical
			s.tally.rxOKPhy++
		default:
			s.tally.rxErr++
			d.stats.RxFiltered.Add(1)
			return
		}
	}
	// A short frame is padded to 60 bytes, with a tag's worth of zeros
	// behind it for a tag the C+ receiver removes.
	size := len(buf)
	origSize := size
	if size < minFrame+vlanLen {
		n := copy(d.rxPad[:], buf)
		clear(d.rxPad[n : minFrame+vlanLen])
		buf = d.rxPad[:minFrame+vlanLen]
		size = max(size, minFrame)
	}
	if s.cpCmd&cpRxEnb != 0 {
		if !s.cpRxValid() {
			d.stats.RxMissed.Add(1)
			return
		}
		if !d.cplusReceiveLocked(buf, size, origSize, hdr) {
			return
		}
	} else if !d.ringReceiveLocked(buf[:size], hdr) {
		return
	}
	s.isr |= IntRxOK
	d.stats.RxFrames.Add(1)
	if irq {
		d.updateIRQLocked()
	}
}

func isBroadcast(b []byte) bool {
	return b[0]&b[1]&b[2]&b[3]&b[4]&b[5] == 0xff
}

// missLocked counts a frame dropped for want of a guest buffer and raises
// RxOverflow.
func (d *Device) missLocked() {
	s := &d.st
	s.isr |= IntRxOverflow
	s.rxMissed++
	s.tally.rxErr++
	s.tally.missPkt++
	d.stats.RxMissed.Add(1)
	d.updateIRQLocked()
}

// ringReceiveLocked writes one frame into the normal-mode ring buffer:
// header, frame, CRC, then CBR aligned to 4. False when it did not fit.
func (d *Device) ringReceiveLocked(buf []byte, hdr uint32) bool {
	s := &d.st
	size := uint32(len(buf))
	avail := (s.rxBufSize + s.rxBufPtr - s.rxBufAddr) & (s.rxBufSize - 1)
	// QEMU: "if (avail != 0 && RX_ALIGN(size + 8) >= avail)" overflows.
	if avail != 0 && (size+8+3)&^3 >= avail {
		s.isr |= IntRxOverflow
		s.rxMissed++
		d.stats.RxMissed.Add(1)
		d.updateIRQLocked()
		return false
	}
	hdr |= rxStatusOK | (size+4)<<16
	w := &d.word
	binary.LittleEndian.PutUint32(w[:], hdr)
	d.ringWrite(w[:])
	d.ringWrite(buf)
	binary.LittleEndian.PutUint32(w[:], crc32.ChecksumIEEE(buf))
	d.ringWrite(w[:])
	s.rxBufAddr = (s.rxBufAddr + 3) &^ 3 & (s.rxBufSize - 1)
	return true
}

// ringWrite is QEMU's rtl8139_write_buffer: bytes at RBSTART+CBR; past
// the ring's end they wrap to its start, unless WRAP (RCR bit 7) lets
// them run on into the slack behind the ring (not for 64 KiB rings).
func (d *Device) ringWrite(p []byte) {
	s := &d.st
	size := uint32(len(p))
	if s.rxBufAddr+size > s.rxBufSize {
		wrapped := (s.rxBufAddr + size) & (s.rxBufSize - 1)
		if wrapped != 0 && !(s.rxBufSize < 65536 && s.rcr&rxNoWrap != 0) {
			if size > wrapped {
				d.dmaWrite(uint64(s.rxBuf)+uint64(s.rxBufAddr), p[:size-wrapped])
			}
			s.rxBufAddr = 0
			d.dmaWrite(uint64(s.rxBuf), p[size-wrapped:])
			s.rxBufAddr = wrapped
			return
		}
	}
	d.dmaWrite(uint64(s.rxBuf)+uint64(s.rxBufAddr), p)
	s.rxBufAddr += size
}

func (d *Device) dmaWrite(gpa uint64, p []byte) bool {
	return nic.DMA{Mem: d.mem, Errors: &d.stats.DMAErrors}.Write(gpa, p)
}

func (d *Device) dmaRead(gpa uint64, p []byte) bool {
	return nic.DMA{Mem: d.mem, Errors: &d.stats.DMAErrors}.Read(gpa, p)
}

// cplusReceiveLocked puts one frame into the current C+ receive
// descriptor's buffer (one descriptor per frame, as QEMU); false when it
// was missed.
func (d *Device) cplusReceiveLocked(buf []byte, size, origSize int, hdr uint32) bool {
	s := &d.st
	desc := uint64(s.rxRingLo) | uint64(s.rxRingHi)<<32
	desc += 16 * uint64(s.cpRxDesc)
	raw := &d.desc
	d.dmaRead(desc, raw[:])
	w0 := binary.LittleEndian.Uint32(raw[0:])
	w1 := binary.LittleEndian.Uint32(raw[4:])
	bufAddr := uint64(binary.LittleEndian.Uint32(raw[8:])) | uint64(binary.LittleEndian.Uint32(raw[12:]))<<32
	if w0&cpRxOwn == 0 {
		d.missLocked()
		return false
	}
	space := int(w0 & cpRxSize)
	tagged := s.cpCmd&cpRxVLAN != 0 && binary.BigEndian.Uint16(buf[12:]) == 0x8100
	if tagged {
		size -= vlanLen
		if size < minFrame {
			size = minFrame
		}
		w1 &^= cpRxVLANMk
		// The TCI as it lies in the frame (big-endian) read as
		// little-endian (QEMU: "BE + ~le_to_cpu()~ + cpu_to_le() = BE").
		w1 |= cpRxTAVA | uint32(buf[14]) | uint32(buf[15])<<8
	} else {
		w1 &^= cpRxTAVA
	}
	if size+4 > space {
		d.missLocked()
		return false
	}
	if tagged {
		d.dmaWrite(bufAddr, buf[:12])
		d.dmaWrite(bufAddr+12, buf[16:16+size-12])
	} else {
		d.dmaWrite(bufAddr, buf[:size])
	}
	// The CRC QEMU appends covers the frame as it came (before padding
	// and untagging).
	c := &d.word
	binary.LittleEndian.PutUint32(c[:], crc32.ChecksumIEEE(buf[:origSize]))
	d.dmaWrite(bufAddr+uint64(size), c[:])

	w0 &^= cpRxOwn
	w0 |= cpRxFS | cpRxLS
	if hdr&rxBroadcast != 0 {
		w0 |= cpRxBAR
	}
	if hdr&rxMulticast != 0 {
		w0 |= cpRxMAR
	}
	if hdr&rxPhysical != 0 {
		w0 |= cpRxPAM
	}
	w0 = w0&^cpRxSize | uint32(size+4)
	binary.LittleEndian.PutUint32(raw[0:], w0)
	binary.LittleEndian.PutUint32(raw[4:], w1)
	d.dmaWrite(desc, raw[:8])
	s.tally.rxOK++
	if w0&cpRxEOR != 0 {
		s.cpRxDesc = 0
	} else {
		s.cpRxDesc = (s.cpRxDesc + 1) % cpRxRing
	}
	return true
}

// finishCsum is nic.FinishCsum.
func finishCsum(b []byte, start, off int) { nic.FinishCsum(b, start, off) }
