package xensim

import (
	"encoding/binary"

	"godm/hyp"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

var le = binary.LittleEndian

// dmOpSize is op_size[] of xen/arch/x86/hvm/dm.c: the bytes of the union
// Xen copies in and out for each op (0: op unknown on x86).
var dmOpSize = [...]int{
	xenabi.XEN_DMOP_create_ioreq_server:              6,
	xenabi.XEN_DMOP_get_ioreq_server_info:            24,
	xenabi.XEN_DMOP_map_io_range_to_ioreq_server:     24,
	xenabi.XEN_DMOP_unmap_io_range_from_ioreq_server: 24,
	xenabi.XEN_DMOP_set_ioreq_server_state:           4,
	xenabi.XEN_DMOP_destroy_ioreq_server:             4,
	xenabi.XEN_DMOP_track_dirty_vram:                 16,
	xenabi.XEN_DMOP_set_pci_intx_level:               6,
	xenabi.XEN_DMOP_set_isa_irq_level:                2,
	xenabi.XEN_DMOP_set_pci_link_route:               2,
	xenabi.XEN_DMOP_modified_memory:                  8,
	xenabi.XEN_DMOP_set_mem_type:                     16,
	xenabi.XEN_DMOP_inject_event:                     24,
	xenabi.XEN_DMOP_inject_msi:                       16,
	xenabi.XEN_DMOP_map_mem_type_to_ioreq_server:     16,
	xenabi.XEN_DMOP_remote_shutdown:                  4,
	xenabi.XEN_DMOP_relocate_memory:                  24,
	xenabi.XEN_DMOP_pin_memory_cacheattr:             24,
	xenabi.XEN_DMOP_nr_vcpus:                         4,
}

// maxDMOpBufs is ARRAY_SIZE(struct dmop_args.buf) in Xen: more buffers
// fail with E2BIG.
const maxDMOpBufs = 2

// dmOp is Xen's dm_op() for a call from domain caller. bufs[0] holds the
// struct xen_dm_op; OUT fields are written back into it. It returns 0 or
// a unix.Errno.
func (s *Sim) dmOp(caller hyp.DomID, domid uint16, bufs [][]byte) unix.Errno {
	if len(bufs) > maxDMOpBufs {
		return unix.E2BIG
	}
	// rcu_lock_remote_domain_by_id (no such domain, DOMID_SELF included:
	// ESRCH; the caller's own: EPERM), is_hvm_domain, xsm_dm_op.
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.domains[hyp.DomID(domid)]
	if d == nil || d.dead {
		return unix.ESRCH
	}
	if d.id == caller {
		return unix.EPERM
	}
	if !d.hvm {
		return unix.EINVAL
	}
	if caller != 0 && caller != d.cfg.DeviceModel {
		return unix.EPERM
	}
	const off = 8 // offsetof(struct xen_dm_op, u)
	if len(bufs) == 0 || len(bufs[0]) < off {
		return unix.EFAULT
	}
	b0 := bufs[0]
	op := le.Uint32(b0)
	if op >= uint32(len(dmOpSize)) {
		return unix.EOPNOTSUPP
	}
	if len(b0) < off+dmOpSize[op] {
		return unix.EFAULT
	}
	if le.Uint32(b0[4:]) != 0 {
		return unix.EINVAL
	}
	// Work on a copy of the union, as Xen does, and copy it back only
	// when the op succeeded and changes it.
	var u [24]byte
	copy(u[:], b0[off:off+dmOpSize[op]])
	constOp := true
	rc := s.dmOpLocked(caller, d, op, u[:], bufs, &constOp)
	if rc == 0 && !constOp {
		copy(b0[off:off+dmOpSize[op]], u[:dmOpSize[op]])
	}
	return rc
}

func (s *Sim) dmOpLocked(caller hyp.DomID, d *Domain, op uint32, u []byte, bufs [][]byte, constOp *bool) unix.Errno {
	switch op {
	case xenabi.XEN_DMOP_create_ioreq_server:
		*constOp = false
		if u[1] != 0 || u[2] != 0 || u[3] != 0 {
			return unix.EINVAL
		}
		id, err := d.createServer(caller, u[0])
		if err != nil {
			return errno(err)
		}
		le.PutUint16(u[4:], id)
		return 0

	case xenabi.XEN_DMOP_get_ioreq_server_info:
		*constOp = false
		flags := le.Uint16(u[2:])
		if flags&^xenabi.XEN_DMOP_no_gfns != 0 {
			return unix.EINVAL
		}
		srv, err := d.getServer(caller, le.Uint16(u))
		if err != nil {
			return errno(err)
		}
		if flags&xenabi.XEN_DMOP_no_gfns == 0 {
			if err := srv.mapGFNs(); err != nil {
				return errno(err)
			}
			le.PutUint64(u[8:], srv.ioreqGFN)
		}
		if srv.handlesBuf() {
			if flags&xenabi.XEN_DMOP_no_gfns == 0 {
				le.PutUint64(u[16:], srv.bufGFN)
			}
			le.PutUint32(u[4:], srv.bufPort)
		}
		return 0

	case xenabi.XEN_DMOP_map_io_range_to_ioreq_server, xenabi.XEN_DMOP_unmap_io_range_from_ioreq_server:
		if le.Uint16(u[2:]) != 0 {
			return unix.EINVAL
		}
		typ, start, end := le.Uint32(u[4:]), le.Uint64(u[8:]), le.Uint64(u[16:])
		if start > end {
			return unix.EINVAL
		}
		srv, err := d.getServer(caller, le.Uint16(u))
		if err != nil {
			return errno(err)
		}
		if typ > xenabi.XEN_DMOP_IO_RANGE_PCI {
			return unix.EINVAL
		}
		r := &srv.ranges[typ]
		if op == xenabi.XEN_DMOP_map_io_range_to_ioreq_server {
			if r.overlaps(start, end) {
				return unix.EEXIST
			}
			return errno(r.add(start, end))
		}
		if !r.contains(start, end) {
			return unix.ENOENT
		}
		return errno(r.remove(start, end))

	case xenabi.XEN_DMOP_set_ioreq_server_state:
		if u[3] != 0 {
			return unix.EINVAL
		}
		srv, err := d.getServer(caller, le.Uint16(u))
		if err != nil {
			return errno(err)
		}
		srv.setEnabled(u[2] != 0)
		return 0

	case xenabi.XEN_DMOP_destroy_ioreq_server:
		if le.Uint16(u[2:]) != 0 {
			return unix.EINVAL
		}
		srv, err := d.getServer(caller, le.Uint16(u))
		if err != nil {
			return errno(err)
		}
		d.servers[srv.id] = nil
		d.destroyServerLocked(srv)
		return 0

	case xenabi.XEN_DMOP_track_dirty_vram:
		if le.Uint32(u[4:]) != 0 || len(bufs) < 2 {
			return unix.EINVAL
		}
		return d.trackDirtyVRAM(le.Uint64(u[8:]), le.Uint32(u), bufs[1])

	case xenabi.XEN_DMOP_set_pci_intx_level:
		seg, bus, dev, intx, level := le.Uint16(u), u[2], u[3], u[4], u[5]
		if seg != 0 || bus != 0 || dev > 0x1f || intx > 3 || level > 1 {
			return unix.EINVAL
		}
		d.intx[dev][intx] = level == 1
		s.record(Event{Kind: EventPCIIntx, Dom: d.id, Dev: dev, Pin: intx, Level: level == 1})
		return 0

	case xenabi.XEN_DMOP_set_isa_irq_level:
		if u[0] > 15 || u[1] > 1 {
			return unix.EINVAL
		}
		d.isaIRQ[u[0]] = u[1] == 1
		s.record(Event{Kind: EventISAIRQ, Dom: d.id, IRQ: u[0], Level: u[1] == 1})
		return 0

	case xenabi.XEN_DMOP_set_pci_link_route:
		// xen/arch/x86/hvm/irq.c:hvm_set_pci_link_route.
		if u[0] > 3 || u[1] > 15 {
			return unix.EINVAL
		}
		d.links[u[0]] = u[1]
		s.record(Event{Kind: EventPCILinkRoute, Dom: d.id, Link: u[0], IRQ: u[1]})
		return 0

	case xenabi.XEN_DMOP_modified_memory:
		rc := d.modifiedMemory(le.Uint32(u), le.Uint32(u[4:]), bufs)
		*constOp = rc == 0
		return rc

	case xenabi.XEN_DMOP_set_mem_type:
		*constOp = false
		if le.Uint16(u[6:]) != 0 {
			return unix.EINVAL
		}
		return d.setMemType(le.Uint64(u[8:]), le.Uint32(u), le.Uint16(u[4:]))

	case xenabi.XEN_DMOP_inject_event:
		if u[7] != 0 || le.Uint32(u[12:]) != 0 {
			return unix.EINVAL
		}
		vcpu := le.Uint32(u)
		if int(vcpu) >= len(d.vcpus) {
			return unix.EINVAL
		}
		// The simulated vCPU takes the event at once, so the pending
		// check (EBUSY) never fires.
		s.record(Event{Kind: EventInjectEvent, Dom: d.id, VCPU: vcpu, Data: uint64(u[4]), Type: uint32(u[5]),
			Nr: uint64(u[6]), First: uint64(le.Uint32(u[8:])), Addr: le.Uint64(u[16:])})
		return 0

	case xenabi.XEN_DMOP_inject_msi:
		if le.Uint32(u[4:]) != 0 {
			return unix.EINVAL
		}
		s.record(Event{Kind: EventMSI, Dom: d.id, Addr: le.Uint64(u[8:]), Data: uint64(le.Uint32(u))})
		return 0

	case xenabi.XEN_DMOP_map_mem_type_to_ioreq_server:
		*constOp = false
		return d.mapMemType(caller, le.Uint16(u), le.Uint16(u[2:]), le.Uint32(u[4:]), le.Uint64(u[8:]))

	case xenabi.XEN_DMOP_remote_shutdown:
		reason := le.Uint32(u)
		d.shutdown = int64(reason)
		s.record(Event{Kind: EventShutdown, Dom: d.id, Data: uint64(reason)})
		return 0

	case xenabi.XEN_DMOP_relocate_memory:
		if le.Uint32(u[4:]) != 0 {
			return unix.EINVAL
		}
		return d.relocate(le.Uint64(u[8:]), le.Uint64(u[16:]), le.Uint32(u), u, constOp)

	case xenabi.XEN_DMOP_pin_memory_cacheattr:
		if le.Uint32(u[20:]) != 0 {
			return unix.EINVAL
		}
		return d.pinCacheAttr(le.Uint64(u), le.Uint64(u[8:]), le.Uint32(u[16:]))

	case xenabi.XEN_DMOP_nr_vcpus:
		*constOp = false
		le.PutUint32(u, uint32(len(d.vcpus)))
		return 0
	}
	// ioreq_server_dm_op's default (includes set_irq_level, Arm only).
	return unix.EOPNOTSUPP
}

func errno(err error) unix.Errno {
	if err == nil {
		return 0
	}
	if e, ok := err.(unix.Errno); ok {
		return e
	}
	return unix.EIO
}
