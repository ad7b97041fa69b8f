package xensim

import (
	"encoding/binary"

	"godm/hyp"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// Simulated interrupt limits: the GSIs of two IO-APICs and the PIRQ
// space of a domain (nr_irqs_gsi and d->nr_pirqs on a typical host).
const (
	nrGSIs  = 48
	nrPIRQs = 1024
	// maxIOPorts is MAX_IOPORTS of xen/arch/x86/domctl.c.
	maxIOPorts = 0x10000
)

// pirqMap is a mapped PIRQ of a domain (physdev map_pirq).
type pirqMap struct {
	typ   int32
	index int32 // GSI, or MSI entry
	bus   int32
	devfn int32
}

// passthrough is the per-domain passthrough state.
type passthrough struct {
	pirqs      map[int32]pirqMap
	iomemPerm  rangeSet // machine frames the domain may map
	ioportPerm rangeSet // machine ports
	irqPerm    map[uint32]bool
	mmio       map[uint64]uint64 // gfn → mfn (p2m_mmio_direct)
	ioports    rangeSet          // guest ports handled by hardware
}

func (d *Domain) pt() *passthrough {
	if d.passthru == nil {
		d.passthru = &passthrough{pirqs: make(map[int32]pirqMap), irqPerm: make(map[uint32]bool),
			mmio: make(map[uint64]uint64)}
	}
	return d.passthru
}

// dmPriv is XSM_DM_PRIV under the dummy policy: the control domain, or
// the target's device-model domain.
func (d *Domain) dmPriv(caller hyp.DomID) bool {
	return caller == 0 || (d.cfg.DeviceModel != 0 && caller == d.cfg.DeviceModel)
}

// ioportsPermitted and iomemPermitted are the caller-side checks
// (ioports_access_permitted(currd, ...)): dom0 may touch everything.
func (s *Sim) ioportsPermitted(caller hyp.DomID, first, last uint64) bool {
	if caller == 0 {
		return true
	}
	c := s.domains[caller]
	return c != nil && c.passthru != nil && c.passthru.ioportPerm.contains(first, last)
}

func (s *Sim) iomemPermitted(caller hyp.DomID, first, last uint64) bool {
	if caller == 0 {
		return true
	}
	c := s.domains[caller]
	return c != nil && c.passthru != nil && c.passthru.iomemPerm.contains(first, last)
}

// domctl is HYPERVISOR_domctl on a struct xen_domctl (interface version
// 0x15) in caller memory.
func (s *Sim) domctl(caller hyp.DomID, arg uint64) (uintptr, error) {
	b := guestBytes(arg, xenabi.XenDomctlSize)
	if b == nil {
		return 0, unix.EFAULT
	}
	if binary.LittleEndian.Uint32(b[4:]) != xenabi.XEN_DOMCTL_INTERFACE_VERSION_4_17 {
		return 0, unix.EACCES
	}
	cmd := binary.LittleEndian.Uint32(b)
	domid := hyp.DomID(binary.LittleEndian.Uint16(b[8:]))
	u := b[16:]
	s.mu.Lock()
	defer s.mu.Unlock()
	if cmd == xenabi.XEN_DOMCTL_getdomaininfo {
		return 0, s.getDomainInfo(caller, domid, u)
	}
	d := s.domains[domid]
	if d == nil || d.dead {
		return 0, unix.ESRCH
	}
	switch cmd {
	case xenabi.XEN_DOMCTL_bind_pt_irq, xenabi.XEN_DOMCTL_unbind_pt_irq,
		xenabi.XEN_DOMCTL_memory_mapping, xenabi.XEN_DOMCTL_ioport_mapping:
		if !d.dmPriv(caller) {
			return 0, unix.EPERM
		}
	case xenabi.XEN_DOMCTL_irq_permission, xenabi.XEN_DOMCTL_iomem_permission, xenabi.XEN_DOMCTL_ioport_permission:
		if caller != 0 {
			return 0, unix.EPERM
		}
	default:
		return 0, unix.ENOSYS // not simulated
	}
	le := binary.LittleEndian
	pt := d.pt()
	switch cmd {
	case xenabi.XEN_DOMCTL_bind_pt_irq, xenabi.XEN_DOMCTL_unbind_pt_irq:
		// xen/arch/x86/domctl.c: the machine IRQ must be a PIRQ mapped
		// into the domain (domain_pirq_to_irq > 0) and accessible to the
		// caller.
		mirq, typ := le.Uint32(u), le.Uint32(u[4:])
		if _, ok := pt.pirqs[int32(mirq)]; !ok {
			return 0, unix.EPERM
		}
		bind := cmd == xenabi.XEN_DOMCTL_bind_pt_irq
		e := Event{Kind: EventBindPtIRQ, Dom: d.id, Type: typ, Data: uint64(mirq), Level: bind}
		switch typ {
		case xenabi.PT_IRQ_TYPE_PCI:
			e.Link, e.Dev, e.Pin = u[8], u[9], u[10] // bus, device, INTx
			if e.Dev > 31 || e.Pin > 3 {
				return 0, unix.EINVAL
			}
		case xenabi.PT_IRQ_TYPE_ISA:
			e.IRQ = u[8]
			if e.IRQ > 15 {
				return 0, unix.EINVAL
			}
		case xenabi.PT_IRQ_TYPE_MSI:
			e.First, e.Nr, e.Addr = uint64(u[8]), uint64(le.Uint32(u[12:])), le.Uint64(u[16:])
		default:
			return 0, unix.EINVAL
		}
		s.record(e)
		return 0, nil

	case xenabi.XEN_DOMCTL_memory_mapping:
		gfn, mfn, nr, add := le.Uint64(u), le.Uint64(u[8:]), le.Uint64(u[16:]), le.Uint32(u[24:])
		end := mfn + nr - 1
		if nr == 0 || end < mfn || end>>(52-pageShift) != 0 || gfn+nr-1 < gfn {
			return 0, unix.EINVAL
		}
		// xen/common/domctl.c (4.17): both the caller and the target
		// domain must have been granted the frames
		// (iomem_access_permitted(current->domain, ...) and (d, ...)).
		if !s.iomemPermitted(caller, mfn, end) || !pt.iomemPerm.contains(mfn, end) {
			return 0, unix.EPERM
		}
		if nr > 1<<20 {
			return 0, unix.E2BIG // the simulator does not do continuations
		}
		if add == xenabi.DPCI_ADD_MAPPING {
			// xen/arch/x86/mm/p2m.c:set_typed_p2m_entry: a different
			// direct-MMIO mapping already there is refused (and Xen
			// crashes the domain); the same one is accepted again; a RAM
			// page there is dropped from the p2m, without complaint.
			for i := uint64(0); i < nr; i++ {
				if old, ok := pt.mmio[gfn+i]; ok && old != mfn+i {
					s.violation(d.id, 0, "memory_mapping of gfn %#x to mfn %#x over mfn %#x (Xen crashes the domain)", gfn+i, mfn+i, old)
					return 0, unix.EPERM
				}
			}
			for i := uint64(0); i < nr; i++ {
				if d.isRAM(gfn + i) {
					d.overlay[gfn+i] = p2mEntry{hole: true}
					delete(d.memType, gfn+i)
				}
				pt.mmio[gfn+i] = mfn + i
			}
		} else {
			for i := uint64(0); i < nr; i++ {
				delete(pt.mmio, gfn+i)
			}
		}
		s.record(Event{Kind: EventMemoryMapping, Dom: d.id, First: gfn, Addr: mfn, Nr: nr, Level: add == xenabi.DPCI_ADD_MAPPING})
		return 0, nil

	case xenabi.XEN_DOMCTL_ioport_mapping:
		fgp, fmp, np, add := uint64(le.Uint32(u)), uint64(le.Uint32(u[4:])), uint64(le.Uint32(u[8:])), le.Uint32(u[12:])
		if np == 0 || (fgp|fmp|(np-1)) >= maxIOPorts || fgp+np > maxIOPorts || fmp+np > maxIOPorts {
			return 0, unix.EINVAL
		}
		if !s.ioportsPermitted(caller, fmp, fmp+np-1) {
			return 0, unix.EPERM
		}
		var err error
		if add == xenabi.DPCI_ADD_MAPPING {
			if !pt.ioports.overlaps(fgp, fgp+np-1) {
				err = pt.ioports.add(fgp, fgp+np-1)
			}
		} else {
			err = pt.ioports.remove(fgp, fgp+np-1)
		}
		if err != nil {
			return 0, err
		}
		s.record(Event{Kind: EventIOPortMapping, Dom: d.id, First: fgp, Addr: fmp, Nr: np, Level: add == xenabi.DPCI_ADD_MAPPING})
		return 0, nil

	case xenabi.XEN_DOMCTL_irq_permission:
		pirq, allow := le.Uint32(u), u[4] != 0
		pt.irqPerm[pirq] = allow
		s.record(Event{Kind: EventPermission, Dom: d.id, Type: cmd, First: uint64(pirq), Nr: 1, Level: allow})
		return 0, nil

	case xenabi.XEN_DOMCTL_iomem_permission:
		first, nr, allow := le.Uint64(u), le.Uint64(u[8:]), u[16] != 0
		if nr == 0 || first+nr-1 < first {
			return 0, unix.EINVAL
		}
		var err error
		if allow {
			err = pt.iomemPerm.add(first, first+nr-1)
		} else {
			err = pt.iomemPerm.remove(first, first+nr-1)
		}
		if err != nil {
			return 0, err
		}
		s.record(Event{Kind: EventPermission, Dom: d.id, Type: cmd, First: first, Nr: nr, Level: allow})
		return 0, nil

	case xenabi.XEN_DOMCTL_ioport_permission:
		first, nr, allow := uint64(le.Uint32(u)), uint64(le.Uint32(u[4:])), u[8] != 0
		if nr == 0 || first+nr > maxIOPorts {
			return 0, unix.EINVAL
		}
		var err error
		if allow {
			err = pt.ioportPerm.add(first, first+nr-1)
		} else {
			err = pt.ioportPerm.remove(first, first+nr-1)
		}
		if err != nil {
			return 0, err
		}
		s.record(Event{Kind: EventPermission, Dom: d.id, Type: cmd, First: first, Nr: nr, Level: allow})
		return 0, nil
	}
	return 0, unix.ENOSYS
}

// getDomainInfo answers XEN_DOMCTL_getdomaininfo for the first domain
// whose id is at least domid (xen/common/domctl.c).
func (s *Sim) getDomainInfo(caller hyp.DomID, domid hyp.DomID, u []byte) error {
	if caller != 0 {
		return unix.EPERM // XSM_XS_PRIV: the control (or xenstore) domain
	}
	var d *Domain
	for id, c := range s.domains {
		if id >= domid && !c.dead && (d == nil || id < d.id) {
			d = c
		}
	}
	if d == nil {
		return unix.ESRCH
	}
	le := binary.LittleEndian
	clear(u[:128])
	le.PutUint16(u, uint16(d.id))
	flags := uint32(xenabi.XEN_DOMINF_running)
	if d.hvm {
		flags |= xenabi.XEN_DOMINF_hvm_guest | xenabi.XEN_DOMINF_hap
	}
	if d.shutdown >= 0 {
		flags |= xenabi.XEN_DOMINF_shutdown | uint32(d.shutdown&xenabi.XEN_DOMINF_shutdownmask)<<xenabi.XEN_DOMINF_shutdownshift
	}
	le.PutUint32(u[4:], flags)
	var pages uint64
	for _, r := range d.regions {
		pages += r.size / pageSize
	}
	le.PutUint64(u[8:], pages)  // tot_pages
	le.PutUint64(u[16:], pages) // max_pages
	vcpus := uint32(len(d.vcpus))
	if vcpus == 0 {
		vcpus = 1
	}
	le.PutUint32(u[64:], vcpus)   // nr_online_vcpus
	le.PutUint32(u[68:], vcpus-1) // max_vcpu_id
	return nil
}

// physdevOp is HYPERVISOR_physdev_op: map_pirq and unmap_pirq.
func (s *Sim) physdevOp(caller hyp.DomID, cmd, arg uint64) (uintptr, error) {
	le := binary.LittleEndian
	switch cmd {
	case xenabi.PHYSDEVOP_map_pirq, xenabi.PHYSDEVOP_unmap_pirq:
	default:
		return 0, unix.ENOSYS // not simulated
	}
	n := 40
	if cmd == xenabi.PHYSDEVOP_unmap_pirq {
		n = 8
	}
	b := guestBytes(arg, n)
	if b == nil {
		return 0, unix.EFAULT
	}
	domid := hyp.DomID(le.Uint16(b))
	if domid == xenabi.DOMID_SELF {
		domid = caller
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.domains[domid]
	if d == nil || d.dead {
		return 0, unix.ESRCH
	}
	if !d.dmPriv(caller) {
		return 0, unix.EPERM
	}
	pt := d.pt()
	if cmd == xenabi.PHYSDEVOP_unmap_pirq {
		pirq := int32(le.Uint32(b[4:]))
		if _, ok := pt.pirqs[pirq]; !ok {
			return 0, unix.EINVAL // "pirq not mapped"
		}
		delete(pt.pirqs, pirq)
		s.record(Event{Kind: EventUnmapPIRQ, Dom: d.id, Data: uint64(uint32(pirq))})
		return 0, nil
	}
	typ, index, pirq := int32(le.Uint32(b[4:])), int32(le.Uint32(b[8:])), int32(le.Uint32(b[12:]))
	m := pirqMap{typ: typ, index: index, bus: int32(le.Uint32(b[16:])), devfn: int32(le.Uint32(b[20:]))}
	switch typ {
	case xenabi.MAP_PIRQ_TYPE_GSI:
		if index < 0 || index >= nrGSIs {
			return 0, unix.EINVAL
		}
	case xenabi.MAP_PIRQ_TYPE_MSI, xenabi.MAP_PIRQ_TYPE_MSI_SEG, xenabi.MAP_PIRQ_TYPE_MULTI_MSI:
	default:
		return 0, unix.EINVAL
	}
	if pirq < 0 {
		pirq = pt.freePIRQ(typ)
		if pirq < 0 {
			return 0, unix.ENOSPC
		}
	} else if pirq >= nrPIRQs {
		return 0, unix.EINVAL
	} else if old, ok := pt.pirqs[pirq]; ok {
		if old != m {
			return 0, unix.EBUSY
		}
	}
	pt.pirqs[pirq] = m
	le.PutUint32(b[12:], uint32(pirq))
	s.record(Event{Kind: EventMapPIRQ, Dom: d.id, Type: uint32(typ), Addr: uint64(uint32(index)), Data: uint64(pirq),
		First: uint64(uint32(m.bus)), Nr: uint64(uint32(m.devfn))})
	return 0, nil
}

// freePIRQ is get_free_pirq (xen/arch/x86/irq.c): GSIs from 16 up, the
// rest from the top down.
func (pt *passthrough) freePIRQ(typ int32) int32 {
	if typ == xenabi.MAP_PIRQ_TYPE_GSI {
		for i := int32(16); i < nrGSIs; i++ {
			if _, used := pt.pirqs[i]; !used {
				return i
			}
		}
	}
	for i := int32(nrPIRQs - 1); i >= nrGSIs; i-- {
		if _, used := pt.pirqs[i]; !used {
			return i
		}
	}
	return -1
}

// hardwareMMIO and hardwarePort report accesses that a passthrough
// mapping sends to the (absent) physical device instead of an ioreq
// server. Called with s.mu held (shared).
func (d *Domain) hardwareMMIO(gfn uint64) bool {
	if d.passthru == nil {
		return false
	}
	_, ok := d.passthru.mmio[gfn]
	return ok
}

func (d *Domain) hardwarePort(port, size uint64) bool {
	return d.passthru != nil && d.passthru.ioports.overlaps(port, port+size-1)
}
