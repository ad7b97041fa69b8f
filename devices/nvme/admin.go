package nvme

// Feature identifiers (NVMe 1.4 §5.21.1).
const (
	fArbitration = 0x01
	fPower       = 0x02
	fTempThresh  = 0x04
	fErrRecovery = 0x05
	fWriteCache  = 0x06
	fNumQueues   = 0x07
	fIntCoalesce = 0x08
	fIntVector   = 0x09
	fWriteAtom   = 0x0a
	fAsyncEvent  = 0x0b
)

// Log pages (§5.14.1).
const (
	logError    = 0x01
	logSMART    = 0x02
	logFirmware = 0x03
	errEntries  = 1 // Identify ELPE 0 (QEMU 7.2)
)

// Model and firmware strings: the model is QEMU's (guests key quirks on
// the PCI IDs, not on it); the firmware revision names godm.
const (
	model    = "QEMU NVMe Ctrl"
	firmware = "godm"
)

// adminLocked runs an admin command to completion (or holds an AER).
func (c *Controller) adminLocked(s *slot) {
	op := s.cmd[0]
	s.cid = uint16(s.dw(0) >> 16)
	if s.cmd[1]&0xc3 != 0 { // PSDT (SGLs) or FUSE
		c.finishLocked(s, sInvalidField)
		return
	}
	switch op {
	case aIdentify:
		c.finishLocked(s, c.identifyLocked(s))
	case aCreateCQ:
		c.finishLocked(s, c.createCQLocked(s))
	case aCreateSQ:
		c.finishLocked(s, c.createSQLocked(s))
	case aDeleteSQ:
		c.finishLocked(s, c.deleteSQLocked(s))
	case aDeleteCQ:
		c.finishLocked(s, c.deleteCQLocked(s))
	case aGetFeature:
		c.finishLocked(s, c.getFeatureLocked(s))
	case aSetFeature:
		c.finishLocked(s, c.setFeatureLocked(s))
	case aGetLogPage:
		c.finishLocked(s, c.getLogLocked(s))
	case aAbort:
		// Never aborts: DW0 bit 0 says "not aborted" (§5.1).
		s.dw0 = 1
		c.finishLocked(s, sSuccess)
	case aAsyncEvent:
		if c.naer > aerl {
			c.finishLocked(s, sAERLimit)
			return
		}
		// Held: no event is ever generated. The slot goes back; the CID is
		// kept for the snapshot.
		c.aers[c.naer] = s.cid
		c.naer++
		c.freeSlot(s)
	default:
		c.finishLocked(s, sInvalidOpcode)
	}
}

func padCopy(dst []byte, s string) {
	for i := range dst {
		dst[i] = ' '
	}
	copy(dst, s)
}

// identifyLocked is Identify (§5.15) for CNS 0, 1, 2 and 3.
func (c *Controller) identifyLocked(s *slot) uint16 {
	b := c.scratch[:]
	clear(b)
	nsid := s.dw(1)
	switch s.dw(10) & 0xff {
	case 0x00:
		// QEMU 7.2: an inactive NSID up to NN gets a zeroed structure.
		if nsid == 0 || nsid > maxNSID {
			return sInvalidNS
		}
		if nsid == 1 {
			c.identifyNS(b)
		}
	case 0x01:
		c.identifyCtrl(b)
	case 0x02:
		if nsid >= 0xfffffffe {
			return sInvalidNS
		}
		if nsid < 1 {
			le32(b, 1)
		}
	case 0x03:
		if nsid == 0 || nsid > maxNSID {
			return sInvalidNS
		}
		if nsid != 1 {
			break // inactive: an empty list
		}
		// One descriptor: a UUID (NIDT 3, NIDL 16) derived from the serial
		// (stable across runs for the same serial).
		b[0], b[1] = 3, 16
		u := b[4:20]
		h := uint64(14695981039346656037)
		for i := range 16 {
			if i < len(c.serial) {
				h ^= uint64(c.serial[i])
			}
			h *= 1099511628211
			u[i] = byte(h >> 32)
		}
		u[6] = u[6]&0x0f | 0x40 // version 4
		u[8] = u[8]&0x3f | 0x80 // variant 1
	default:
		return sInvalidField
	}
	return c.sendDataLocked(s, b)
}

// identifyCtrl fills the Identify Controller data structure (§5.15.2.2,
// figure 247); values as QEMU 7.2 nvme_init_ctrl sets them where the
// feature exists here.
func (c *Controller) identifyCtrl(b []byte) {
	le16(b[0:], VendorID)
	le16(b[2:], SubVendor)
	padCopy(b[4:24], c.serial)
	padCopy(b[24:64], model)
	padCopy(b[64:72], firmware)
	b[72] = 6                              // RAB
	b[73], b[74], b[75] = 0x00, 0x54, 0x52 // IEEE OUI 52:54:00, LSB first
	b[77] = mdts
	le32(b[80:], version)
	b[111] = 1 // CNTRLTYPE: I/O controller
	// OACS 0: no optional admin commands.
	b[258] = 3               // ACL: 4 aborts
	b[259] = aerl            // AERL
	b[260] = 1<<1 | 1        // FRMW: one slot, slot 1 read-only
	b[261] = 1 << 2          // LPA: extended data for Get Log Page
	b[262] = errEntries - 1  // ELPE
	le16(b[266:], tempOver)  // WCTEMP
	le16(b[268:], 0x175)     // CCTEMP (QEMU 7.2: 373 K)
	b[512] = sqes<<4 | sqes  // SQES
	b[513] = cqes<<4 | cqes  // CQES
	le32(b[516:], maxNSID)   // NN
	le16(b[520:], 1<<2|1<<3) // ONCS: DSM, Write Zeroes
	if c.info.WriteCache {
		b[525] = 1 | 3<<1 // VWC present, Flush with NSID FFFFFFFFh
	}
	// SGLS (536) 0: SGLs not supported.
	copy(b[768:], "nqn.2019-08.org.qemu:")
	copy(b[768+21:1024], c.serial)
	// Power state 0 (QEMU 7.2: 25 W, ENLAT 16 µs, EXLAT 4 µs).
	le16(b[2048:], 0x9c4)
	le32(b[2052:], 0x10)
	le32(b[2056:], 0x4)
}

// identifyNS fills Identify Namespace (§5.15.2.1, NVM command set 1.4):
// one LBA format of 512 bytes.
func (c *Controller) identifyNS(b []byte) {
	le64(b[0:], c.nsze)
	le64(b[8:], c.nsze)
	le64(b[16:], c.nsze)
	// NLBAF 0, FLBAS 0; LBAF0: MS 0, LBADS 9.
	b[128+2] = 9
	if c.info.ReadOnly {
		b[99] = 1 // NSATTR: write protected
	}
}

// createCQLocked is Create I/O Completion Queue (§5.4; QEMU 7.2
// nvme_create_cq's checks).
func (c *Controller) createCQLocked(s *slot) uint16 {
	dw10, dw11 := s.dw(10), s.dw(11)
	qid, qsize := int(dw10&0xffff), dw10>>16
	base := rd64(s.cmd[24:])
	iv := uint16(dw11 >> 16)
	switch {
	case qid == 0 || qid > MaxIOQueues || c.cqs[qid].valid:
		return sInvalidQID
	case qsize == 0 || qsize > mqes:
		return sInvalidQSize
	case base == 0 || base&(1<<c.pageBits-1) != 0:
		return sPRPOffset
	case dw11&1 == 0: // CAP.CQR: physically contiguous only
		return sInvalidField
	case iv >= Vectors || iv != 0 && !c.msixEnabled():
		return sInvalidIV
	case base+uint64(qsize+1)<<cqes < base:
		return sInvalidField
	}
	c.cqs[qid] = compQueue{valid: true, base: base, size: qsize + 1, phase: true, ien: dw11&2 != 0, iv: iv}
	c.qsCreated = true
	return sSuccess
}

// createSQLocked is Create I/O Submission Queue (§5.5).
func (c *Controller) createSQLocked(s *slot) uint16 {
	dw10, dw11 := s.dw(10), s.dw(11)
	qid, qsize := int(dw10&0xffff), dw10>>16
	cqid := int(dw11 >> 16)
	base := rd64(s.cmd[24:])
	switch {
	case qid == 0 || qid > MaxIOQueues || c.sqs[qid].valid:
		return sInvalidQID
	case cqid == 0 || cqid > MaxIOQueues || !c.cqs[cqid].valid:
		return sCQInvalid
	case qsize == 0 || qsize > mqes:
		return sInvalidQSize
	case base == 0 || base&(1<<c.pageBits-1) != 0:
		return sPRPOffset
	case dw11&1 == 0:
		return sInvalidField
	case base+uint64(qsize+1)<<sqes < base:
		return sInvalidField
	}
	g := c.sqs[qid].gen + 1
	c.sqs[qid] = subQueue{valid: true, base: base, size: qsize + 1, cqid: uint16(cqid), gen: g}
	c.cqs[cqid].sqRefs++
	c.qsCreated = true
	return sSuccess
}

// deleteSQLocked is Delete I/O Submission Queue (§5.7): commands of the
// queue still in flight complete into nothing; completions waiting for
// room in the CQ are dropped.
func (c *Controller) deleteSQLocked(s *slot) uint16 {
	qid := int(s.dw(10) & 0xffff)
	if qid == 0 || qid > MaxIOQueues || !c.sqs[qid].valid {
		return sInvalidQID
	}
	sq := &c.sqs[qid]
	cq := &c.cqs[sq.cqid]
	var prev *slot
	for w := cq.wait; w != nil; {
		n := w.next
		if w.sqid == uint16(qid) {
			if prev == nil {
				cq.wait = n
			} else {
				prev.next = n
			}
			w.next = nil
			c.freeSlot(w)
		} else {
			prev = w
		}
		w = n
	}
	cq.last = prev
	if cq.wait == nil {
		cq.last = nil
	}
	cq.sqRefs--
	g := sq.gen + 1
	*sq = subQueue{gen: g}
	return sSuccess
}

// deleteCQLocked is Delete I/O Completion Queue (§5.6).
func (c *Controller) deleteCQLocked(s *slot) uint16 {
	qid := int(s.dw(10) & 0xffff)
	if qid == 0 || qid > MaxIOQueues || !c.cqs[qid].valid {
		return sInvalidQID
	}
	if c.cqs[qid].sqRefs != 0 {
		return sInvalidQDelete
	}
	iv := c.cqs[qid].iv
	c.cqs[qid] = compQueue{}
	// Its entries no longer hold the INTx condition.
	c.irqStatus[iv>>6] &^= 1 << (iv & 63)
	c.updateINTxLocked()
	return sSuccess
}

// getFeatureLocked is Get Features (§5.21), current values only.
func (c *Controller) getFeatureLocked(s *slot) uint16 {
	fid := s.dw(10) & 0xff
	sel := (s.dw(10) >> 8) & 7
	if sel == 3 { // supported capabilities: none saveable or per-namespace
		switch fid {
		case fArbitration, fPower, fTempThresh, fErrRecovery, fNumQueues, fIntCoalesce, fIntVector, fWriteAtom, fAsyncEvent:
			s.dw0 = 1 << 2 // changeable
			return sSuccess
		case fWriteCache:
			if c.info.WriteCache {
				s.dw0 = 1 << 2
				return sSuccess
			}
		}
		return sInvalidField
	}
	if sel > 3 {
		return sInvalidField
	}
	switch fid {
	case fArbitration:
		s.dw0 = c.arb
	case fPower:
		s.dw0 = c.power
	case fTempThresh:
		if s.dw(11)&0x30_0000 != 0 || s.dw(11)&0xf_0000 != 0 {
			s.dw0 = 0 // under-temperature or other sensors: 0
		} else {
			s.dw0 = c.tempThr
		}
	case fErrRecovery:
		s.dw0 = c.errRecov
	case fWriteCache:
		if !c.info.WriteCache {
			return sInvalidField
		}
		if c.wce {
			s.dw0 = 1
		}
	case fNumQueues:
		s.dw0 = (MaxIOQueues-1)<<16 | (MaxIOQueues - 1)
	case fIntCoalesce:
		s.dw0 = c.coalesce
	case fIntVector:
		iv := s.dw(11) & 0xffff
		if iv >= Vectors {
			return sInvalidField
		}
		s.dw0 = iv
	case fWriteAtom:
		s.dw0 = 0
	case fAsyncEvent:
		s.dw0 = c.asyncCfg
	default:
		return sInvalidField
	}
	return sSuccess
}

// setFeatureLocked is Set Features (§5.21): nothing is saveable.
func (c *Controller) setFeatureLocked(s *slot) uint16 {
	fid := s.dw(10) & 0xff
	v := s.dw(11)
	if s.dw(10)&(1<<31) != 0 {
		return sNotSaveable
	}
	switch fid {
	case fArbitration:
		c.arb = v
	case fPower:
		c.power = v & 0xff
	case fTempThresh:
		if v&0x3f_0000 == 0 {
			c.tempThr = v & 0xffff
		}
	case fErrRecovery:
		if v&(1<<16) != 0 { // DULBE needs deallocated-block errors
			return sInvalidField
		}
		c.errRecov = v
	case fWriteCache:
		if !c.info.WriteCache {
			return sInvalidField
		}
		c.wce = v&1 != 0
	case fNumQueues:
		// QEMU 7.2 nvme_set_feature_timestamp's neighbour: once queues
		// exist, a Command Sequence Error; 65535 is Invalid Field.
		if c.qsCreated {
			return sCmdSeqError
		}
		if v&0xffff == 0xffff || v>>16 == 0xffff {
			return sInvalidField
		}
		s.dw0 = (MaxIOQueues-1)<<16 | (MaxIOQueues - 1)
	case fIntCoalesce:
		c.coalesce = v & 0xffff
	case fIntVector:
		if v&0xffff >= Vectors {
			return sInvalidField
		}
	case fWriteAtom:
	case fAsyncEvent:
		c.asyncCfg = v
	default:
		return sInvalidField
	}
	return sSuccess
}

// getLogLocked is Get Log Page (§5.14): the error log (empty), SMART /
// health (controller-wide) and the firmware slot log, from the offset
// asked, at most the log's length transferred.
func (c *Controller) getLogLocked(s *slot) uint16 {
	dw10 := s.dw(10)
	lid := dw10 & 0xff
	numd := uint64(dw10>>16) | uint64(s.dw(11)&0xffff)<<16
	n := (numd + 1) * 4
	off := uint64(s.dw(12)) | uint64(s.dw(13))<<32
	if off&3 != 0 {
		return sInvalidField
	}
	if n > maxXfer {
		return sInvalidField
	}
	nsid := s.dw(1)
	b := c.scratch[:]
	clear(b)
	var size uint64
	switch lid {
	case logError:
		size = errEntries * 64
	case logSMART:
		if nsid != 0 && nsid != 0xffffffff && nsid != 1 {
			return sInvalidNS
		}
		size = 512
		le16(b[1:], temp)
		b[3], b[4] = 100, 10 // available spare, threshold
		// Data units are thousands of 512-byte units, rounded up (§5.14.1.2).
		le64(b[32:], (c.readBytes/512+999)/1000)
		le64(b[48:], (c.writeBytes/512+999)/1000)
		le64(b[64:], c.readCmds)
		le64(b[80:], c.writeCmds)
	case logFirmware:
		size = 512
		b[0] = 1 // active slot 1
		padCopy(b[8:16], firmware)
	default:
		return sInvalidLogPage
	}
	if off > size {
		return sInvalidField
	}
	return c.sendDataLocked(s, b[off:min(size, off+n)])
}
