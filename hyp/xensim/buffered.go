package xensim

import (
	"fmt"
	"sync/atomic"

	"godm/hyp"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// BufferedResult says how Xen delivered a write offered to the buffered
// ring.
type BufferedResult int

// Outcomes of VCPU.BufferedWrite.
const (
	// Buffered: the write went into the server's buffered ring.
	Buffered BufferedResult = iota + 1
	// Synchronous: the server has no ring or the ring was full, so the
	// write went through the vCPU's synchronous slot instead.
	Synchronous
	// Dropped: Xen's hvm_send_buffered_ioreq declines requests it cannot
	// encode (addr > 0xfffff, data_is_ptr, count != 1) by reporting them
	// handled, so the write is lost.
	Dropped
	// Unclaimed: no enabled server claims the address; the write is
	// dropped as by the null handler.
	Unclaimed
)

// String implements fmt.Stringer.
func (r BufferedResult) String() string {
	switch r {
	case Buffered:
		return "buffered"
	case Synchronous:
		return "synchronous"
	case Dropped:
		return "dropped"
	case Unclaimed:
		return "unclaimed"
	}
	return fmt.Sprintf("BufferedResult(%d)", int(r))
}

// BufferedWrite offers a write of size bytes to the buffered path, as
// Xen's stdvga code does for direct writes to 0xa0000-0xbffff: typ is
// IOREQ_TYPE_COPY (MMIO) or IOREQ_TYPE_PIO. The server is chosen by the
// usual routing. Reads are never buffered (use MMIORead/In).
func (v *VCPU) BufferedWrite(typ uint8, addr uint64, size int, data uint64) (BufferedResult, error) {
	if err := checkSize(size); err != nil {
		return 0, err
	}
	if typ != xenabi.IOREQ_TYPE_COPY && typ != xenabi.IOREQ_TYPE_PIO {
		return 0, fmt.Errorf("xensim: buffered write of ioreq type %d: %w", typ, unix.EINVAL)
	}
	p := request{addr: addr, data: data & sizeMask(uint32(size)), count: 1, size: uint32(size), typ: typ, dir: xenabi.IOREQ_WRITE}
	d := v.d
	s := d.s
	s.mu.RLock()
	if d.dead {
		s.mu.RUnlock()
		return 0, fmt.Errorf("xensim: %v vcpu%d: buffered %v: %w", d.id, v.id, p.describe(), hyp.ErrClosed)
	}
	srv := d.selectServer(&p)
	if srv == nil {
		s.mu.RUnlock()
		return Unclaimed, nil
	}
	switch srv.sendBuffered(&p) {
	case bufHandled:
		s.mu.RUnlock()
		return Buffered, nil
	case bufDeclined:
		s.mu.RUnlock()
		return Dropped, nil
	}
	// Fall back to the synchronous path (hvmemul_do_io).
	if !v.busy.CompareAndSwap(false, true) {
		s.mu.RUnlock()
		return 0, ErrBusy
	}
	defer v.busy.Store(false)
	slot, err := v.post(srv, &p)
	s.mu.RUnlock()
	if err != nil {
		return 0, err
	}
	_, err = v.await(srv, slot, &p)
	return Synchronous, err
}

type bufStatus int

const (
	bufHandled bufStatus = iota
	bufUnhandled
	bufDeclined
)

// sendBuffered is ioreq_send_buffered. Called with s.mu held (shared).
func (srv *server) sendBuffered(p *request) bufStatus {
	if srv.pages == nil || !srv.handlesBuf() {
		return bufUnhandled
	}
	if p.addr > 0xfffff || p.dataIsPtr || p.count != 1 {
		return bufDeclined
	}
	var sizeCode uint32
	qw := uint32(0)
	switch p.size {
	case 1:
		sizeCode = 0
	case 2:
		sizeCode = 1
	case 4:
		sizeCode = 2
	case 8:
		sizeCode, qw = 3, 1
	default:
		return bufUnhandled
	}
	pg := srv.pages.mem[bufPageOff : bufPageOff+pageSize]
	srv.bufMu.Lock()
	defer srv.bufMu.Unlock()
	rp := atomic.LoadUint32(u32at(pg, 0))
	wp := atomic.LoadUint32(u32at(pg, 4))
	if wp-rp > xenabi.IOREQ_BUFFER_SLOT_NUM {
		// read_pointer ran past write_pointer: the device model moved it
		// without an atomic add (or scribbled on it). Xen sees a full
		// ring.
		srv.d.s.violation(srv.d.id, 0, "buffered ring of server %d: read pointer %d past write pointer %d", srv.id, rp, wp)
	}
	if wp-rp >= xenabi.IOREQ_BUFFER_SLOT_NUM-qw {
		return bufUnhandled // full: the synchronous path takes it
	}
	dir := uint32(0)
	if p.dir == xenabi.IOREQ_READ {
		dir = 1
	}
	w0 := uint32(p.typ) | dir<<xenabi.BufIoreqDirShift | sizeCode<<xenabi.BufIoreqSizeShift |
		uint32(p.addr&xenabi.BufIoreqAddrMask)<<xenabi.BufIoreqAddrShift
	put := func(i uint32, data uint32) {
		o := 8 + int(i%xenabi.IOREQ_BUFFER_SLOT_NUM)*8
		atomic.StoreUint32(u32at(pg, o), w0)
		atomic.StoreUint32(u32at(pg, o+4), data)
	}
	put(wp, uint32(p.data))
	if qw != 0 {
		put(wp+1, uint32(p.data>>32))
	}
	atomic.StoreUint32(u32at(pg, 4), wp+1+qw)
	// Canonicalise the pointers with a 64-bit cmpxchg (ATOMIC mode).
	for n := qw; srv.bufMode == xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC && n < xenabi.IOREQ_BUFFER_SLOT_NUM; n++ {
		full := atomic.LoadUint64(u64at(pg, 0))
		r, w := uint32(full), uint32(full>>32)
		if r < xenabi.IOREQ_BUFFER_SLOT_NUM {
			break
		}
		k := r / xenabi.IOREQ_BUFFER_SLOT_NUM * xenabi.IOREQ_BUFFER_SLOT_NUM
		atomic.CompareAndSwapUint64(u64at(pg, 0), full, uint64(r-k)|uint64(w-k)<<32)
	}
	srv.d.s.xenNotify(srv.d, srv.bufPort)
	return bufHandled
}

// SendTimeOffset broadcasts an IOREQ_TYPE_TIMEOFFSET request through the
// buffered rings of all enabled servers, as Xen does when the guest moves
// its RTC (xen/arch/x86/hvm/io.c:send_timeoffset_req). It returns how
// many servers could not take it (no ring, or ring full).
func (d *Domain) SendTimeOffset(delta int64) int {
	s := d.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := request{data: uint64(delta), count: 1, size: 8, typ: xenabi.IOREQ_TYPE_TIMEOFFSET, dir: xenabi.IOREQ_WRITE}
	failed := 0
	for id := maxIOReqServers - 1; id >= 0; id-- {
		srv := d.servers[id]
		if srv == nil || !srv.enabled {
			continue
		}
		if srv.sendBuffered(&p) != bufHandled {
			failed++
		}
	}
	return failed
}

// InvalidateMapCache broadcasts a synchronous IOREQ_TYPE_INVALIDATE
// (data = ~0, "flush all") from this vCPU to every enabled server and
// waits for all answers, as Xen does after p2m changes
// (ioreq_signal_mapcache_invalidate).
func (v *VCPU) InvalidateMapCache() error {
	if !v.busy.CompareAndSwap(false, true) {
		return ErrBusy
	}
	defer v.busy.Store(false)
	d := v.d
	s := d.s
	type pending struct {
		srv  *server
		slot []byte
		p    *request
	}
	var waits []pending
	var errs []error
	s.mu.RLock()
	for id := maxIOReqServers - 1; id >= 0; id-- {
		srv := d.servers[id]
		if srv == nil || !srv.enabled {
			continue
		}
		p := &request{data: ^uint64(0), count: 1, size: 4, typ: xenabi.IOREQ_TYPE_INVALIDATE, dir: xenabi.IOREQ_WRITE}
		slot, err := v.post(srv, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		waits = append(waits, pending{srv, slot, p})
	}
	s.mu.RUnlock()
	for _, w := range waits {
		if _, err := v.await(w.srv, w.slot, w.p); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("xensim: %v vcpu%d: invalidate: %w", d.id, v.id, errs[0])
	}
	return nil
}
