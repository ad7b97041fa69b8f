package nvme

import (
	"errors"
	"fmt"

	"godm/devices/savestate"
)

// WriteState appends the controller's state (pause first: Busy must be
// false). Completions waiting for room in their CQ are saved as entries.
func (c *Controller) WriteState(w *savestate.Writer) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.slots {
		if s.busy && !s.waiting {
			return errors.New("nvme: command in flight")
		}
	}
	w.U32(c.cc)
	w.U32(c.csts)
	w.U32(c.aqa)
	w.U64(c.asq)
	w.U64(c.acq)
	w.U32(c.intms)
	w.U8(uint8(c.pageBits))
	w.U64(c.irqStatus[0])
	w.U64(c.irqStatus[1])
	w.Bool(c.wce)
	w.Bool(c.qsCreated)
	for _, v := range []uint32{c.coalesce, c.asyncCfg, c.arb, c.power, c.tempThr, c.errRecov} {
		w.U32(v)
	}
	w.U8(uint8(c.naer))
	for i := range c.naer {
		w.U16(c.aers[i])
	}
	for _, v := range []uint64{c.readBytes, c.writeBytes, c.readCmds, c.writeCmds} {
		w.U64(v)
	}
	for i := range c.sqs {
		q := &c.sqs[i]
		w.Bool(q.valid)
		if !q.valid {
			continue
		}
		w.U64(q.base)
		w.U32(q.size)
		w.U32(q.head)
		w.U32(q.tail)
		w.U16(q.cqid)
	}
	for i := range c.cqs {
		q := &c.cqs[i]
		w.Bool(q.valid)
		if !q.valid {
			continue
		}
		w.U64(q.base)
		w.U32(q.size)
		w.U32(q.head)
		w.U32(q.tail)
		w.Bool(q.phase)
		w.Bool(q.ien)
		w.U16(q.iv)
		n := 0
		for s := q.wait; s != nil; s = s.next {
			n++
		}
		w.U16(uint16(n))
		for s := q.wait; s != nil; s = s.next {
			w.U16(s.sqid)
			w.U16(s.cid)
			w.U32(s.dw0)
			w.U16(s.status)
		}
	}
	return nil
}

// ReadState restores what WriteState wrote into a controller with no
// command in flight; every value is checked as a guest write would be.
func (c *Controller) ReadState(r *savestate.Reader) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resetLocked()
	bad := func(what string) error {
		err := fmt.Errorf("nvme: restore: %s out of range", what)
		r.Fail(err)
		c.resetLocked()
		return err
	}
	c.cc = r.U32()
	c.csts = r.U32()
	c.aqa = r.U32() & 0x0fff0fff
	c.asq = r.U64()
	c.acq = r.U64()
	c.intms = r.U32()
	pb := uint(r.U8())
	if c.cc&ccEN != 0 && (pb < 12 || pb > 16) {
		return bad("page size")
	}
	c.pageBits = pb
	c.irqStatus[0] = r.U64()
	c.irqStatus[1] = r.U64() & (1<<(Vectors-64) - 1)
	c.wce = r.Bool() && c.info.WriteCache
	c.qsCreated = r.Bool()
	for _, p := range []*uint32{&c.coalesce, &c.asyncCfg, &c.arb, &c.power, &c.tempThr, &c.errRecov} {
		*p = r.U32()
	}
	n := int(r.U8())
	if n > aerl+1 {
		return bad("AER count")
	}
	c.naer = n
	for i := range n {
		c.aers[i] = r.U16()
	}
	for _, p := range []*uint64{&c.readBytes, &c.writeBytes, &c.readCmds, &c.writeCmds} {
		*p = r.U64()
	}
	for i := range c.sqs {
		q := &c.sqs[i]
		if !r.Bool() {
			continue
		}
		q.valid = true
		q.base, q.size, q.head, q.tail, q.cqid = r.U64(), r.U32(), r.U32(), r.U32(), r.U16()
		if q.size < 2 || q.size > mqes+1 || q.head >= q.size || q.tail >= q.size || int(q.cqid) >= Vectors || (i == 0) != (q.cqid == 0) {
			return bad("submission queue")
		}
	}
	for i := range c.cqs {
		q := &c.cqs[i]
		if !r.Bool() {
			continue
		}
		q.valid = true
		q.base, q.size, q.head, q.tail = r.U64(), r.U32(), r.U32(), r.U32()
		q.phase, q.ien, q.iv = r.Bool(), r.Bool(), r.U16()
		if q.size < 2 || q.size > mqes+1 || q.head >= q.size || q.tail >= q.size || q.iv >= Vectors {
			return bad("completion queue")
		}
		nw := int(r.U16())
		if nw > len(c.slots) {
			return bad("waiting completions")
		}
		for range nw {
			sqid, cid, dw0, st := r.U16(), r.U16(), r.U32(), r.U16()
			if r.Err() != nil {
				break
			}
			if int(sqid) >= Vectors {
				return bad("waiting completion's queue")
			}
			free := &c.ioFree
			if sqid == 0 {
				free = &c.adminFree
			}
			if len(*free) == 0 {
				return bad("waiting completions")
			}
			s := (*free)[len(*free)-1]
			*free = (*free)[:len(*free)-1]
			s.busy, s.waiting, s.next = true, true, nil
			s.sqid, s.cid, s.dw0, s.status, s.gen = sqid, cid, dw0, st, c.gen
			if q.last == nil {
				q.wait = s
			} else {
				q.last.next = s
			}
			q.last = s
		}
	}
	if r.Err() != nil {
		c.resetLocked()
		return r.Err()
	}
	// Cross-checks: a ready controller has its admin queues; every SQ's
	// CQ exists; the reference counts follow.
	if c.csts&cstsRD != 0 && (c.cc&ccEN == 0 || !c.sqs[0].valid || !c.cqs[0].valid) {
		return bad("ready state")
	}
	for i := range c.sqs {
		q := &c.sqs[i]
		if !q.valid {
			continue
		}
		if !c.cqs[q.cqid].valid {
			return bad("submission queue's completion queue")
		}
		c.cqs[q.cqid].sqRefs++
	}
	for i := range c.cqs {
		for s := c.cqs[i].wait; s != nil; s = s.next {
			if !c.sqs[s.sqid].valid || c.sqs[s.sqid].cqid != uint16(i) {
				return bad("waiting completion's queue")
			}
			s.sqgen = c.sqs[s.sqid].gen
		}
	}
	c.intxLevel = !c.intxLevel // force the line to the restored level
	c.updateINTxLocked()
	c.kick = true
	return nil
}
