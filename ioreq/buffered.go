package ioreq

import (
	"fmt"
	"sync"
	"sync/atomic"

	"godm/hyp/xenabi"
)

// RingSlots is the number of 8-byte entries in the buffered ring
// (IOREQ_BUFFER_SLOT_NUM, xen/include/public/hvm/ioreq.h).
const RingSlots = xenabi.IOREQ_BUFFER_SLOT_NUM

// ringEntriesOff is the offset of buf_ioreq[0] in struct buffered_iopage
// (after the two 32-bit pointers).
const ringEntriesOff = 8

// Ring consumes Xen's buffered ioreq ring (struct buffered_iopage): writes
// Xen queues without waiting for an answer (stdvga memory writes, the
// TIMEOFFSET broadcast). Entries are handled in order; they must all be
// handled before any synchronous request that follows them, so a worker
// drains the ring before it handles a synchronous request.
//
// Pointer protocol (HVM_IOREQSRV_BUFIOREQ_ATOMIC, xen/common/ioreq.c
// ioreq_send_buffered): Xen fills the entries, issues smp_wmb, then
// advances write_pointer; it may at any time subtract a multiple of
// RingSlots from both pointers with one 64-bit cmpxchg. The consumer
// therefore reads both pointers in one atomic 64-bit load (a consistent
// pair), and advances read_pointer only with an atomic add, which commutes
// with Xen's canonicalisation. The legacy (non-atomic) mode works the same
// way until the 32-bit pointers wrap, which is why it is not the default.
type Ring struct {
	ptrs    *uint64 // read_pointer (low half) | write_pointer (high half)
	readPtr *uint32
	entries []*uint64

	mu sync.Mutex // serialises drains between workers
}

// NewRing wraps page (a 4 KiB, 8-byte aligned buffered iopage).
func NewRing(page []byte) (*Ring, error) {
	if len(page) < ringEntriesOff+8*RingSlots || !aligned8(page) {
		return nil, fmt.Errorf("buffered page of %d bytes: %w", len(page), ErrBadPage)
	}
	r := &Ring{ptrs: ptr64(page, 0), readPtr: ptr32(page, 0), entries: make([]*uint64, RingSlots)}
	for i := range r.entries {
		r.entries[i] = ptr64(page, ringEntriesOff+8*i)
	}
	return r, nil
}

// Empty reports whether the ring holds no unconsumed entries: the cheap
// check done before every synchronous request.
func (r *Ring) Empty() bool {
	p := atomic.LoadUint64(r.ptrs)
	return uint32(p) == uint32(p>>32)
}

// Drain handles the entries present when it starts, at most one ring's
// worth (RingSlots), so a guest flooding the ring cannot starve the
// synchronous requests. It returns the number of entries consumed and
// whether entries remain (the caller revisits promptly). Safe for
// concurrent use; callers after the first wait for it, which keeps the
// ordering guarantee for every worker.
func (r *Ring) Drain(d *Dispatcher, scratch []byte, st *Stats) (consumed int, more bool) {
	if r.Empty() {
		return 0, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Acquire: pairs with Xen's smp_wmb between writing the entries and
	// advancing write_pointer; the entries read below are complete.
	p := atomic.LoadUint64(r.ptrs)
	rd, wr := uint32(p), uint32(p>>32)
	avail := wr - rd
	if avail == 0 {
		return 0, false
	}
	st.bufPasses.Add(1)
	if avail > RingSlots {
		// Xen never queues more than a ring's worth; these pointers are
		// not Xen's. Skip everything rather than read stale entries.
		st.bufOverrun.Add(1)
		atomic.AddUint32(r.readPtr, avail)
		return int(avail), false
	}
	var req Request
	n := avail
	i := uint32(0)
	for i < n {
		e := atomic.LoadUint64(r.entries[(rd+i)%RingSlots])
		w0, data := uint32(e), uint32(e>>32)
		req = Request{
			Type:  Type(w0 & xenabi.BufIoreqTypeMask),
			Addr:  uint64(w0 >> xenabi.BufIoreqAddrShift & xenabi.BufIoreqAddrMask),
			Size:  1 << (w0 >> xenabi.BufIoreqSizeShift & xenabi.BufIoreqSizeMask),
			Count: 1,
			Data:  uint64(data),
			// Buffered requests are writes by construction (Xen only
			// buffers writes); a read could not be answered anyway.
		}
		i++
		if req.Size == 8 {
			// An 8-byte write spans two entries; the second carries the
			// high half of the data.
			if i >= n {
				st.bufIncomplete.Add(1)
				continue
			}
			hi := atomic.LoadUint64(r.entries[(rd+i)%RingSlots])
			req.Data |= uint64(uint32(hi>>32)) << 32
			i++
		}
		st.buffered[kindOf(req.Type)].Add(1)
		d.Handle(&req, scratch, st)
	}
	// Release: the entries are no longer needed once read_pointer moves
	// (Xen reuses them); the atomic add is Xen's expected update.
	atomic.AddUint32(r.readPtr, n)
	if n == RingSlots {
		st.bufFull.Add(1)
	}
	return int(n), !r.Empty()
}
