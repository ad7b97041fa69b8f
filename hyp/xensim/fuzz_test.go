package xensim

import (
	"sync/atomic"
	"testing"
	"time"

	"godm/hyp/xenabi"
)

// FuzzDMOp feeds arbitrary DM-op buffers to the hypervisor side: any
// input must give an errno or success, never a panic, and leave the
// simulator usable.
func FuzzDMOp(f *testing.F) {
	f.Add(union(uint32(xenabi.XEN_DMOP_create_ioreq_server), uint32(0), uint8(2)), []byte(nil))
	f.Add(union(uint32(xenabi.XEN_DMOP_map_io_range_to_ioreq_server), uint32(0), uint16(0), uint16(0), uint32(1), uint64(0xfe000000), uint64(0xfe000fff)), []byte(nil))
	f.Add(union(uint32(xenabi.XEN_DMOP_track_dirty_vram), uint32(0), uint32(64), uint32(0), uint64(0x100)), make([]byte, 8))
	f.Add(union(uint32(xenabi.XEN_DMOP_modified_memory), uint32(0), uint32(1), uint32(0)), union(uint32(4), uint32(0), uint64(0x10)))
	f.Add(union(uint32(xenabi.XEN_DMOP_relocate_memory), uint32(0), uint32(4), uint32(0), uint64(0x10), uint64(0x20000)), []byte(nil))
	f.Add(union(uint32(xenabi.XEN_DMOP_set_mem_type), uint32(0), uint32(0xffffffff), uint16(2), uint16(0), uint64(0)), []byte(nil))
	f.Fuzz(func(t *testing.T, op, extra []byte) {
		if len(op) > 4096 || len(extra) > 4096 {
			return
		}
		s := New(Config{})
		defer s.Close()
		d, err := s.CreateDomain(DomainConfig{VCPUs: 1, RAM: []Region{{0, 0x40000}}, LogDirty: len(extra)%2 == 1})
		if err != nil {
			t.Fatal(err)
		}
		bufs := [][]byte{op}
		if extra != nil {
			bufs = append(bufs, extra)
		}
		for i := 0; i < 3; i++ { // repeat: state from earlier calls matters
			s.dmOp(0, uint16(d.ID()), bufs)
		}
		if _, err := d.VCPU(0).In(0x80, 1); err != nil {
			t.Fatalf("vCPU unusable after DM ops: %v", err)
		}
	})
}

// FuzzDMResponses lets a device model answer requests with arbitrary
// state changes, data and notifications: every vCPU access must end (an
// answer, an error, or the timeout) without a panic, and the simulator
// must close cleanly.
func FuzzDMResponses(f *testing.F) {
	f.Add([]byte{2, 3})       // INPROCESS, IORESP_READY: well behaved
	f.Add([]byte{3})          // straight to IORESP_READY
	f.Add([]byte{3, 1})       // answer, then scribble READY
	f.Add([]byte{9})          // invalid state
	f.Add([]byte{0})          // back to NONE
	f.Add([]byte{0x82, 0x83}) // with the "no notify" bit
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) > 16 {
			return
		}
		// newSim closes the Sim after the device model (cleanups run in
		// reverse): Close unmaps the DM's views.
		_, d := newSim(t, Config{IOReqTimeout: 5 * time.Millisecond}, DomainConfig{VCPUs: 1, RAM: []Region{{0, 0x10000}}})
		s := d.s
		dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, nil)
		rangeOp(dm.pc, uint16(d.ID()), xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_PORT, 0x60, 0x6f)
		dm.setHook(func(v int) {
			slot := dm.ioreq[v*32 : v*32+32]
			word := u32at(slot, 28)
			for _, b := range script {
				w := atomic.LoadUint32(word)
				atomic.StoreUint64(u64at(slot, 8), uint64(b)*0x0101010101010101)
				atomic.StoreUint32(word, w&^(0xf<<16)|uint32(b&0xf)<<16)
				if b&0x80 == 0 {
					evNotify(dm.ev, notifyArg(dm.ports[v]))
				}
			}
		})
		v := d.VCPU(0)
		for i := 0; i < 3; i++ {
			v.In(0x60, 1)
			v.Out(0x61, 2, 0x1234)
		}
	})
}
