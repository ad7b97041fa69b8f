package nvme

import (
	"errors"

	"godm/block"
	"godm/memory"
)

// Status field values (NVMe 1.4 §4.6.1.2: SCT in bits 10:8, SC in 7:0,
// DNR bit 14).
const (
	sSuccess         = 0x00
	sInvalidOpcode   = 0x01
	sInvalidField    = 0x02
	sDataTransfer    = 0x04
	sInternal        = 0x06
	sInvalidNS       = 0x0b
	sCmdSeqError     = 0x0c
	sNSWriteProtect  = 0x20
	sPRPOffset       = 0x13
	sLBARange        = 0x80
	sCQInvalid       = 0x100
	sInvalidQID      = 0x101
	sInvalidQSize    = 0x102
	sAERLimit        = 0x105
	sInvalidIV       = 0x108
	sInvalidLogPage  = 0x109
	sInvalidQDelete  = 0x10c
	sNotSaveable     = 0x10d
	sWriteFault      = 0x280
	sUnrecoveredRead = 0x281
	dnr              = 0x4000
)

// Admin opcodes (§5).
const (
	aDeleteSQ   = 0x00
	aCreateSQ   = 0x01
	aGetLogPage = 0x02
	aDeleteCQ   = 0x04
	aCreateCQ   = 0x05
	aIdentify   = 0x06
	aAbort      = 0x08
	aSetFeature = 0x09
	aGetFeature = 0x0a
	aAsyncEvent = 0x0c
)

// NVM opcodes (§6).
const (
	oFlush       = 0x00
	oWrite       = 0x01
	oRead        = 0x02
	oWriteZeroes = 0x08
	oDSM         = 0x09
)

// maxSegs bounds a transfer's PRP segments: the first page plus one per
// minimum-size page of MDTS.
const (
	maxSegs    = maxXfer/minPage + 1
	maxPRPHops = maxSegs + 2
	dsmMax     = 256
	tempOver   = 0x157 // QEMU 7.2 NVME_TEMPERATURE_WARNING (343 K)
	// maxNSID is Identify's NN: QEMU 7.2's NVME_MAX_NAMESPACES; only
	// namespace 1 is active.
	maxNSID = 256
	temp    = 0x143 // QEMU 7.2 NVME_TEMPERATURE (323 K)
)

type seg struct {
	addr uint64
	n    uint32
}

// slot is one command from fetch to completion, reused.
type slot struct {
	c     *Controller
	idx   int
	admin bool

	busy, waiting bool
	next          *slot // the CQ's waiting list
	sqid          uint16
	sqgen         uint32
	gen           uint64

	cmd    [64]byte
	cid    uint16
	dw0    uint32
	status uint16

	segs  [maxSegs]seg
	nseg  int
	xlen  int
	raw   [8 * maxSegs]byte // a PRP list page's entries
	req   block.Request
	bufs  [1][]byte
	buf   []byte
	write bool
	// DSM: the ranges in buf, the next one to discard.
	nr, ri int

	doneFn func(*block.Request)
}

func (s *slot) dw(i int) uint32 { return rd32(s.cmd[4*i:]) }

// finish completes the command with st (and dw0 set before).
func (c *Controller) finishLocked(s *slot, st uint16) {
	// DNR on every error but media errors and Invalid Queue Deletion
	// (QEMU 7.2 answers that one without it).
	if st != sSuccess && st&0x700 != 0x200 && st != sInvalidQDelete {
		st |= dnr
	}
	s.status = st
	c.completeLocked(s)
}

// mapPRPLocked turns PRP1/PRP2 into the slot's segments for n bytes
// (NVMe 1.4 §4.3). n is at most maxXfer; list walks are bounded by the
// entries the transfer needs and by maxPRPHops list pages.
func (c *Controller) mapPRPLocked(s *slot, n int) uint16 {
	prp1, prp2 := rd64(s.cmd[24:]), rd64(s.cmd[32:])
	ps := uint64(1) << c.pageBits
	s.nseg, s.xlen = 0, n
	if n == 0 {
		return sSuccess
	}
	if prp1&3 != 0 {
		return sPRPOffset
	}
	add := func(a uint64, l uint64) bool {
		if s.nseg == maxSegs || a+l < a {
			return false
		}
		s.segs[s.nseg] = seg{a, uint32(l)}
		s.nseg++
		return true
	}
	first := min(uint64(n), ps-prp1&(ps-1))
	if !add(prp1, first) {
		return sInvalidField // wraps the address space
	}
	rem := uint64(n) - first
	if rem == 0 {
		return sSuccess
	}
	if rem <= ps {
		if prp2&(ps-1) != 0 {
			return sPRPOffset
		}
		if !add(prp2, rem) {
			return sInvalidField
		}
		return sSuccess
	}
	if prp2&7 != 0 {
		return sPRPOffset
	}
	list := prp2
	for hops := 0; rem > 0; hops++ {
		if hops == maxPRPHops {
			return sInvalidField
		}
		avail := (ps - list&(ps-1)) / 8
		need := (rem + ps - 1) / ps
		cnt := min(avail, need)
		more := need > avail // the page's last entry points to the next list
		if cnt > maxSegs {
			return sInvalidField
		}
		raw := s.raw[:]
		if c.mem.Read(memory.GPA(list), raw[:cnt*8]) != nil {
			return sDataTransfer
		}
		data := cnt
		if more {
			data--
		}
		for i := range data {
			e := rd64(raw[i*8:])
			if e&(ps-1) != 0 {
				return sPRPOffset
			}
			l := min(rem, ps)
			if !add(e, l) {
				return sInvalidField
			}
			rem -= l
		}
		if more {
			list = rd64(raw[(cnt-1)*8:])
			if list&7 != 0 {
				return sPRPOffset
			}
		}
	}
	return sSuccess
}

// xfer copies between p and the mapped segments (c.mu held).
func (c *Controller) xfer(s *slot, p []byte, toGuest bool) error {
	for i := range s.nseg {
		g := s.segs[i]
		n := min(int(g.n), len(p))
		if n == 0 {
			break
		}
		var err error
		if toGuest {
			err = c.mem.Write(memory.GPA(g.addr), p[:n])
		} else {
			err = c.mem.Read(memory.GPA(g.addr), p[:n])
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	if len(p) != 0 {
		return errShortPRP
	}
	return nil
}

var errShortPRP = errors.New("nvme: transfer longer than its PRPs")

// sendData maps the command's PRPs for len(p) bytes and writes p there.
func (c *Controller) sendDataLocked(s *slot, p []byte) uint16 {
	if st := c.mapPRPLocked(s, len(p)); st != sSuccess {
		return st
	}
	if c.xfer(s, p, true) != nil {
		return sDataTransfer
	}
	return sSuccess
}

// ioLocked starts an NVM command.
func (c *Controller) ioLocked(s *slot) {
	op := s.cmd[0]
	s.cid = uint16(s.dw(0) >> 16)
	if s.cmd[1]&0xc3 != 0 { // PSDT (SGLs) or FUSE
		c.finishLocked(s, sInvalidField)
		return
	}
	nsid := s.dw(1)
	if op == oFlush {
		if nsid != 1 && nsid != 0xffffffff {
			c.finishLocked(s, sInvalidNS)
			return
		}
		s.req = block.Request{Op: block.OpFlush, Done: s.doneFn}
		c.submitLocked(s)
		return
	}
	if op != oRead && op != oWrite && op != oWriteZeroes && op != oDSM {
		c.finishLocked(s, sInvalidOpcode)
		return
	}
	if nsid != 1 {
		// QEMU 7.2 nvme_io_cmd: an inactive NSID is Invalid Field.
		st := uint16(sInvalidField)
		if nsid == 0 || nsid > maxNSID {
			st = sInvalidNS
		}
		c.finishLocked(s, st)
		return
	}
	if op == oDSM {
		c.dsmLocked(s)
		return
	}
	slba := rd64(s.cmd[40:])
	dw12 := s.dw(12)
	nlb := uint64(dw12&0xffff) + 1
	if slba >= c.nsze || nlb > c.nsze-slba {
		c.finishLocked(s, sLBARange)
		return
	}
	if op != oRead && c.info.ReadOnly {
		c.finishLocked(s, sNSWriteProtect)
		return
	}
	off, n := int64(slba*lbaSize), int64(nlb*lbaSize)
	if op == oWriteZeroes {
		// DEAC (bit 25) lets the range be deallocated.
		s.req = block.Request{Op: block.OpWriteZeroes, Off: off, Len: n, Unmap: dw12&(1<<25) != 0 && c.unmap, Done: s.doneFn}
		c.writeCmds++
		c.submitLocked(s)
		return
	}
	if n > maxXfer {
		c.finishLocked(s, sInvalidField)
		return
	}
	if st := c.mapPRPLocked(s, int(n)); st != sSuccess {
		c.finishLocked(s, st)
		return
	}
	if s.buf == nil {
		s.buf = make([]byte, maxXfer) // once per slot
	}
	s.bufs[0] = s.buf[:n]
	s.write = op == oWrite
	s.req = block.Request{Op: block.OpRead, Off: off, Bufs: s.bufs[:], Done: s.doneFn}
	if s.write {
		if c.xfer(s, s.buf[:n], false) != nil {
			c.finishLocked(s, sDataTransfer)
			return
		}
		s.req.Op, s.req.FUA = block.OpWrite, dw12&(1<<30) != 0 || !c.wce
		c.writeCmds++
		c.writeBytes += uint64(n)
	} else {
		c.readCmds++
		c.readBytes += uint64(n)
	}
	c.submitLocked(s)
}

// dsmLocked is Dataset Management (§6.7): with AD the ranges are checked
// and discarded one after the other; without, it is a hint.
func (c *Controller) dsmLocked(s *slot) {
	nr := int(s.dw(10)&0xff) + 1
	if s.dw(11)&4 == 0 {
		c.finishLocked(s, sSuccess)
		return
	}
	if c.info.ReadOnly {
		c.finishLocked(s, sNSWriteProtect)
		return
	}
	if st := c.mapPRPLocked(s, nr*16); st != sSuccess {
		c.finishLocked(s, st)
		return
	}
	if s.buf == nil {
		s.buf = make([]byte, maxXfer)
	}
	if c.xfer(s, s.buf[:nr*16], false) != nil {
		c.finishLocked(s, sDataTransfer)
		return
	}
	for i := range nr {
		r := s.buf[i*16:]
		l, slba := uint64(rd32(r[4:])), rd64(r[8:])
		if l != 0 && (slba >= c.nsze || l > c.nsze-slba) {
			c.finishLocked(s, sLBARange)
			return
		}
	}
	if !c.unmap {
		c.finishLocked(s, sSuccess)
		return
	}
	s.nr, s.ri = nr, 0
	c.nextDiscardLocked(s)
}

// nextDiscardLocked submits the next non-empty range or finishes.
func (c *Controller) nextDiscardLocked(s *slot) {
	for s.ri < s.nr {
		r := s.buf[s.ri*16:]
		s.ri++
		l, slba := int64(rd32(r[4:])), int64(rd64(r[8:]))
		if l == 0 {
			continue
		}
		s.req = block.Request{Op: block.OpDiscard, Off: slba * lbaSize, Len: l * lbaSize, Done: s.doneFn}
		c.submitLocked(s)
		return
	}
	c.finishLocked(s, sSuccess)
}

func (c *Controller) submitLocked(s *slot) {
	s.req.Tag = s.gen
	if c.bq.Submit(&s.req) != nil {
		c.finishLocked(s, sInternal)
	}
}

// ioDone is a block request's completion, on a queue worker.
func (s *slot) ioDone(r *block.Request) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.runKicksLocked()
	if r.Tag != c.gen {
		c.freeSlot(s) // a controller reset dropped it
		return
	}
	if r.Err != nil {
		switch r.Op {
		case block.OpRead:
			c.finishLocked(s, sUnrecoveredRead)
		case block.OpWrite, block.OpWriteZeroes:
			c.finishLocked(s, sWriteFault)
		default:
			c.finishLocked(s, sInternal)
		}
		return
	}
	switch r.Op {
	case block.OpRead:
		if c.xfer(s, s.buf[:s.xlen], true) != nil {
			c.finishLocked(s, sDataTransfer)
			return
		}
	case block.OpDiscard:
		c.nextDiscardLocked(s)
		return
	}
	c.finishLocked(s, sSuccess)
}
