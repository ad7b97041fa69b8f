package xensim

import (
	"fmt"
	"sync"
	"sync/atomic"

	"godm/hyp"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

const invalidGFN = ^uint64(0)

// Offsets inside the server's two-page memfd: frame 0 is the buffered
// page, frame 1 the ioreq page, matching the resource frame numbers
// (XENMEM_resource_ioreq_server_frame_bufioreq = 0, frame_ioreq(0) = 1).
const (
	bufPageOff   = 0
	ioreqPageOff = pageSize
)

// server is one ioreq server, as xen/common/ioreq.c keeps it.
type server struct {
	id       uint16
	d        *Domain
	emulator hyp.DomID
	bufMode  uint8
	enabled  bool
	ranges   [3]rangeSet

	pages    *shmem // nil until allocated (resource frame or gfn)
	ioreqGFN uint64
	bufGFN   uint64

	vcpuPort []uint32 // per vCPU: the guest-side (Xen-consumer) port
	bufPort  uint32

	bufMu sync.Mutex // bufioreq_lock
	last  []slotCopy // what each idle vCPU's slot held when it went idle
	// waiting[v] is set while vCPU v waits for this server's answer (a
	// vCPU waits on several servers at once during an INVALIDATE
	// broadcast, and is idle for a server that already answered).
	waiting []atomic.Bool

	use pageUse // vCPUs reading the ioreq page without the lock (wake.go)
}

type slotCopy struct {
	valid bool
	w     [4]uint64
}

func (srv *server) handlesBuf() bool { return srv.bufMode != xenabi.HVM_IOREQSRV_BUFIOREQ_OFF }

func (srv *server) slot(v uint32) []byte {
	o := ioreqPageOff + int(v)*xenabi.IoreqSize
	return srv.pages.mem[o : o+xenabi.IoreqSize]
}

// getServer is get_ioreq_server plus the emulator check: ENOENT for no
// such server, EPERM for a caller that did not create it.
func (d *Domain) getServer(caller hyp.DomID, id uint16) (*server, error) {
	if int(id) >= maxIOReqServers || d.servers[id] == nil {
		return nil, unix.ENOENT
	}
	srv := d.servers[id]
	if srv.emulator != caller {
		return nil, unix.EPERM
	}
	return srv, nil
}

// createServer is ioreq_server_create. Called with s.mu held.
func (d *Domain) createServer(caller hyp.DomID, bufMode uint8) (uint16, error) {
	if bufMode > xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC {
		return 0, unix.EINVAL
	}
	id := -1
	for i := range d.servers {
		if d.servers[i] == nil {
			id = i
			break
		}
	}
	if id < 0 {
		return 0, unix.ENOSPC
	}
	srv := &server{id: uint16(id), d: d, emulator: caller, bufMode: bufMode,
		ioreqGFN: invalidGFN, bufGFN: invalidGFN,
		vcpuPort: make([]uint32, len(d.vcpus)), last: make([]slotCopy, len(d.vcpus)),
		waiting: make([]atomic.Bool, len(d.vcpus))}
	s := d.s
	for i, v := range d.vcpus {
		p, err := s.allocXenPort(d, caller, v, srv)
		if err != nil {
			srv.freePortsLocked()
			return 0, err
		}
		srv.vcpuPort[i] = p
		if i == 0 && srv.handlesBuf() {
			bp, err := s.allocXenPort(d, caller, nil, srv)
			if err != nil {
				srv.freePortsLocked()
				return 0, err
			}
			srv.bufPort = bp
		}
	}
	d.servers[id] = srv
	s.record(Event{Kind: EventIOReqServer, Dom: d.id, Server: uint16(id), Detail: "create"})
	return uint16(id), nil
}

func (srv *server) freePortsLocked() {
	s := srv.d.s
	for i, p := range srv.vcpuPort {
		if p != 0 {
			s.closePortLocked(srv.d, p)
			srv.vcpuPort[i] = 0
		}
	}
	if srv.bufPort != 0 {
		s.closePortLocked(srv.d, srv.bufPort)
		srv.bufPort = 0
	}
}

// allocPages is ioreq_server_alloc_pages (resource path): EPERM if the
// pages were already mapped into the guest by gfn.
func (srv *server) allocPages() error {
	if srv.pages != nil {
		if srv.ioreqGFN != invalidGFN {
			return unix.EPERM
		}
		return nil
	}
	m, err := newShmem(fmt.Sprintf("xensim-ioreq-%v-%d", srv.d.id, srv.id), 2*pageSize)
	if err != nil {
		return unix.ENOMEM
	}
	// Like Xen (ioreq_server_alloc_mfn), a page allocated after the
	// server was enabled stays clear: vp_eport is only written on enable.
	srv.pages = m
	return nil
}

// mapGFNs is arch_ioreq_server_map_pages (legacy gfn path): EPERM if the
// pages were already allocated as resource frames.
func (srv *server) mapGFNs() error {
	d := srv.d
	if srv.pages != nil {
		if srv.ioreqGFN == invalidGFN {
			return unix.EPERM
		}
		return nil
	}
	if d.dead {
		return unix.EINVAL
	}
	need := 1
	if srv.handlesBuf() {
		need = 2
	}
	var gfns []uint64
	for i, free := range d.gfnFree {
		if free && len(gfns) < need {
			d.gfnFree[i] = false
			gfns = append(gfns, d.cfg.IOReqGFNBase+uint64(i))
		}
	}
	if len(gfns) < need {
		for _, g := range gfns {
			d.gfnFree[g-d.cfg.IOReqGFNBase] = true
		}
		return unix.ENOMEM
	}
	m, err := newShmem(fmt.Sprintf("xensim-ioreq-%v-%d", d.id, srv.id), 2*pageSize)
	if err != nil {
		return unix.ENOMEM
	}
	srv.pages = m
	srv.ioreqGFN = gfns[0]
	if need == 2 {
		srv.bufGFN = gfns[1]
	}
	if !srv.enabled {
		srv.addGFNs()
	}
	return nil
}

// addGFNs and removeGFNs put the gfn-mapped pages into the guest p2m
// while the server is disabled and take them out while it is enabled
// (hvm_add_ioreq_gfn/hvm_remove_ioreq_gfn), clearing them each time.
func (srv *server) addGFNs() {
	d := srv.d
	if srv.ioreqGFN == invalidGFN {
		return
	}
	clear(srv.pages.mem)
	d.overlay[srv.ioreqGFN] = p2mEntry{mem: srv.pages, fd: srv.pages.fd, off: ioreqPageOff}
	if srv.bufGFN != invalidGFN {
		d.overlay[srv.bufGFN] = p2mEntry{mem: srv.pages, fd: srv.pages.fd, off: bufPageOff}
	}
}

func (srv *server) removeGFNs() {
	d := srv.d
	if srv.ioreqGFN == invalidGFN {
		return
	}
	delete(d.overlay, srv.ioreqGFN)
	if srv.bufGFN != invalidGFN {
		delete(d.overlay, srv.bufGFN)
	}
	clear(srv.pages.mem)
}

// updateEports writes each vCPU's port into vp_eport
// (hvm_update_ioreq_evtchn), which Xen does on enable when the ioreq page
// exists.
func (srv *server) updateEports() {
	if srv.pages == nil {
		return
	}
	for i, p := range srv.vcpuPort {
		atomic.StoreUint32(u32at(srv.slot(uint32(i)), 24), p)
		srv.last[i] = slotCopy{}
	}
}

func (srv *server) setEnabled(on bool) {
	if srv.enabled == on {
		return
	}
	srv.enabled = on
	detail := "disable"
	if on {
		srv.removeGFNs()
		srv.updateEports()
		detail = "enable"
	} else {
		srv.addGFNs()
	}
	srv.d.s.record(Event{Kind: EventIOReqServer, Dom: srv.d.id, Server: srv.id, Detail: detail})
}

// destroyServerLocked is ioreq_server_destroy after the checks.
func (d *Domain) destroyServerLocked(srv *server) error {
	srv.setEnabled(false)
	srv.freePortsLocked()
	if srv.ioreqGFN != invalidGFN {
		delete(d.overlay, srv.ioreqGFN)
		d.gfnFree[srv.ioreqGFN-d.cfg.IOReqGFNBase] = true
		if srv.bufGFN != invalidGFN {
			delete(d.overlay, srv.bufGFN)
			d.gfnFree[srv.bufGFN-d.cfg.IOReqGFNBase] = true
		}
	}
	if d.memTypeSrv == srv {
		d.memTypeSrv = nil
		d.memTypeFlags = 0
	}
	// Mappings the device model made stay valid until it unmaps them;
	// the simulator's own goes when no vCPU waits on it any more.
	err := srv.use.retire(srv.pages)
	srv.pages = nil
	d.s.record(Event{Kind: EventIOReqServer, Dom: d.id, Server: srv.id, Detail: "destroy"})
	// Wake vCPUs that wait on this server: they see it gone.
	for _, v := range d.vcpus {
		v.kick()
	}
	return err
}

// selectServer is ioreq_server_select with the x86
// arch_ioreq_server_get_type_addr: it returns the server for p (nil for
// none) and rewrites p into a PCI_CONFIG request for a 0xcfc-0xcff data
// cycle with CF8 enabled. Called with s.mu held (shared).
func (d *Domain) selectServer(p *request) *server {
	if p.typ != xenabi.IOREQ_TYPE_PIO && p.typ != xenabi.IOREQ_TYPE_COPY {
		return nil
	}
	kind := xenabi.XEN_DMOP_IO_RANGE_MEMORY
	addr := p.addr
	if p.typ == xenabi.IOREQ_TYPE_PIO {
		kind = xenabi.XEN_DMOP_IO_RANGE_PORT
		// xen/arch/x86/hvm/ioreq.c: PCI config data cycle; CF8_BDF is
		// bits 8-23, CF8_ADDR_LO bits 2-7, the low two bits come from
		// the port (xen/arch/x86/hvm/io.c:hvm_pci_decode_addr).
		if cf8 := atomic.LoadUint32(&d.cf8); p.addr&^3 == 0xcfc && cf8&0x80000000 != 0 {
			kind = xenabi.XEN_DMOP_IO_RANGE_PCI
			addr = uint64((cf8>>8)&0xffff)<<32 | uint64(cf8&0xfc) | p.addr&3
		}
	}
	for id := maxIOReqServers - 1; id >= 0; id-- { // newest first, as Xen
		srv := d.servers[id]
		if srv == nil || !srv.enabled {
			continue
		}
		r := &srv.ranges[kind]
		switch kind {
		case xenabi.XEN_DMOP_IO_RANGE_PORT:
			if r.contains(addr, addr+uint64(p.size)-1) {
				return srv
			}
		case xenabi.XEN_DMOP_IO_RANGE_MEMORY:
			first, last := p.mmioFirst(), p.mmioLast()
			if r.contains(first, last) {
				return srv
			}
		case xenabi.XEN_DMOP_IO_RANGE_PCI:
			if r.contains(addr>>32, addr>>32) {
				p.typ = xenabi.IOREQ_TYPE_PCI_CONFIG
				p.addr = addr
				return srv
			}
		}
	}
	return nil
}

func loadStateWord(slot []byte) uint32 {
	return atomic.LoadUint32(u32at(slot, xenabi.IoreqStateWordOffs))
}
