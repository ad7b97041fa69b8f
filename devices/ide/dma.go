package ide

import (
	"encoding/binary"

	"godm/block"
	"godm/memory"
)

// sgEntry is one guest buffer of a scatter-gather list.
type sgEntry struct{ addr, len uint32 }

// dmaJob is one DMA command's I/O on the drive's queue: the request (the
// job owns it; no allocation per request), a bounce buffer of at most
// dmaChunk bytes and, for ATA, the scatter-gather list the PRD table gave.
type dmaJob struct {
	ch     *channel
	req    block.Request
	bufs   [1][]byte
	bounce []byte
	busy   bool
	gen    uint64
	u      *unit
	kind   dmaKind
	flush  bool

	sg         [maxPRDs]sgEntry
	nsg        int
	sgi        int
	sgOff      uint32
	off, left  int64
	sector     int64
	count      uint32
	stay       bool
	atapiShift int // ATAPI: where the chunk's data starts in bounce
	trimPos    int // TRIM: the next range entry in the chunk
	chunk      int // TRIM: the chunk's length
}

func (j *dmaJob) init(ch *channel) {
	j.ch = ch
	j.req.Done = j.done
	j.req.Bufs = j.bufs[:]
}

// takeJob returns a free job or nil.
func (ch *channel) takeJob(u *unit) *dmaJob {
	for i := range ch.jobs {
		j := &ch.jobs[i]
		if !j.busy {
			if j.bounce == nil {
				j.bounce = make([]byte, dmaChunk+2352)
			}
			j.busy, j.gen, j.u, j.flush = true, ch.gen, u, false
			return j
		}
	}
	return nil
}

// jobRunning reports whether a job of the current generation is in flight.
func (ch *channel) jobRunning() bool {
	for i := range ch.jobs {
		if j := &ch.jobs[i]; j.busy && j.gen == ch.gen && !j.flush {
			return true
		}
	}
	return false
}

// sectorStartDMA is ide_sector_start_dma: the command waits for the bus
// master (or runs at once if it is already started).
func (u *unit) sectorStartDMA(kind dmaKind) {
	u.status = stREADY | stSEEK | stDRQ
	u.ioBufSize = 0
	u.dmaCmd = kind
	u.bufIndex = 0
	u.ch.startDMA(u, kind)
}

// startDMA is bmdma_start_dma.
func (ch *channel) startDMA(u *unit, kind dmaKind) {
	ch.bm.pending, ch.bm.pendUnit = kind, u.n
	ch.bm.curPrdLast, ch.bm.curPrdAddr, ch.bm.curPrdLen = false, 0, 0
	if ch.bm.status&bmStActive != 0 {
		ch.runDMA()
	}
}

// runDMA runs the command waiting for the engine (QEMU's dma_cb).
func (ch *channel) runDMA() {
	u := &ch.u[ch.bm.pendUnit&1]
	switch ch.bm.pending {
	case dmaRead, dmaWrite, dmaTrim:
		ch.ataDMA(u)
	case dmaATAPI:
		ch.atapiDMAStep(u, nil)
	}
}

// setInactive is ide_set_inactive: the engine no longer waits; more keeps
// the active bit (the PRDs described more than the transfer moved).
func (ch *channel) setInactive(more bool) {
	ch.bm.pending = dmaNone
	if more {
		ch.bm.status |= bmStActive
	} else {
		ch.bm.status &^= bmStActive
	}
}

// dmaError is ide_dma_error.
func (ch *channel) dmaError(u *unit) {
	u.abort()
	ch.setInactive(false)
	ch.setIRQ()
}

// readPRD fetches the next descriptor into the cursor; false at the end
// of the table (EOT seen, or one page of descriptors read).
func (ch *channel) readPRD() (bool, error) {
	bm := &ch.bm
	if bm.curPrdLast || bm.curAddr-bm.addr >= prdPage {
		return false, nil
	}
	prd := ch.prd[:] // the channel's: a local escaping to the interface would allocate
	if err := ch.c.mem.Read(memory.GPA(bm.curAddr), prd); err != nil {
		return false, err
	}
	bm.curAddr += 8
	addr := binary.LittleEndian.Uint32(prd[0:])
	size := binary.LittleEndian.Uint32(prd[4:])
	l := size & prdSizeMask
	if l == 0 {
		l = 0x10000
	}
	bm.curPrdLen, bm.curPrdAddr, bm.curPrdLast = l, addr, size&prdEOT != 0
	return true, nil
}

// prepare is bmdma_prepare_buf: the PRD table's buffers up to limit
// bytes into j.sg; it returns the bytes in the list and the bytes the
// table described.
func (ch *channel) prepare(j *dmaJob, limit int64) (prep, described int64, err error) {
	j.nsg = 0
	bm := &ch.bm
	for {
		if bm.curPrdLen == 0 {
			more, err := ch.readPRD()
			if err != nil {
				return 0, 0, err
			}
			if !more {
				return prep, described, nil
			}
		}
		l := bm.curPrdLen
		if n := min(limit-prep, int64(l)); n > 0 && j.nsg < len(j.sg) {
			j.sg[j.nsg] = sgEntry{bm.curPrdAddr, uint32(n)}
			j.nsg++
			prep += n
		}
		bm.curPrdAddr += l
		bm.curPrdLen = 0
		described += int64(l)
	}
}

// ataDMA starts an ATA DMA command's transfer (ide_dma_cb's first call).
func (ch *channel) ataDMA(u *unit) {
	j := ch.takeJob(u)
	if j == nil {
		ch.dmaError(u)
		return
	}
	limit := int64(u.nsector) * sectorSize
	prep, described, err := ch.prepare(j, limit)
	if err != nil {
		j.busy = false
		ch.dmaError(u)
		return
	}
	if prep < limit {
		// The PRDs are too short: the active bit goes, no interrupt.
		j.busy = false
		u.status = stREADY | stSEEK
		ch.setInactive(false)
		return
	}
	sector := u.getSector()
	if (u.dmaCmd != dmaTrim && !u.rangeOK(sector, uint64(u.nsector))) || u.q == nil {
		j.busy = false
		ch.dmaError(u)
		return
	}
	ch.bm.pending = dmaNone // running now
	j.kind = u.dmaCmd
	j.sector, j.count = sector, u.nsector
	j.off, j.left = sector*sectorSize, limit
	j.sgi, j.sgOff = 0, 0
	j.stay = described > limit
	ch.submitChunk(j)
}

// copySG moves n bytes between the bounce buffer and the list's guest
// buffers at the job's cursor.
func (j *dmaJob) copySG(p []byte, toGuest bool) error {
	mem := j.ch.c.mem
	for len(p) > 0 && j.sgi < j.nsg {
		e := j.sg[j.sgi]
		n := min(uint32(len(p)), e.len-j.sgOff)
		gpa := memory.GPA(e.addr + j.sgOff)
		var err error
		if toGuest {
			err = mem.Write(gpa, p[:n])
		} else {
			err = mem.Read(gpa, p[:n])
		}
		if err != nil {
			return err
		}
		p = p[n:]
		j.sgOff += n
		if j.sgOff == e.len {
			j.sgi++
			j.sgOff = 0
		}
	}
	return nil
}

// submitChunk queues the job's next chunk (channel lock held).
func (ch *channel) submitChunk(j *dmaJob) {
	u := j.u
	n := min(j.left, dmaChunk)
	p := j.bounce[:n]
	j.bufs[0] = p
	j.req.Off = j.off
	j.req.FUA = false
	if j.kind == dmaWrite || j.kind == dmaTrim {
		if err := j.copySG(p, false); err != nil {
			j.busy = false
			ch.dmaError(u)
			return
		}
		if j.kind == dmaTrim {
			j.trimPos, j.chunk = 0, len(p)
			ch.trimNext(j)
			return
		}
		j.req.Op = block.OpWrite
		j.req.FUA = !u.wcache
	} else {
		j.req.Op = block.OpRead
	}
	if err := u.q.Submit(&j.req); err != nil {
		j.busy = false
		ch.dmaError(u)
	}
}

// done completes one request of the job, on the queue's worker.
func (j *dmaJob) done(r *block.Request) {
	ch := j.ch
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if j.gen != ch.gen {
		j.busy = false // reset under it: nothing lands
		return
	}
	u := j.u
	switch {
	case j.flush:
		j.busy = false
		u.flushDone(r.Err)
	case j.kind == dmaTrim:
		ch.trimNext(j) // a discard is advisory: its error is not the guest's
	case j.kind == dmaATAPI:
		if r.Err != nil {
			j.busy = false
			u.atapiIOError(r.Err)
			ch.setInactive(false)
			return
		}
		ch.atapiDMAStep(u, j)
	default:
		ch.ataChunkDone(j, r.Err)
	}
}

// trimNext discards the chunk's next non-empty range (ide_issue_trim_cb:
// 6-byte LBA and 2-byte count per entry; a range past the end fails the
// command), or moves on to the next chunk.
func (ch *channel) trimNext(j *dmaJob) {
	u := j.u
	for j.trimPos+8 <= j.chunk {
		e := binary.LittleEndian.Uint64(j.bounce[j.trimPos:])
		j.trimPos += 8
		sector, count := int64(e&0xffffffffffff), uint64(e>>48)
		if count == 0 {
			continue
		}
		if !u.rangeOK(sector, count) {
			j.busy = false
			ch.dmaError(u)
			return
		}
		if !u.discard {
			continue // discard=ignore, QEMU's default: accepted, nothing freed
		}
		j.req.Op = block.OpDiscard
		j.req.Off, j.req.Len = sector*sectorSize, int64(count)*sectorSize
		if err := u.q.Submit(&j.req); err != nil {
			j.busy = false
			ch.dmaError(u)
		}
		return
	}
	j.off += int64(j.chunk)
	j.left -= int64(j.chunk)
	if j.left > 0 {
		ch.submitChunk(j)
		return
	}
	ch.finishATA(j)
}

func (ch *channel) ataChunkDone(j *dmaJob, ioErr error) {
	u := j.u
	if ioErr != nil {
		j.busy = false
		ch.dmaError(u)
		return
	}
	n := int64(len(j.bufs[0]))
	if j.kind == dmaRead {
		if err := j.copySG(j.bufs[0], true); err != nil {
			j.busy = false
			ch.dmaError(u)
			return
		}
	}
	j.off += n
	j.left -= n
	if j.left > 0 {
		ch.submitChunk(j)
		return
	}
	ch.finishATA(j)
}

// finishATA completes an ATA DMA command (the end of ide_dma_cb).
func (ch *channel) finishATA(j *dmaJob) {
	u := j.u
	j.busy = false
	u.setSector(j.sector + int64(j.count))
	u.nsector = 0
	u.status = stREADY | stSEEK
	ch.setIRQ()
	ch.setInactive(j.stay && !ch.bm.stopped)
}

// flush is ide_flush_cache: BSY until the drive's cache is on stable
// storage.
func (u *unit) flush() {
	if !u.has {
		u.flushDone(nil)
		return
	}
	if u.q == nil {
		u.rwError() // no medium (QEMU: -ENOMEDIUM, reported)
		return
	}
	u.status |= stBUSY
	j := u.ch.takeJob(u)
	if j == nil {
		u.flushDone(u.drv.Flush())
		return
	}
	j.flush = true
	j.req.Op = block.OpFlush
	j.bufs[0] = nil
	if err := u.q.Submit(&j.req); err != nil {
		j.busy = false
		u.flushDone(err)
	}
}

func (u *unit) flushDone(err error) {
	if err != nil {
		u.rwError()
		return
	}
	u.status = stREADY | stSEEK
	u.ch.setIRQ()
}

// rwBuf is bmdma_rw_buf towards the guest: bytes src[bufIndex:ioBufSize]
// to the PRD cursor's buffers; false when the table ends first.
func (ch *channel) rwBuf(u *unit, src []byte) (bool, error) {
	bm := &ch.bm
	for {
		l := u.ioBufSize - u.bufIndex
		if l <= 0 {
			return true, nil
		}
		if bm.curPrdLen == 0 {
			more, err := ch.readPRD()
			if err != nil || !more {
				return false, err
			}
		}
		l = min(l, int(bm.curPrdLen))
		if err := ch.c.mem.Write(memory.GPA(bm.curPrdAddr), src[u.bufIndex:u.bufIndex+l]); err != nil {
			return false, err
		}
		bm.curPrdAddr += uint32(l)
		bm.curPrdLen -= uint32(l)
		u.bufIndex += l
	}
}

// atapiDMAStep is ide_atapi_cmd_read_dma_cb: j is the job whose read just
// completed (nil on the engine's start).
func (ch *channel) atapiDMAStep(u *unit, j *dmaJob) {
	src := u.buf
	if j != nil {
		src = j.bounce[j.atapiShift:]
	}
	if u.ioBufSize > 0 {
		if u.lba != -1 {
			n := int64(u.ioBufSize >> 11)
			if u.cdSectorSize == 2352 {
				n = 1
				cdDataToRaw(src, u.lba)
			}
			u.lba += n
		}
		u.packetSize -= int64(u.ioBufSize)
		ok, err := ch.rwBuf(u, src)
		if err != nil {
			if j != nil {
				j.busy = false
			}
			ch.dmaError(u)
			return
		}
		if !ok {
			if j != nil {
				j.busy = false
			}
			ch.setInactive(false)
			return
		}
	}
	ch.bm.pending = dmaNone
	if u.packetSize <= 0 {
		if j != nil {
			j.busy = false
		}
		u.status = stREADY | stSEEK
		u.nsector = u.nsector&^7 | reasonIO | reasonCD
		ch.setIRQ()
		ch.setInactive(false)
		return
	}
	if j == nil {
		if j = ch.takeJob(u); j == nil {
			ch.dmaError(u)
			return
		}
		j.kind = dmaATAPI
	}
	u.bufIndex = 0
	n, shift := int(min(u.packetSize>>11, dmaChunk/2048)), 0
	if u.cdSectorSize == 2352 {
		n, shift = 1, 16
		u.ioBufSize = 2352
	} else {
		u.ioBufSize = n * 2048
	}
	if n == 0 || u.q == nil {
		j.busy = false
		u.atapiCmdError(senseNotReady, ascMediumNotPresent)
		ch.setInactive(false)
		return
	}
	j.atapiShift = 0
	j.bufs[0] = j.bounce[shift : shift+n*2048]
	j.req.Op = block.OpRead
	j.req.Off = u.lba * 2048
	if err := u.q.Submit(&j.req); err != nil {
		j.busy = false
		u.atapiIOError(err)
		ch.setInactive(false)
	}
}
