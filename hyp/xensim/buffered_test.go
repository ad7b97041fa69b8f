package xensim

import (
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"godm/hyp/kernel"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

func TestBufferedRingFullFallsBack(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_LEGACY, nil, noDrain)
	dom := uint16(d.ID())
	if err := rangeOp(dm.pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_MEMORY, 0xa0000, 0xbffff); err != nil {
		t.Fatal(err)
	}
	v := d.VCPU(0)
	for i := 0; i < xenabi.IOREQ_BUFFER_SLOT_NUM-1; i++ {
		if r, err := v.BufferedWrite(xenabi.IOREQ_TYPE_COPY, 0xa0000+uint64(i), 1, uint64(i)); err != nil || r != Buffered {
			t.Fatalf("write %d: %v %v", i, r, err)
		}
	}
	// One slot left: an 8-byte write needs two, so it goes synchronously.
	if r, err := v.BufferedWrite(xenabi.IOREQ_TYPE_COPY, 0xa1000, 8, 0x1122334455667788); err != nil || r != Synchronous {
		t.Fatalf("8-byte write with one free slot: %v %v, want synchronous", r, err)
	}
	if r, err := v.BufferedWrite(xenabi.IOREQ_TYPE_COPY, 0xa1008, 4, 7); err != nil || r != Buffered {
		t.Fatalf("last slot: %v %v", r, err)
	}
	if r, err := v.BufferedWrite(xenabi.IOREQ_TYPE_COPY, 0xa100c, 4, 8); err != nil || r != Synchronous {
		t.Fatalf("full ring: %v %v, want synchronous", r, err)
	}
	reqs := dm.requests()
	if len(reqs) != 2 || reqs[0].size != 8 || reqs[0].data != 0x1122334455667788 || reqs[1].addr != 0xa100c {
		t.Errorf("synchronous requests %+v", reqs)
	}
	if got := atomic.LoadUint32(u32at(dm.bufpg, 4)); got != xenabi.IOREQ_BUFFER_SLOT_NUM {
		t.Errorf("write pointer %d, want %d", got, xenabi.IOREQ_BUFFER_SLOT_NUM)
	}
	// TIMEOFFSET does not fall back: the broadcast reports the failure.
	if n := d.SendTimeOffset(1); n != 1 {
		t.Errorf("timeoffset into a full ring: %d failures, want 1", n)
	}
}

func TestBufferedPointerCanonicalisation(t *testing.T) {
	for _, mode := range []uint8{xenabi.HVM_IOREQSRV_BUFIOREQ_LEGACY, xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC} {
		s, d := newSim(t, Config{}, stdDomain())
		dm := newFakeDM(t, s, d, mode, nil, noDrain)
		rangeOp(dm.pc, uint16(d.ID()), xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_PORT, 0x3c0, 0x3df)
		// The DM has consumed 600 entries.
		atomic.StoreUint64(u64at(dm.bufpg, 0), 600|600<<32)
		if r, err := d.VCPU(0).BufferedWrite(xenabi.IOREQ_TYPE_PIO, 0x3c4, 2, 0x0102); err != nil || r != Buffered {
			t.Fatalf("mode %d: %v %v", mode, r, err)
		}
		rp, wp := atomic.LoadUint32(u32at(dm.bufpg, 0)), atomic.LoadUint32(u32at(dm.bufpg, 4))
		want := [2]uint32{600, 601}
		if mode == xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC {
			want = [2]uint32{600 - 511, 601 - 511}
		}
		if [2]uint32{rp, wp} != want {
			t.Errorf("mode %d: pointers %d/%d, want %d/%d", mode, rp, wp, want[0], want[1])
		}
		// The entry sits in slot 600 % 511.
		o := 8 + (600%511)*8
		if w0 := atomic.LoadUint32(u32at(dm.bufpg, o)); w0 != uint32(xenabi.IOREQ_TYPE_PIO)|1<<10|0x3c4<<12 {
			t.Errorf("mode %d: slot word %#x", mode, w0)
		}
	}
}

func TestInvalidateBroadcast(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	a := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, nil)
	b := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC, nil)
	c := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, nil)
	setState(c.pc, uint16(d.ID()), c.id, false)
	if err := d.VCPU(1).InvalidateMapCache(); err != nil {
		t.Fatal(err)
	}
	want := reqView{vcpu: 1, data: ^uint64(0), count: 1, size: 4, typ: xenabi.IOREQ_TYPE_INVALIDATE, dir: xenabi.IOREQ_WRITE}
	for i, dm := range []*fakeDM{a, b} {
		if r := dm.requests(); len(r) != 1 || r[0] != want {
			t.Errorf("server %d saw %+v, want %+v", i, r, want)
		}
	}
	if r := c.requests(); len(r) != 0 {
		t.Errorf("disabled server saw %+v", r)
	}
}

func TestMemTypeIOReqServer(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, nil)
	dom := uint16(d.ID())
	if _, err := dmop(dm.pc, dom, xenabi.XEN_DMOP_map_mem_type_to_ioreq_server, union(dm.id, uint16(xenabi.HVMMEM_ioreq_server), uint32(xenabi.XEN_DMOP_IOREQ_MEM_ACCESS_WRITE))); err != nil {
		t.Fatal(err)
	}
	if _, err := dmop(dm.pc, dom, xenabi.XEN_DMOP_map_mem_type_to_ioreq_server, union(dm.id, uint16(xenabi.HVMMEM_ioreq_server), uint32(xenabi.XEN_DMOP_IOREQ_MEM_ACCESS_WRITE))); !isErrno(err, unix.EBUSY) {
		t.Errorf("second claim: %v, want EBUSY", err)
	}
	if _, err := dmop(dm.pc, dom, xenabi.XEN_DMOP_set_mem_type, union(uint32(1), uint16(xenabi.HVMMEM_ioreq_server), uint16(0), uint64(0x20))); err != nil {
		t.Fatal(err)
	}
	// ioreq_server → ram_ro is not allowed (only back to ram_rw).
	if _, err := dmop(dm.pc, dom, xenabi.XEN_DMOP_set_mem_type, union(uint32(1), uint16(xenabi.HVMMEM_ram_ro), uint16(0), uint64(0x20))); !isErrno(err, unix.EINVAL) {
		t.Errorf("ioreq_server -> ram_ro: %v, want EINVAL", err)
	}
	d.WriteRAM(0x20000, []byte{0x11, 0x22})
	v := d.VCPU(0)
	if got, err := v.MMIORead(0x20000, 2); err != nil || got != 0x2211 {
		t.Errorf("read of ioreq_server page = %#x, %v (reads do not trap)", got, err)
	}
	if err := v.MMIOWrite(0x20004, 4, 0xabcdef); err != nil {
		t.Fatal(err)
	}
	want := reqView{addr: 0x20004, data: 0xabcdef, count: 1, size: 4, typ: xenabi.IOREQ_TYPE_COPY, dir: xenabi.IOREQ_WRITE}
	if r := dm.requests(); len(r) != 1 || r[0] != want {
		t.Errorf("DM saw %+v, want %+v", r, want)
	}
	// Unclaiming resets the pages to ram_rw.
	if _, err := dmop(dm.pc, dom, xenabi.XEN_DMOP_map_mem_type_to_ioreq_server, union(dm.id, uint16(xenabi.HVMMEM_ioreq_server), uint32(0))); err != nil {
		t.Fatal(err)
	}
	if mt := d.MemType(0x20); mt != xenabi.HVMMEM_ram_rw {
		t.Errorf("mem type after unclaim = %d", mt)
	}
}

func TestGuestEventChannels(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	ev := mustOpen(t, s.Kernel(0), kernel.Evtchn, unix.O_NONBLOCK)
	gp, err := d.AllocUnboundPort(0)
	if err != nil {
		t.Fatal(err)
	}
	lp, err := evBindInterdomain(ev, uint32(d.ID()), gp)
	if err != nil {
		t.Fatal(err)
	}
	readPorts(t, ev) // pending-on-bind
	writePort(t, ev, lp)
	if err := d.Notify(gp); err != nil {
		t.Fatal(err)
	}
	if got := readPorts(t, ev); len(got) != 1 || got[0] != lp {
		t.Errorf("dom0 got %v, want [%d]", got, lp)
	}
	// dom0 offers a port; the guest binds it.
	off, err := evBindUnbound(ev, uint32(d.ID()))
	if err != nil {
		t.Fatal(err)
	}
	gp2, err := d.BindInterdomain(0, off)
	if err != nil {
		t.Fatal(err)
	}
	mark := s.LastSeq()
	if err := evNotify(ev, notifyArg(off)); err != nil {
		t.Fatal(err)
	}
	if evs := s.EventsSince(mark); len(evs) != 1 || evs[0].Kind != EventGuestNotify || evs[0].Data != uint64(gp2) {
		t.Errorf("events %v", evs)
	}
	if _, err := d.BindInterdomain(0, off); err == nil {
		t.Error("binding an already bound port succeeded")
	}
}

// TestBufferedPointerScribble: a read pointer past the write pointer (a
// device model that stored it instead of adding) makes the ring look
// full: writes fall back to the synchronous path, and it is reported.
func TestBufferedPointerScribble(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC, nil, noDrain)
	rangeOp(dm.pc, uint16(d.ID()), xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_PORT, 0x3c0, 0x3df)
	atomic.StoreUint64(u64at(dm.bufpg, 0), 601|90<<32)
	if r, err := d.VCPU(0).BufferedWrite(xenabi.IOREQ_TYPE_PIO, 0x3c4, 1, 1); err != nil || r != Synchronous {
		t.Errorf("write with scribbled pointers: %v, %v; want synchronous", r, err)
	}
	if vs := s.Violations(); len(vs) != 1 || !strings.Contains(vs[0].Detail, "past write pointer") {
		t.Errorf("violations %v", vs)
	}
}

// An INVALIDATE broadcast waits for every server; a server answering after
// another one already did is answering a vCPU that still waits for it, not
// an idle one: no protocol violation.
func TestInvalidateBroadcastLateAnswer(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	var late *fakeDM
	// Created first, so awaited last (servers are scanned newest first).
	late = newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, func(r reqView) uint64 {
		// Answer only once the vCPU has taken the other server's answer
		// (its slot back to NONE) and waits for this one alone.
		other := s.Domain(d.ID()).servers[late.id+1]
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if st := (atomic.LoadUint32(u32at(other.slot(uint32(r.vcpu)), xenabi.IoreqStateWordOffs)) >> 16) & xenabi.IoreqStateMask; st == xenabi.STATE_IOREQ_NONE {
				break
			}
			runtime.Gosched()
		}
		return 0
	})
	early := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, nil)
	if early.id != late.id+1 {
		t.Fatalf("server ids %d, %d: want consecutive", late.id, early.id)
	}
	if err := d.VCPU(0).InvalidateMapCache(); err != nil {
		t.Fatal(err)
	}
	if len(late.requests()) != 1 || len(early.requests()) != 1 {
		t.Fatalf("requests: late %+v, early %+v; want one each", late.requests(), early.requests())
	}
	if v := s.Violations(); len(v) != 0 {
		t.Errorf("violations: %+v", v)
	}
}
