package virtio

import (
	"fmt"

	"godm/devices/savestate"
)

// WriteState appends the transport's registers and each queue's
// configuration and ring positions (the device is paused and idle: no
// chain is held). ISR and the INTx level go with it.
func (t *Transport) WriteState(w *savestate.Writer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w.U32(t.status.Load())
	w.U64(t.negotiated.Load())
	w.U32(t.generation.Load())
	w.Bool(t.broken.Load())
	w.U32(t.dfSel)
	w.U32(t.gfSel)
	w.U32(t.gf[0])
	w.U32(t.gf[1])
	w.U16(t.queueSel)
	w.U16(uint16(t.cfgVector.Load()))
	t.irqMu.Lock()
	w.U32(t.isr)
	w.Bool(t.line)
	t.irqMu.Unlock()
	w.U16(uint16(len(t.queues)))
	for i, q := range t.queues {
		mq := &t.modernQ[i]
		for _, v := range [6]uint32{mq.desc[0], mq.desc[1], mq.avail[0], mq.avail[1], mq.used[0], mq.used[1]} {
			w.U32(v)
		}
		q.mu.Lock()
		w.U16(q.size)
		w.Bool(q.enabled)
		w.U64(q.desc)
		w.U64(q.avail)
		w.U64(q.used)
		w.U16(q.vector)
		w.U16(q.lastAvail)
		w.U16(q.usedIdx)
		w.U16(q.signalled)
		w.Bool(q.signalledOK)
		q.mu.Unlock()
	}
}

// ReadState restores what WriteState wrote; values the guest could not
// have set are refused. Rings are pinned again on first use.
func (t *Transport) ReadState(r *savestate.Reader) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	status := r.U32()
	neg := r.U64()
	gen := r.U32()
	broken := r.Bool()
	dfSel, gfSel, gf0, gf1 := r.U32(), r.U32(), r.U32(), r.U32()
	qsel := r.U16()
	cv := r.U16()
	isr := r.U32()
	line := r.Bool()
	nq := r.U16()
	if r.Err() != nil {
		return r.Err()
	}
	bad := func(what string, v any) error {
		return fmt.Errorf("virtio: snapshot %s %v: %w", what, v, savestate.ErrFormat)
	}
	switch {
	case int(nq) != len(t.queues):
		return bad("queues", nq)
	case status > 0xff:
		return bad("status", status)
	case neg&^t.hostF != 0:
		return bad("features", neg)
	case qsel >= MaxQueueSize:
		return bad("queue select", qsel)
	case cv != NoVector && t.checkVector(cv) != cv:
		return bad("config vector", cv)
	case isr > 3:
		return bad("isr", isr)
	}
	type qs struct {
		mq                   modernQueue
		size                 uint16
		enabled              bool
		desc, avail, used    uint64
		vector, last, usedIx uint16
		sig                  uint16
		sigOK                bool
	}
	all := make([]qs, nq)
	for i := range all {
		s := &all[i]
		s.mq = modernQueue{desc: [2]uint32{r.U32(), r.U32()}, avail: [2]uint32{r.U32(), r.U32()}, used: [2]uint32{r.U32(), r.U32()}}
		s.size, s.enabled = r.U16(), r.Bool()
		s.desc, s.avail, s.used = r.U64(), r.U64(), r.U64()
		s.vector, s.last, s.usedIx, s.sig, s.sigOK = r.U16(), r.U16(), r.U16(), r.U16(), r.Bool()
		if r.Err() != nil {
			return r.Err()
		}
		if s.size == 0 || s.size > MaxQueueSize {
			return bad("queue size", s.size)
		}
		if s.vector != NoVector && t.checkVector(s.vector) != s.vector {
			return bad("queue vector", s.vector)
		}
	}
	t.status.Store(status)
	t.negotiated.Store(neg)
	t.generation.Store(gen)
	t.broken.Store(broken)
	t.dfSel, t.gfSel, t.gf, t.queueSel = dfSel, gfSel, [2]uint32{gf0, gf1}, qsel
	t.cfgVector.Store(uint32(cv))
	for i, q := range t.queues {
		s := &all[i]
		t.modernQ[i] = s.mq
		q.mu.Lock()
		q.unpinLocked()
		q.pinErr = false
		q.size, q.enabled = s.size, s.enabled
		q.desc, q.avail, q.used = s.desc, s.avail, s.used
		q.vector, q.lastAvail, q.usedIdx, q.signalled, q.signalledOK = s.vector, s.last, s.usedIx, s.sig, s.sigOK
		q.eventIdx = neg&FEventIdx != 0
		q.mu.Unlock()
	}
	t.irqMu.Lock()
	t.isr = isr
	t.setLineLocked(line)
	t.irqMu.Unlock()
	return nil
}
