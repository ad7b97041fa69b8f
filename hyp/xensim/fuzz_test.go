package xensim

import (
	"testing"

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
