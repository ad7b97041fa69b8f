package e1000

import (
	"encoding/binary"

	"godm/devices/nic"
	"godm/netback"
)

// Transmit descriptor bits (8254x SDM 3.3.3-3.3.7; QEMU e1000_regs.h).
const (
	txdEOP   = 0x01000000 // end of packet
	txdRS    = 0x08000000 // report status
	txdRPS   = 0x10000000 // report packet sent
	txdDEXT  = 0x20000000 // extended descriptor
	txdVLE   = 0x40000000 // insert the VLAN tag
	txdIDE   = 0x80000000 // interrupt delay enable
	txdDTYPD = 0x00100000 // data descriptor
	txdTCP   = 0x01000000 // context: TCP (else UDP)
	txdIP    = 0x02000000 // context: IPv4 (else IPv6)
	txdTSE   = 0x04000000 // TCP segmentation

	txdStatDD = 0x1
	txdStatEC = 0x2
	txdStatLC = 0x4
	txdStatTU = 0x8

	poptsIXSM = 0x1
	poptsTXSM = 0x2
)

// txData is the staging buffer's size (QEMU struct e1000_tx data[]).
const txData = 0x10000

// txProps is a context descriptor's offload setup (QEMU e1000x_txd_props).
type txProps struct {
	ipcss, ipcso uint8
	ipcse        uint16
	tucss, tucso uint8
	tucse        uint16
	paylen       uint32
	hdrLen       uint8
	mss          uint16
	ip, tcp      bool
}

// txState is the frame being assembled from descriptors.
type txState struct {
	props, tso txProps
	size       int
	sumNeeded  uint8
	cptse      bool
	vlanNeeded bool
	vlanHdr    [4]byte
	tsoFrames  uint16
}

func (d *Device) txDataBuf() []byte { return d.txBuf[4:] }

// startXmitLocked walks the transmit ring from TDH to TDT (QEMU
// start_xmit): at most once around the ring, not at all for a head
// outside it. A descriptor that needs a back-end frame the back-end
// cannot give stays (TDH on it) until the back-end has room.
func (d *Device) startXmitLocked() {
	s := &d.st
	r := &s.r
	if r[ix(regTCTL)]&tctlEN == 0 {
		return
	}
	start := r[ix(regTDH)]
	cause := uint32(IntTXQE)
	base := uint64(r[ix(regTDBAH)])<<32 | uint64(r[ix(regTDBAL)]&^0xf)
	desc := &d.desc
	for r[ix(regTDH)] != r[ix(regTDT)] {
		at := base + 16*uint64(r[ix(regTDH)])
		d.dma.Read(at, desc[:])
		lower := binary.LittleEndian.Uint32(desc[8:])
		var f *netback.Frame
		if d.needsFrame(lower) {
			if f = d.be.TxFrame(); f == nil {
				s.txStalled = true
				d.stats.TxStalls.Add(1)
				break
			}
		}
		d.processTxDesc(f)
		if lower&(txdRS|txdRPS) != 0 {
			upper := binary.LittleEndian.Uint32(desc[12:])
			upper = (upper | txdStatDD) &^ (txdStatEC | txdStatLC | txdStatTU)
			binary.LittleEndian.PutUint32(desc[12:], upper)
			d.dma.Write(at+12, desc[12:16])
			cause |= IntTXDW
		}
		if (r[ix(regTDH)]+1)*16 >= r[ix(regTDLEN)] {
			r[ix(regTDH)] = 0
		} else {
			r[ix(regTDH)]++
		}
		if r[ix(regTDH)] == start || start >= r[ix(regTDLEN)]/16 {
			break
		}
	}
	if s.txStalled {
		cause &^= IntTXQE // the queue is not empty
	}
	d.setICSLocked(cause)
}

// needsFrame reports whether the descriptor (d.desc, lower its command
// word) may send a frame to the back-end: a data or legacy descriptor
// that ends a packet or carries TSO data, on a back-end with a cable.
func (d *Device) needsFrame(lower uint32) bool {
	if d.be == nil || d.st.linkDown || d.st.phy[phyBMCR]&bmcrLoopback != 0 {
		return false
	}
	switch lower & (txdDEXT | txdDTYPD) {
	case txdDEXT:
		return false
	case txdDEXT | txdDTYPD:
		return lower&(txdEOP|txdTSE) != 0
	}
	return lower&txdEOP != 0
}

// processTxDesc is QEMU's process_tx_desc for the descriptor in d.desc;
// f is a back-end frame taken for it (nil when none is needed), used by
// the first frame sent and released if none is.
func (d *Device) processTxDesc(f *netback.Frame) {
	tp := &d.tx
	desc := &d.desc
	lower := binary.LittleEndian.Uint32(desc[8:])
	upper := binary.LittleEndian.Uint32(desc[12:])
	if lower&txdIDE != 0 {
		d.st.mitIDE = true
	}
	switch lower & (txdDEXT | txdDTYPD) {
	case txdDEXT: // context descriptor
		p := txProps{
			ipcss: desc[0], ipcso: desc[1], ipcse: binary.LittleEndian.Uint16(desc[2:]),
			tucss: desc[4], tucso: desc[5], tucse: binary.LittleEndian.Uint16(desc[6:]),
			paylen: lower & 0xfffff, hdrLen: desc[13], mss: binary.LittleEndian.Uint16(desc[14:]),
			ip: lower&txdIP != 0, tcp: lower&txdTCP != 0,
		}
		if lower&txdTSE != 0 {
			tp.tso = p
			tp.tsoFrames = 0
		} else {
			tp.props = p
		}
		return
	case txdDEXT | txdDTYPD: // data descriptor
		if tp.size == 0 {
			tp.sumNeeded = uint8(upper >> 8)
		}
		tp.cptse = lower&txdTSE != 0
	default: // legacy descriptor
		tp.cptse = false
	}
	if d.st.r[ix(regCTRL)]&ctrlVME != 0 && lower&txdVLE != 0 && (tp.cptse || lower&txdEOP != 0) {
		tp.vlanNeeded = true
		binary.BigEndian.PutUint16(tp.vlanHdr[0:], uint16(d.st.r[ix(regVET)]))
		binary.BigEndian.PutUint16(tp.vlanHdr[2:], uint16(upper>>16))
	}
	data := d.txDataBuf()
	addr := binary.LittleEndian.Uint64(desc[0:])
	split := int(lower & 0xffff)
	if tp.cptse {
		hdr := int(tp.tso.hdrLen)
		msh := hdr + int(tp.tso.mss)
		for tp.size < msh {
			n := min(split, msh-tp.size, txData-tp.size)
			d.dma.Read(addr, data[tp.size:tp.size+n])
			if tp.size+n >= hdr && tp.size < hdr {
				copy(d.txHdr[:hdr], data[:hdr])
			}
			tp.size += n
			addr += uint64(n)
			if tp.size == msh {
				d.xmitSegLocked(&f)
				copy(data[:hdr], d.txHdr[:hdr])
				tp.size = hdr
			}
			split -= n
			if n == 0 || split == 0 {
				break
			}
		}
	} else {
		n := min(split, txData-tp.size)
		d.dma.Read(addr, data[tp.size:tp.size+n])
		tp.size += n
	}
	if lower&txdEOP != 0 {
		// The last segment of a TSO packet is what is left after the
		// last full one; none when nothing is (QEMU 7.2 sends a
		// header-only segment then: a documented deviation).
		hdr := int(tp.tso.hdrLen)
		if !tp.cptse || tp.size > hdr || tp.size == hdr && tp.tsoFrames == 0 {
			d.xmitSegLocked(&f)
		}
		tp.tsoFrames = 0
		tp.sumNeeded = 0
		tp.vlanNeeded = false
		tp.size = 0
		tp.cptse = false
	}
	if f != nil {
		f.Release()
	}
}

// xmitSegLocked sends the frame (or TSO segment) assembled in the staging
// buffer (QEMU xmit_seg): for a segment, the IP length and ID, the TCP
// sequence number and flags or the UDP length, and the pseudo-header sum
// in the checksum field are fixed up first; then the checksums the data
// descriptor's POPTS ask for are inserted. *f is a back-end frame to use
// (taken and set to nil).
func (d *Device) xmitSegLocked(f **netback.Frame) {
	tp := &d.tx
	r := &d.st.r
	data := d.txDataBuf()
	p := &tp.props
	if tp.cptse {
		p = &tp.tso
		css := int(p.ipcss)
		if p.ip {
			binary.BigEndian.PutUint16(data[css+2:], uint16(tp.size-css))
			binary.BigEndian.PutUint16(data[css+4:], binary.BigEndian.Uint16(data[css+4:])+tp.tsoFrames)
		} else {
			binary.BigEndian.PutUint16(data[css+4:], uint16(tp.size-css))
		}
		css = int(p.tucss)
		l := uint16(tp.size - css)
		if p.tcp {
			sofar := uint32(tp.tsoFrames) * uint32(p.mss)
			binary.BigEndian.PutUint32(data[css+4:], binary.BigEndian.Uint32(data[css+4:])+sofar)
			if p.paylen-sofar > uint32(p.mss) {
				data[css+13] &^= 0x09 // PSH, FIN only on the last
			} else if tp.tsoFrames != 0 {
				incReg(r, regTSCTC)
			}
		} else {
			binary.BigEndian.PutUint16(data[css+4:], l)
		}
		if tp.sumNeeded&poptsTXSM != 0 {
			// The driver left the pseudo-header sum without the length.
			sp := data[p.tucso:]
			ph := uint32(binary.BigEndian.Uint16(sp)) + uint32(l)
			ph = ph>>16 + ph&0xffff
			binary.BigEndian.PutUint16(sp, uint16(ph))
		}
		tp.tsoFrames++
		d.stats.TxSegments.Add(1)
	}
	if tp.sumNeeded&poptsTXSM != 0 {
		putSum(data, tp.size, int(p.tucso), int(p.tucss), int(p.tucse))
	}
	if tp.sumNeeded&poptsIXSM != 0 {
		putSum(data, tp.size, int(p.ipcso), int(p.ipcss), int(p.ipcse))
	}
	out := data[:tp.size]
	if tp.vlanNeeded {
		// The tag goes behind the addresses: the addresses move 4 bytes
		// down into the room in front of the data.
		copy(d.txBuf[0:12], d.txBuf[4:16])
		copy(d.txBuf[12:16], tp.vlanHdr[:])
		out = d.txBuf[:tp.size+4]
	}
	d.sendLocked(out, f)
	incReg(r, regTPT)
	grow8(r, regTOTL, tp.size+4) // with the FCS
	r[ix(regGPTC)] = r[ix(regTPT)]
	r[ix(regGOTCL)] = r[ix(regTOTL)]
	r[ix(regGOTCH)] = r[ix(regTOTH)]
}

// putSum stores the Internet checksum of data[css:n] (n cut to cse+1 when
// cse is set) at sloc, 0 sent as 0xffff (QEMU putsum with
// net_checksum_finish_nozero). Offsets come from the guest: only a
// location inside the frame is written, as QEMU's check does.
func putSum(data []byte, n, sloc, css, cse int) {
	if cse != 0 && cse < n {
		n = cse + 1
	}
	if uint32(sloc) >= uint32(n)-1 {
		return
	}
	var acc uint64
	if css < n {
		acc = nic.Sum(0, data[css:n])
	}
	v := ^nic.Fold(acc)
	if v == 0 {
		v = 0xffff
	}
	binary.BigEndian.PutUint16(data[sloc:], v)
}

// sendLocked sends one frame (QEMU e1000_send_packet): back to the
// receiver in PHY loopback, else to the back-end (in *f when one was
// taken); the transmit statistics count it either way. Sizes in the
// statistics include the 4-byte FCS (8254x SDM 13.7; QEMU 7.2 as Debian
// 12 ships it, with the upstream fix counting it).
func (d *Device) sendLocked(b []byte, f **netback.Frame) {
	r := &d.st.r
	n := len(b)
	if n >= 6 {
		switch {
		case b[0]&b[1]&b[2]&b[3]&b[4]&b[5] == 0xff:
			incReg(r, regBPTC)
		case b[0]&1 != 0:
			incReg(r, regMPTC)
		}
	}
	sizeStat(r, regPTC64, n+4) // with the FCS
	if d.st.phy[phyBMCR]&bmcrLoopback != 0 {
		d.stats.TxFrames.Add(1)
		if n <= netback.MaxFrame && d.canReceiveLocked() {
			d.receiveFrameLocked(b)
		} else {
			d.stats.RxMissed.Add(1)
		}
		return
	}
	g := *f
	*f = nil
	if d.be == nil || d.st.linkDown || n < 14 || n > d.be.MaxLen() || n > netback.MaxFrame {
		if g != nil {
			g.Release()
		}
		d.stats.TxDropped.Add(1)
		return
	}
	if g == nil {
		if g = d.be.TxFrame(); g == nil {
			// A later TSO segment found the back-end full.
			d.stats.TxDropped.Add(1)
			return
		}
	}
	g.SetLen(copy(g.Buf(), b))
	d.be.Transmit(g)
	d.stats.TxFrames.Add(1)
}
