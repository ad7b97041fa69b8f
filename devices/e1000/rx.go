package e1000

import (
	"encoding/binary"

	"godm/devices/nic"
	"godm/netback"
)

// Receive descriptor status bits (8254x SDM 3.2.3.1).
const (
	rxdDD   = 0x01
	rxdEOP  = 0x02
	rxdIXSM = 0x04
	rxdVP   = 0x08
)

const (
	minFrame = 60 // ETH_ZLEN: short frames are padded
	// maxShort and maxLong are the largest frames taken without and with
	// RCTL.LPE (QEMU e1000x_is_oversized: header, tag and MTU; 16 KiB
	// less the FCS).
	maxShort = 14 + 4 + 1500
	maxLong  = 16384 - 4
)

// receiveLocked hands the guest the frames waiting in the back-end, as
// many as it has buffers for (QEMU's can_receive decides when to stop).
// Bounded: each pass takes one frame off a bounded queue.
func (d *Device) receiveLocked() {
	if d.be == nil {
		return
	}
	for n := 0; n < 2*netback.DefaultDepth; n++ {
		f := d.be.RxPeek()
		if f == nil {
			return
		}
		if d.st.linkDown {
			// No cable: QEMU's net layer delivers nothing to a NIC whose
			// link is down (net/net.c qemu_deliver_packet_iov).
			d.stats.RxMissed.Add(1)
			d.dropRx()
			continue
		}
		if !d.canReceiveLocked() {
			return
		}
		b := f.Bytes()
		if f.Hdr.Flags&netback.VnetFlagNeedsCsum != 0 {
			nic.FinishCsum(b, int(f.Hdr.CsumStart), int(f.Hdr.CsumOffset))
		}
		if len(b) > netback.MaxFrame {
			d.stats.RxTooLong.Add(1)
		} else {
			d.receiveFrameLocked(b)
		}
		d.dropRx()
	}
}

func (d *Device) dropRx() {
	if g := d.be.RxPop(); g != nil {
		g.Release()
	}
}

// canReceiveLocked is QEMU's e1000_can_receive: link up, receiver on,
// bus mastering on, and a free descriptor.
func (d *Device) canReceiveLocked() bool {
	r := &d.st.r
	return r[ix(regSTATUS)]&statusLU != 0 && r[ix(regRCTL)]&rctlEN != 0 &&
		d.fn.ConfigRead(4, 2)&0x4 != 0 && d.hasRxBufs(1)
}

// hasRxBufs reports whether the ring between RDH and RDT holds buffers for
// total bytes (QEMU e1000_has_rxbufs).
func (d *Device) hasRxBufs(total uint64) bool {
	r := &d.st.r
	bs := d.st.rxBufSize
	head, tail := r[ix(regRDH)], r[ix(regRDT)]
	if total <= uint64(bs) {
		return head != tail
	}
	// QEMU counts in 32-bit unsigned arithmetic (an int times the
	// uint32 buffer size): kept, so a head outside the ring answers as
	// QEMU's does (the walk then ends at once with an overrun).
	var bufs uint32
	switch {
	case head < tail:
		bufs = tail - head
	case head > tail:
		bufs = r[ix(regRDLEN)]/16 + tail - head
	default:
		return false
	}
	return total <= uint64(bufs*bs)
}

// receiveFrameLocked is QEMU's e1000_receive_iov for one frame (from the
// back-end or looped back); it reports whether the guest got it.
func (d *Device) receiveFrameLocked(buf []byte) bool {
	s := &d.st
	r := &s.r
	if r[ix(regSTATUS)]&statusLU == 0 || r[ix(regRCTL)]&rctlEN == 0 {
		d.stats.RxMissed.Add(1)
		return false
	}
	if len(buf) < minFrame {
		n := copy(d.rxPad[:], buf)
		clear(d.rxPad[n:minFrame])
		buf = d.rxPad[:minFrame]
	}
	size := len(buf)
	rctl := r[ix(regRCTL)]
	if (size > maxLong || size > maxShort && rctl&rctlLPE == 0) && rctl&rctlSBP == 0 {
		d.stats.RxFiltered.Add(1)
		return false
	}
	if !d.filterLocked(buf) {
		d.stats.RxFiltered.Add(1)
		return false
	}
	var special uint16
	var vp uint8
	if r[ix(regCTRL)]&ctrlVME != 0 && isVLAN(buf, r[ix(regVET)]) {
		// The tag leaves the frame for the descriptor's special field
		// (the TCI as a little-endian word).
		special = binary.BigEndian.Uint16(buf[14:])
		if &buf[0] != &d.rxPad[0] {
			copy(d.rxPad[:12], buf[:12])
			copy(d.rxPad[12:], buf[16:])
		} else {
			copy(d.rxPad[12:], d.rxPad[16:size])
		}
		size -= 4
		buf = d.rxPad[:size]
		vp = rxdVP
	}
	fcs := 4
	if rctl&rctlSECRC != 0 {
		fcs = 0
	}
	total := size + fcs
	if !d.hasRxBufs(uint64(total)) {
		d.overrunLocked()
		return false
	}
	bs := int(s.rxBufSize)
	start := r[ix(regRDH)]
	base := uint64(r[ix(regRDBAH)])<<32 | uint64(r[ix(regRDBAL)]&^0xf)
	desc := &d.desc
	for off := 0; off < total; {
		chunk := min(total-off, bs)
		at := base + 16*uint64(r[ix(regRDH)])
		d.dma.Read(at, desc[:])
		binary.LittleEndian.PutUint16(desc[14:], special)
		desc[12] &^= rxdDD
		if ba := binary.LittleEndian.Uint64(desc[0:]); ba != 0 {
			if off < size {
				d.dma.Write(ba, buf[off:off+min(size-off, bs)])
			}
			off += chunk
			binary.LittleEndian.PutUint16(desc[8:], uint16(chunk))
			if off >= total {
				desc[12] |= rxdEOP | rxdIXSM
			} else {
				desc[12] &^= rxdEOP
			}
		}
		// A descriptor without a buffer is skipped (8254x SDM 3.2.3).
		d.dma.Write(at, desc[:])
		d.status[0] = desc[12] | vp | rxdDD
		d.dma.Write(at+12, d.status[:])
		if (r[ix(regRDH)]+1)*16 >= r[ix(regRDLEN)] {
			r[ix(regRDH)] = 0
		} else {
			r[ix(regRDH)]++
		}
		// A ring walk ends where it started, or at once for a head
		// outside the ring (QEMU: "bogus values to RDT/RDLEN").
		if r[ix(regRDH)] == start || start >= r[ix(regRDLEN)]/16 {
			d.overrunLocked()
			return false
		}
	}
	d.rxStatsLocked(size, total)
	cause := uint32(IntRXT0)
	tail := uint64(r[ix(regRDT)])
	if tail < uint64(r[ix(regRDH)]) {
		tail += uint64(r[ix(regRDLEN)] / 16)
	}
	if uint64(uint32(tail)-r[ix(regRDH)])*16 <= uint64(r[ix(regRDLEN)]>>s.rxMinShft) {
		cause |= IntRXDMT0
	}
	d.setICSLocked(cause)
	d.stats.RxFrames.Add(1)
	return true
}

// overrunLocked drops a frame for want of buffers: RNBC, MPC and RXO
// (QEMU e1000_receiver_overrun).
func (d *Device) overrunLocked() {
	incReg(&d.st.r, regRNBC)
	incReg(&d.st.r, regMPC)
	d.setICSLocked(IntRXO)
	d.stats.RxMissed.Add(1)
}

func isVLAN(b []byte, vet uint32) bool {
	return len(b) >= 18 && uint32(binary.BigEndian.Uint16(b[12:])) == vet&0xffff
}

// filterLocked is QEMU 7.2's receive_filter: the VLAN filter table
// (RCTL.VFE), promiscuous unicast and multicast, broadcast, the receive
// addresses, the multicast table (RCTL.MO picks the 12 bits of the
// address that index it). Multicast and broadcast counters go up here.
func (d *Device) filterLocked(b []byte) bool {
	r := &d.st.r
	rctl := r[ix(regRCTL)]
	if isVLAN(b, r[ix(regVET)]) && rctl&rctlVFE != 0 {
		vid := uint32(binary.BigEndian.Uint16(b[14:]))
		if r[ix(regVFTA)+(vid>>5)&0x7f]&(1<<(vid&0x1f)) == 0 {
			return false
		}
	}
	bcast := b[0]&b[1]&b[2]&b[3]&b[4]&b[5] == 0xff
	mcast := b[0]&1 != 0
	switch {
	case !bcast && !mcast && rctl&rctlUPE != 0:
		return true
	case mcast && rctl&rctlMPE != 0:
		incReg(r, regMPRC)
		return true
	case bcast && rctl&rctlBAM != 0:
		incReg(r, regBPRC)
		return true
	}
	for i := range uint32(16) {
		hi := r[ix(regRA)+2*i+1]
		if hi&rahAV == 0 {
			continue
		}
		lo := r[ix(regRA)+2*i]
		if b[0] == byte(lo) && b[1] == byte(lo>>8) && b[2] == byte(lo>>16) && b[3] == byte(lo>>24) &&
			b[4] == byte(hi) && b[5] == byte(hi>>8) {
			return true
		}
	}
	shift := [4]uint{4, 3, 2, 0}[(rctl>>rctlMOSh)&3]
	f := (uint32(b[5])<<8 | uint32(b[4])) >> shift & 0xfff
	if r[ix(regMTA)+f>>5]&(1<<(f&0x1f)) != 0 {
		incReg(r, regMPRC)
		return true
	}
	return false
}

// incReg adds one to a statistics register unless it is full (QEMU
// e1000x_inc_reg_if_not_full).
func incReg(r *[nregs]uint32, off uint32) {
	if r[ix(off)] != 0xffffffff {
		r[ix(off)]++
	}
}

// grow8 adds n to a 64-bit statistics pair (low register at off),
// saturating (QEMU e1000x_grow_8reg_if_not_full).
func grow8(r *[nregs]uint32, off uint32, n int) {
	v := uint64(r[ix(off)]) | uint64(r[ix(off)+1])<<32
	if v+uint64(n) < v {
		v = ^uint64(0)
	} else {
		v += uint64(n)
	}
	r[ix(off)], r[ix(off)+1] = uint32(v), uint32(v>>32)
}

// sizeStat counts a frame of n bytes in the six size buckets starting at
// off (QEMU e1000x_increase_size_stats).
func sizeStat(r *[nregs]uint32, off uint32, n int) {
	switch {
	case n > 1023:
		incReg(r, off+20)
	case n > 511:
		incReg(r, off+16)
	case n > 255:
		incReg(r, off+12)
	case n > 127:
		incReg(r, off+8)
	case n > 64:
		incReg(r, off+4)
	case n == 64:
		incReg(r, off)
	}
}

// rxStatsLocked is QEMU 7.2's e1000x_update_rx_total_stats: the size
// bucket of the frame with its FCS, total and good packets, octets
// (always counting a 4-byte FCS).
func (d *Device) rxStatsLocked(size, total int) {
	r := &d.st.r
	sizeStat(r, regPRC64, total)
	incReg(r, regTPR)
	r[ix(regGPRC)] = r[ix(regTPR)]
	grow8(r, regTORL, size+4)
	r[ix(regGORCL)] = r[ix(regTORL)]
	r[ix(regGORCH)] = r[ix(regTORH)]
}
