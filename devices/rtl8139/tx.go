package rtl8139

import (
	"encoding/binary"

	"godm/devices/nic"
	"godm/netback"
)

// C+ transmit descriptor bits (QEMU CP_TX_*; RTL8139C+ datasheet,
// transmit descriptor format).
const (
	cpTxOwn   = 1 << 31
	cpTxEOR   = 1 << 30
	cpTxFS    = 1 << 29
	cpTxLS    = 1 << 28
	cpTxLGSEN = 1 << 27
	cpTxIPCS  = 1 << 18
	cpTxUDPCS = 1 << 17
	cpTxTCPCS = 1 << 16
	cpTxSize  = 1<<16 - 1
	// cpTxMSSMask: the large-send MSS, bits 16-26 of w0 (QEMU
	// CP_TC_LGSEN_MSS_SHIFT/MASK).
	cpTxMSSMask = 1<<11 - 1
	cpTxTAGC    = 1 << 17 // in w1
	cpTxStatus  = 1<<25 | 1<<23 | 1<<22 | 1<<21 | 1<<20
)

// writeTSD is a write of TSD n (QEMU rtl8139_TxStatus_write). In C+ mode
// the first two are DTCCR, the tally counters' dump address and command.
func (d *Device) writeTSD(n uint32, v uint32) {
	s := &d.st
	if s.cplus {
		s.txStatus[n] = v
		if n == 0 && v&0x8 != 0 {
			d.dumpTallyLocked(uint64(s.txStatus[0]&^0x3f) | uint64(s.txStatus[1])<<32)
			s.txStatus[0] &^= 0x8
		}
		return
	}
	v &^= 0xff00c000 // status bits the write clears
	s.txStatus[n] = setMasked(v, 0x00c00000, s.txStatus[n])
	d.transmitLocked()
}

// transmitLocked sends the normal-mode descriptors the guest handed over,
// in order from the current one (at most the four).
func (d *Device) transmitLocked() {
	s := &d.st
	sent := false
	for range 4 {
		ok, stalled := d.transmitOneLocked(s.currTxDesc)
		if stalled {
			s.txStalled = true
			d.stats.TxStalls.Add(1)
			break
		}
		if !ok {
			break
		}
		sent = true
		s.currTxDesc = (s.currTxDesc + 1) % 4
	}
	if sent {
		d.updateIRQLocked()
	}
}

// transmitOneLocked sends descriptor n if the guest gave it to the
// device: ok if it was consumed, stalled if the back-end had no room
// (the descriptor stays the device's, to retry).
func (d *Device) transmitOneLocked(n uint32) (ok, stalled bool) {
	s := &d.st
	if s.cmd&cmdTxEnb == 0 || s.txStatus[n]&tsdOwn != 0 {
		return false, false
	}
	size := int(s.txStatus[n] & normalTxMax)
	addr := uint64(s.txAddr[n])
	if s.tcr&tcrLoopback == tcrLoopback {
		d.dmaRead(addr, d.loop[:size])
		d.receiveFrameLocked(d.loop[:size], false)
		d.stats.TxFrames.Add(1)
	} else if size > 0 {
		if !d.sendFromGuest(addr, size) {
			return false, true
		}
	}
	s.txStatus[n] |= tsdOwn | tsdOK
	s.isr |= IntTxOK
	s.tally.txOK++
	return true, false
}

// sendFromGuest copies size bytes at addr into a back-end frame and sends
// it; false when the back-end has no frame free (nothing consumed). A
// frame the back-end cannot take (too long, or unreadable) is dropped and
// counted; it still counts as consumed.
func (d *Device) sendFromGuest(addr uint64, size int) bool {
	if d.be == nil || d.st.linkDown {
		d.stats.TxDropped.Add(1)
		return true
	}
	if size > d.be.MaxLen() || size > netback.MaxFrame {
		d.stats.TxDropped.Add(1)
		return true
	}
	f := d.be.TxFrame()
	if f == nil {
		return false
	}
	if !d.dmaRead(addr, f.Buf()[:size]) {
		f.Release()
		d.stats.TxDropped.Add(1)
		return true
	}
	f.SetLen(size)
	d.be.Transmit(f)
	d.stats.TxFrames.Add(1)
	return true
}

// cplusTransmitLocked walks the C+ normal-priority ring from the current
// descriptor while the guest owns nothing (QEMU rtl8139_cplus_transmit),
// at most one ring's worth per poll.
func (d *Device) cplusTransmitLocked() {
	s := &d.st
	n := 0
	for range cpTxRing {
		ok, stalled := d.cplusTransmitOneLocked()
		if stalled {
			s.txStalled = true
			d.stats.TxStalls.Add(1)
			break
		}
		if !ok {
			break
		}
		n++
	}
	if n > 0 {
		s.isr |= IntTxOK
		d.updateIRQLocked()
	}
}

func (d *Device) cplusTransmitOneLocked() (ok, stalled bool) {
	s := &d.st
	if s.cmd&cmdTxEnb == 0 || s.cpCmd&cpTxEnb == 0 {
		return false, false
	}
	desc := uint64(s.txAddr[0]) | uint64(s.txAddr[1])<<32
	desc += 16 * uint64(s.cpTxDesc)
	raw := &d.desc
	if !d.dmaRead(desc, raw[:]) {
		return false, false
	}
	w0 := binary.LittleEndian.Uint32(raw[0:])
	w1 := binary.LittleEndian.Uint32(raw[4:])
	bufAddr := uint64(binary.LittleEndian.Uint32(raw[8:])) | uint64(binary.LittleEndian.Uint32(raw[12:]))<<32
	if w0&cpTxOwn == 0 {
		return false, false
	}
	loop := s.tcr&tcrLoopback == tcrLoopback
	// The last segment needs a back-end frame: take it before consuming
	// anything, so a full back-end leaves the descriptor to retry.
	var f *netback.Frame
	if w0&cpTxLS != 0 && !loop && d.be != nil && !s.linkDown {
		if f = d.be.TxFrame(); f == nil {
			return false, true
		}
	}
	if w0&cpTxFS != 0 {
		s.cpTxLen = 0
	}
	size := int(w0 & cpTxSize)
	// Keep what fits the staging buffer; the rest only counts, and a
	// frame that overflowed is dropped at its last segment.
	if s.cpTxLen < txStage {
		keep := min(size, txStage-s.cpTxLen)
		d.dmaRead(bufAddr, d.txBuf[s.cpTxLen:s.cpTxLen+keep])
	}
	s.cpTxLen = min(s.cpTxLen+size, 1<<20)

	if w0&cpTxEOR != 0 {
		s.cpTxDesc = 0
	} else {
		s.cpTxDesc = (s.cpTxDesc + 1) % cpTxRing
	}
	// The large-send MSS shares bits with the status bits cleared here:
	// keep the guest's word for it (QEMU: "store unaltered txdw0 for
	// later use in MSS calculation").
	orig := w0
	w0 &^= cpTxOwn | cpTxStatus
	binary.LittleEndian.PutUint32(raw[0:], w0)
	d.dmaWrite(desc, raw[:4])

	if w0&cpTxLS == 0 {
		return true, false
	}
	n := s.cpTxLen
	s.cpTxLen = 0
	tag := w1&cpTxTAGC != 0
	if n > txStage || n < 14 {
		if f != nil {
			f.Release()
		}
		d.stats.TxDropped.Add(1)
		s.tally.txErr++
		return true, false
	}
	frame := d.txBuf[:n]
	if mss := int(orig>>16) & cpTxMSSMask; w0&cpTxLGSEN != 0 && mss != 0 && isTCPv4(frame) {
		// Large send (QEMU: TSO with the descriptor's MSS; an MSS of 0
		// sends the frame as it is, as QEMU's fix for issue 1582).
		d.largeSendLocked(frame, mss, w1, tag, loop, f)
		return true, false
	}
	if w0&(cpTxIPCS|cpTxUDPCS|cpTxTCPCS) != 0 {
		offloadCsum(frame, w0)
	}
	d.emitLocked(frame, w1, tag, loop, f)
	return true, false
}

// emitLocked sends one assembled frame (with the descriptor's VLAN tag
// inserted after the addresses), or loops it back; f is the back-end
// frame taken for it (nil in loopback or without a back-end). A frame the
// back-end cannot take is dropped and counted.
func (d *Device) emitLocked(frame []byte, w1 uint32, tag, loop bool, f *netback.Frame) {
	out := len(frame)
	if tag {
		out += vlanLen
	}
	if out > netback.MaxFrame {
		if f != nil {
			f.Release()
		}
		d.stats.TxDropped.Add(1)
		d.st.tally.txErr++
		return
	}
	var b []byte
	switch {
	case loop:
		b = d.loop[:]
	case f == nil:
		d.stats.TxDropped.Add(1)
		return
	case out > d.be.MaxLen() || out > len(f.Buf()):
		f.Release()
		d.stats.TxDropped.Add(1)
		return
	default:
		b = f.Buf()
	}
	if tag {
		copy(b[:12], frame[:12])
		// The TCI lies in w1 in frame order (QEMU: "the vlan tag is in BE
		// byte order in the descriptor").
		b[12], b[13] = 0x81, 0x00
		b[14], b[15] = byte(w1), byte(w1>>8)
		copy(b[16:], frame[12:])
	} else {
		copy(b, frame)
	}
	d.st.tally.txOK++
	d.stats.TxFrames.Add(1)
	if loop {
		d.receiveFrameLocked(b[:out], false)
		return
	}
	f.SetLen(out)
	d.be.Transmit(f)
}

// isTCPv4 reports whether frame is an IPv4 TCP segment with headers that
// fit it.
func isTCPv4(b []byte) bool {
	if len(b) < 14+20+20 || binary.BigEndian.Uint16(b[12:]) != 0x0800 || b[14]>>4 != 4 || b[14+9] != 6 {
		return false
	}
	hlen := int(b[14]&0xf) * 4
	total := int(binary.BigEndian.Uint16(b[16:]))
	if hlen < 20 || total > len(b)-14 || total < hlen+20 {
		return false
	}
	thlen := int(b[14+hlen+12]>>4) * 4
	return thlen >= 20 && hlen+thlen <= total
}

// largeSendLocked cuts a TCP/IPv4 frame into segments of mss payload
// bytes (QEMU rtl8139_cplus_transmit_one's TSO): each gets the headers,
// its sequence number, an IP id one more than the previous, FIN and PSH
// only on the last, fresh IP and TCP checksums. The first segment uses f;
// the others take back-end frames as they go, and what finds the back-end
// full is dropped (counted; TCP retransmits).
func (d *Device) largeSendLocked(frame []byte, mss int, w1 uint32, tag, loop bool, f *netback.Frame) {
	ip := frame[14:]
	hlen := int(ip[0]&0xf) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	tcp := ip[hlen:total]
	thlen := int(tcp[12]>>4) * 4
	hdrs := 14 + hlen + thlen
	payload := tcp[thlen:]
	if hdrs+min(mss, len(payload)) > len(d.seg) {
		if f != nil {
			f.Release()
		}
		d.stats.TxDropped.Add(1)
		d.st.tally.txErr++
		return
	}
	id := binary.BigEndian.Uint16(ip[4:])
	seq := binary.BigEndian.Uint32(tcp[4:])
	flags := tcp[13]
	for off, i := 0, 0; off < len(payload) || i == 0; off, i = off+mss, i+1 {
		chunk := min(mss, len(payload)-off)
		last := off+chunk >= len(payload)
		seg := d.seg[:hdrs+chunk]
		copy(seg, frame[:hdrs])
		copy(seg[hdrs:], payload[off:off+chunk])
		sip := seg[14:]
		binary.BigEndian.PutUint16(sip[2:], uint16(hlen+thlen+chunk))
		binary.BigEndian.PutUint16(sip[4:], id+uint16(i))
		binary.BigEndian.PutUint16(sip[10:], 0)
		binary.BigEndian.PutUint16(sip[10:], ^fold(sum(0, sip[:hlen])))
		stcp := sip[hlen:]
		binary.BigEndian.PutUint32(stcp[4:], seq+uint32(off))
		if !last {
			stcp[13] = flags &^ 0x09 // FIN, PSH
		}
		binary.BigEndian.PutUint16(stcp[16:], 0)
		var ph [12]byte
		copy(ph[:8], sip[12:20])
		ph[9] = 6
		binary.BigEndian.PutUint16(ph[10:], uint16(thlen+chunk))
		binary.BigEndian.PutUint16(stcp[16:], ^fold(sum(sum(0, ph[:]), stcp[:thlen+chunk])))
		g := f
		f = nil
		if g == nil && !loop && d.be != nil && !d.st.linkDown {
			if g = d.be.TxFrame(); g == nil {
				d.stats.TxDropped.Add(1)
				continue
			}
		}
		d.emitLocked(seg, w1, tag, loop, g)
		if last {
			break
		}
	}
}

// offloadCsum fills the IPv4 header checksum and the TCP or UDP checksum
// a C+ descriptor asks for (QEMU's task offload in
// rtl8139_cplus_transmit_one). Anything but an IPv4 frame, or a header
// that does not fit, is left as it is.
func offloadCsum(b []byte, w0 uint32) {
	if len(b) < 14+20 || binary.BigEndian.Uint16(b[12:]) != 0x0800 {
		return
	}
	ip := b[14:]
	if ip[0]>>4 != 4 {
		return
	}
	hlen := int(ip[0]&0xf) * 4
	if hlen < 20 || hlen > len(ip) {
		return
	}
	if w0&cpTxIPCS != 0 {
		binary.BigEndian.PutUint16(ip[10:], 0)
		binary.BigEndian.PutUint16(ip[10:], ^fold(sum(0, ip[:hlen])))
	}
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if total < hlen || total > len(ip) {
		return
	}
	proto := ip[9]
	l4 := ip[hlen:total]
	var off int
	switch {
	case proto == 6 && w0&cpTxTCPCS != 0 && len(l4) >= 20:
		off = 16
	case proto == 17 && w0&cpTxUDPCS != 0 && len(l4) >= 8:
		off = 6
	default:
		return
	}
	binary.BigEndian.PutUint16(l4[off:], 0)
	var ph [12]byte
	copy(ph[0:8], ip[12:20])
	ph[9] = proto
	binary.BigEndian.PutUint16(ph[10:], uint16(len(l4)))
	c := ^fold(sum(sum(0, ph[:]), l4))
	if proto == 17 && c == 0 {
		c = 0xffff // RFC 768: zero means "no checksum"
	}
	binary.BigEndian.PutUint16(l4[off:], c)
}

// sum and fold are the shared checksum helpers (nic.Sum, nic.Fold).
func sum(acc uint64, b []byte) uint64 { return nic.Sum(acc, b) }
func fold(acc uint64) uint16          { return nic.Fold(acc) }

// dumpTallyLocked writes the 64-byte tally counter block at addr (QEMU
// RTL8139TallyCounters_dma_write).
func (d *Device) dumpTallyLocked(addr uint64) {
	t := &d.st.tally
	b := &d.tdump
	le := binary.LittleEndian
	le.PutUint64(b[0:], t.txOK)
	le.PutUint64(b[8:], t.rxOK)
	le.PutUint64(b[16:], t.txErr)
	le.PutUint32(b[24:], t.rxErr)
	le.PutUint16(b[28:], t.missPkt)
	le.PutUint16(b[30:], t.fae)
	le.PutUint32(b[32:], t.tx1Col)
	le.PutUint32(b[36:], t.txMCol)
	le.PutUint64(b[40:], t.rxOKPhy)
	le.PutUint64(b[48:], t.rxOKBrd)
	le.PutUint32(b[56:], t.rxOKMul)
	le.PutUint16(b[60:], t.txAbt)
	le.PutUint16(b[62:], t.txUndrn)
	d.dmaWrite(addr, b[:])
}
