package xensim

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"godm/hyp"
	"godm/hyp/xenabi"
)

func TestProtocolViolations(t *testing.T) {
	cases := []struct {
		name    string
		respond func(slot []byte) // what the misbehaving DM does with a READY slot
		wantErr bool
		detail  string
	}{
		{"invalid state 7", func(slot []byte) {
			w := u32at(slot, 28)
			atomic.StoreUint32(w, atomic.LoadUint32(w)&^(0xf<<16)|7<<16)
		}, true, "weird ioreq state 7"},
		{"reset to NONE", func(slot []byte) {
			w := u32at(slot, 28)
			atomic.StoreUint32(w, atomic.LoadUint32(w)&^(0xf<<16))
		}, false, "reset the ioreq slot to NONE"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, d := newSim(t, Config{}, stdDomain())
			dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, nil)
			rangeOp(dm.pc, uint16(d.ID()), xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_PORT, 0x70, 0x71)
			misbehave := c.respond
			dmServe := func(v int) {
				slot := dm.ioreq[v*32 : v*32+32]
				if (atomic.LoadUint32(u32at(slot, 28))>>16)&0xf != xenabi.STATE_IOREQ_READY {
					return
				}
				misbehave(slot)
				evNotify(dm.ev, notifyArg(dm.ports[v]))
			}
			dm.setHook(dmServe)
			_, err := d.VCPU(0).In(0x70, 1)
			if (err != nil) != c.wantErr {
				t.Errorf("In: err = %v, want error %v", err, c.wantErr)
			}
			vs := s.Violations()
			if len(vs) == 0 || !strings.Contains(vs[0].Detail, c.detail) {
				t.Errorf("violations %v, want one containing %q", vs, c.detail)
			}
		})
	}
}

func TestIdleSlotWriteDetected(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, func(reqView) uint64 { return 1 })
	rangeOp(dm.pc, uint16(d.ID()), xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_PORT, 0x70, 0x71)
	v := d.VCPU(1)
	if _, err := v.In(0x70, 1); err != nil {
		t.Fatal(err)
	}
	// The DM scribbles on the idle slot (data field), then the vCPU
	// issues its next request.
	atomic.StoreUint64(u64at(dm.ioreq, 32+8), 0xbad)
	if _, err := v.In(0x70, 1); err != nil {
		t.Fatal(err)
	}
	vs := s.Violations()
	if len(vs) != 1 || !strings.Contains(vs[0].Detail, "idle vCPU 1") || vs[0].VCPU != 1 {
		t.Errorf("violations %v", vs)
	}
	// A bad vp_eport makes Xen refuse the request.
	atomic.StoreUint32(u32at(dm.ioreq, 32+24), 999)
	if _, err := v.In(0x70, 1); err == nil {
		t.Error("request with a corrupted vp_eport succeeded")
	}
}

func TestHungRequestTimesOut(t *testing.T) {
	s, d := newSim(t, Config{IOReqTimeout: 20 * time.Millisecond}, stdDomain())
	dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, nil)
	rangeOp(dm.pc, uint16(d.ID()), xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_PORT, 0x70, 0x71)
	dm.setHook(func(int) {}) // never answers
	_, err := d.VCPU(1).In(0x71, 1)
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "vcpu1") || !strings.Contains(err.Error(), "addr 0x71") {
		t.Errorf("err = %v, want a timeout naming vcpu1 and the port", err)
	}
}

func TestDestroyWhileWaiting(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, nil)
	dom := uint16(d.ID())
	rangeOp(dm.pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_PORT, 0x70, 0x71)
	dm.setHook(func(int) {
		// Instead of answering, the DM destroys its server.
		dmop(dm.pc, dom, xenabi.XEN_DMOP_destroy_ioreq_server, union(dm.id, uint16(0)))
	})
	if _, err := d.VCPU(0).In(0x70, 1); !errors.Is(err, hyp.ErrClosed) {
		t.Errorf("err = %v, want ErrClosed", err)
	}
}

// TestBackwardsTransition drives the state check directly: the vCPU saw
// INPROCESS, then the DM moved the slot back to READY.
func TestBackwardsTransition(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, nil)
	dm.setHook(func(int) {}) // the DM must not touch the slot we forge
	s.mu.RLock()
	srv := d.servers[dm.id]
	s.mu.RUnlock()
	v := d.VCPU(0)
	slot := dm.ioreq[:32]
	atomic.StoreUint32(u32at(slot, 28), xenabi.STATE_IOREQ_READY<<16)
	p := &request{addr: 0x70, size: 1, count: 1, dir: xenabi.IOREQ_READ}
	_, _, done, err := v.check(srv, srv.slot(0), p, xenabi.STATE_IOREQ_INPROCESS)
	if !done || err == nil {
		t.Errorf("check = done %v, err %v; want a failed request", done, err)
	}
	if vs := s.Violations(); len(vs) != 1 || !strings.Contains(vs[0].Detail, "transition 2 -> 1") {
		t.Errorf("violations %v", vs)
	}
}
