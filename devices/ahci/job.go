package ahci

import (
	"errors"

	"godm/block"
	"godm/memory"
)

// maxPRDs is the most entries a PRDT holds (the header's 16-bit PRDTL).
const maxPRDs = 0xffff

// prdSize is one PRDT entry: the data base address (64 bits), a reserved
// dword and the byte count minus one in bits 0..21 (AHCI 1.3 §4.2.3.3).
const prdSize = 16

// errPRD ends a command whose PRDT points outside guest memory.
var errPRD = errors.New("ahci: PRDT outside guest memory")

// decodePRD decodes one PRDT entry: the segment's address and length.
func decodePRD(e []byte) (addr uint64, n uint32) {
	return le64(e[0:8]), le32(e[12:16])&0x3fffff + 1
}

// cmdHeader is a command list entry (AHCI 1.3 §4.2.2).
type cmdHeader struct {
	cfl   uint8 // command FIS length in dwords
	atapi bool
	write bool
	prdtl int
	prdbc uint32
	table uint64
}

func decodeHeader(h []byte) cmdHeader {
	opts := le16(h[0:2])
	return cmdHeader{
		cfl: uint8(opts & 0x1f), atapi: opts&0x20 != 0, write: opts&0x40 != 0,
		prdtl: int(le16(h[2:4])), prdbc: le32(h[4:8]), table: le64(h[8:16]),
	}
}

// prdCursor walks a PRDT: entry i, byte off inside it.
type prdCursor struct {
	base uint64 // address of entry 0
	n    int    // entries
	i    int
	off  uint32
}

// next returns the next segment of at most max bytes, or n 0 at the
// table's end. Each call reads one entry (16 bytes) of guest memory.
func (c *prdCursor) next(mem memory.Accessor, max int, e *[prdSize]byte) (addr uint64, n int, err error) {
	for c.i < c.n {
		if err := mem.Read(memory.GPA(c.base+uint64(c.i)*prdSize), e[:]); err != nil {
			return 0, 0, errPRD
		}
		a, l := decodePRD(e[:])
		if c.off >= l {
			c.i++
			c.off = 0
			continue
		}
		n = min(int(l-c.off), max)
		addr = a + uint64(c.off)
		c.off += uint32(n)
		if c.off >= l {
			c.i++
			c.off = 0
		}
		return addr, n, nil
	}
	return 0, 0, nil
}

// job is the command a port runs in the background.
type job struct {
	slot    int
	tag     int // NCQ tag; -1: not queued
	hdrAddr uint64
	write   bool
	flush   bool
	lba48   bool
	lba     uint64
	left    int64 // bytes still to move
	done    uint32
	cur     prdCursor
	start   prdCursor // the current chunk's first segment
	n       int       // the current chunk's length

	// An ATAPI READ: frames of frameSize bytes from frame lba.
	atapi     bool
	frameSize int
	frames    int64 // frames still to read
	total     int64 // the transfer's bytes
}

// walk copies between the bounce buffer b and the segments from the
// cursor on (toGuest: b to guest memory), at most len(b) bytes; it
// returns the bytes the table described.
func (p *port) walk(c *prdCursor, b []byte, toGuest, copyData bool) (int, error) {
	got := 0
	for got < len(b) {
		a, n, err := c.next(p.c.mem, len(b)-got, &p.scratch)
		if err != nil {
			return got, err
		}
		if n == 0 {
			break
		}
		if copyData {
			if toGuest {
				err = p.c.mem.Write(memory.GPA(a), b[got:got+n])
			} else {
				err = p.c.mem.Read(memory.GPA(a), b[got:got+n])
			}
			if err != nil {
				return got, errPRD
			}
		}
		got += n
	}
	return got, nil
}

// pioIn moves a PIO data block to the guest through the PRDT (QEMU
// ahci_start_transfer): PRDBC counts the block whatever the table holds.
func (p *port) pioIn(hdrAddr uint64, data []byte) (uint32, error) {
	h := decodeHeader(p.hdr[:])
	c := prdCursor{base: h.table + 0x80, n: h.prdtl}
	if _, err := p.walk(&c, data, true, true); err != nil {
		return 0, err
	}
	return uint32(len(data)), nil
}

// startDMA starts a READ/WRITE DMA (tag < 0) or FPDMA QUEUED command. A
// command that cannot start is left aborted and not running.
func (p *port) startDMA(slot int, hdrAddr, lba, count uint64, write, lba48 bool, tag int) {
	h := decodeHeader(p.hdr[:])
	j := &p.job
	*j = job{slot: slot, tag: tag, hdrAddr: hdrAddr, write: write, lba: lba, lba48: lba48,
		left: int64(count) * 512,
		cur:  prdCursor{base: h.table + 0x80, n: h.prdtl}}
	if !p.rangeOK(lba, count) || h.prdtl == 0 || p.submitChunk() != nil {
		p.abort()
		return
	}
	p.running = true
}

// submitChunk queues the job's next chunk (at most dmaChunk bytes, whole
// sectors): the table must describe at least one sector more.
func (p *port) submitChunk() error {
	j := &p.job
	want := int(min(j.left, dmaChunk))
	j.start = j.cur
	got, err := p.walk(&j.cur, p.buf[:want], false, j.write)
	if err == nil && got < want {
		// The table ends early: move its whole sectors, then fail
		// (QEMU ide_dma_cb: a prepared size under one sector is an
		// error).
		want = got &^ 511
		if want == 0 {
			err = errPRD
		} else {
			j.cur = j.start
			_, err = p.walk(&j.cur, p.buf[:want], false, j.write)
		}
	}
	if err != nil {
		return err
	}
	j.n = want
	p.bufs[0] = p.buf[:want]
	p.req = block.Request{Op: block.OpRead, Off: int64(j.lba) * 512, Bufs: p.bufs[:], Tag: p.gen, Done: p.ioDoneFn}
	if j.write {
		p.req.Op = block.OpWrite
	}
	return p.submit()
}

func (p *port) submit() error {
	if p.q == nil {
		return block.ErrClosed // the medium was removed
	}
	p.inflight = true
	if err := p.q.Submit(&p.req); err != nil {
		p.inflight = false
		return err
	}
	return nil
}

// startFlush queues FLUSH CACHE; a flush that cannot start is left
// aborted and not running.
func (p *port) startFlush(slot int, hdrAddr uint64) {
	p.job = job{slot: slot, tag: -1, hdrAddr: hdrAddr, flush: true}
	p.req = block.Request{Op: block.OpFlush, Tag: p.gen, Done: p.ioDoneFn}
	if p.submit() != nil {
		p.abort()
		return
	}
	p.running = true
}

// ioDone is a request's completion (on the queue's worker).
func (p *port) ioDone(r *block.Request) {
	c := p.c
	c.mu.Lock()
	defer c.mu.Unlock()
	p.inflight = false
	if r.Tag != p.gen || !p.running {
		p.checkCmd() // a reset dropped the job; the port may go on
		return
	}
	j := &p.job
	if j.atapi {
		p.atapiReadDone(r)
		return
	}
	if r.Err != nil {
		p.jobFailed()
		return
	}
	if j.flush {
		p.tf.status = stREADY | stSEEK
		p.jobDone()
		return
	}
	if !j.write {
		cur := j.start
		if got, err := p.walk(&cur, p.buf[:j.n], true, true); err != nil || got != j.n {
			p.jobFailed()
			return
		}
	}
	j.done += uint32(j.n)
	j.left -= int64(j.n)
	j.lba += uint64(j.n) / 512
	if j.tag < 0 {
		p.setPRDBC(j.hdrAddr, j.done)
		p.setLBA(j.lba, j.lba48)
	}
	if j.left > 0 {
		if p.submitChunk() != nil {
			p.jobFailed()
		}
		return
	}
	p.tf.status = stREADY | stSEEK
	if j.tag < 0 {
		p.tf.nsector = 0
	}
	p.jobDone()
}

// jobFailed ends the job with ABRT (QEMU ide_dma_error / ncq_err).
func (p *port) jobFailed() {
	p.abort()
	if p.job.tag >= 0 {
		p.serr |= 1 << p.job.tag
	}
	p.jobDone()
}

// jobDone completes the job: the D2H FIS and the slot for a plain
// command, the SDB FIS for a queued one; then the next issued slot.
func (p *port) jobDone() {
	j := &p.job
	p.running = false
	if j.tag >= 0 {
		if p.serr&(1<<j.tag) == 0 {
			p.finished |= 1 << j.tag
		}
		p.writeSDB()
	} else {
		p.ci &^= 1 << j.slot
		p.busy = -1
		p.cmdDone()
	}
	p.checkCmd()
}

// ncq is process_ncq_command for READ/WRITE FPDMA QUEUED (the FIS: count
// in the feature bytes, the tag in count bits 7:3).
func (p *port) ncq(slot int, f []byte) {
	tag := int(f[12] >> 3)
	lba := uint64(f[10])<<40 | uint64(f[9])<<32 | uint64(f[8])<<24 | uint64(f[6])<<16 | uint64(f[5])<<8 | uint64(f[4])
	count := uint64(f[3]) | uint64(f[11])<<8
	if count == 0 {
		count = 0x10000
	}
	p.job = job{slot: slot, tag: tag}
	if f[2] != ataReadFPDMA && f[2] != ataWriteFPDMA {
		p.abort()
		p.serr |= 1 << tag
		return
	}
	h := decodeHeader(p.hdr[:])
	// QEMU: a PRDT shorter than the transfer fails with OFS.
	c := prdCursor{base: h.table + 0x80, n: h.prdtl}
	total := uint64(0)
	for total < count*512 {
		_, n, err := c.next(p.c.mem, int(count*512-total), &p.scratch)
		if err != nil || n == 0 {
			break
		}
		total += uint64(n)
	}
	if total < count*512 {
		p.abort()
		p.serr |= 1 << tag
		p.trigger(isOFS)
		return
	}
	// Out of range (QEMU finds out from the block layer's error) or a
	// segment outside guest memory: ncq_err, then the SDB FIS.
	p.startDMA(slot, 0, lba, count, f[2] == ataWriteFPDMA, true, tag)
	if !p.running {
		p.serr |= 1 << tag
		p.writeSDB()
	}
}
