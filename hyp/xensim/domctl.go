package xensim

import (
	"encoding/binary"

	"godm/hyp"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// Simulated getdomaininfo answers: hap_paddr_bits of a typical host, and
// the emulation flags libxl gives an HVM guest (XEN_X86_EMU_ALL without
// XEN_X86_EMU_VPCI; xen/include/public/arch-x86/xen.h).
const (
	simGPAddrBits  = 48
	simHVMEmuFlags = 0x3ff
)

// domctl is HYPERVISOR_domctl on a struct xen_domctl in caller memory, in
// the layout of the simulated release (domctl_abi.go). struct xen_domctl
// is 16 bytes of header and a 128-byte union in every release.
func (s *Sim) domctl(caller hyp.DomID, arg uint64) (uintptr, error) {
	b := guestBytes(arg, xenabi.XenDomctlSize)
	if b == nil {
		return 0, unix.EFAULT
	}
	le := binary.LittleEndian
	abi, ok := s.domctlABI()
	// xen/common/domctl.c: a version other than Xen's own is refused
	// before the command is looked at.
	if !ok || le.Uint32(b[4:]) != abi.version {
		return 0, unix.EACCES
	}
	cmd := le.Uint32(b)
	domid := hyp.DomID(le.Uint16(b[8:]))
	u := b[16:]
	s.mu.Lock()
	defer s.mu.Unlock()
	if cmd == xenabi.XEN_DOMCTL_getdomaininfo {
		return 0, s.getDomainInfo(abi, caller, domid, b)
	}
	d := s.domains[domid]
	if d == nil || d.dead {
		if abi.lookupEPERM && caller != 0 {
			return 0, unix.EPERM
		}
		return 0, unix.ESRCH
	}
	switch cmd {
	case xenabi.XEN_DOMCTL_bind_pt_irq, xenabi.XEN_DOMCTL_unbind_pt_irq,
		xenabi.XEN_DOMCTL_memory_mapping, xenabi.XEN_DOMCTL_ioport_mapping:
		// xsm/dummy.h xsm_domctl: XSM_DM_PRIV.
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
	pt := d.pt()
	switch cmd {
	case xenabi.XEN_DOMCTL_bind_pt_irq, xenabi.XEN_DOMCTL_unbind_pt_irq:
		return 0, s.domctlBindPtIRQ(abi, d, pt, cmd == xenabi.XEN_DOMCTL_bind_pt_irq, u)
	case xenabi.XEN_DOMCTL_memory_mapping:
		return 0, s.domctlMemoryMapping(abi, caller, d, pt, u)
	case xenabi.XEN_DOMCTL_ioport_mapping:
		return 0, s.domctlIoportMapping(abi, caller, d, pt, u)
	case xenabi.XEN_DOMCTL_irq_permission:
		f := abi.irqPerm
		pirq, allow := uint32(f.pirq.get(u)), f.allow.get(u) != 0
		// xen/common/domctl.c: a PIRQ beyond the caller's nr_pirqs is
		// EINVAL.
		if pirq >= nrPIRQs {
			return 0, unix.EINVAL
		}
		pt.irqPerm[pirq] = allow
		s.record(Event{Kind: EventPermission, Dom: d.id, Type: cmd, First: uint64(pirq), Nr: 1, Level: allow})
		return 0, nil
	case xenabi.XEN_DOMCTL_iomem_permission:
		f := abi.iomemPerm
		first, nr, allow := f.firstMFN.get(u), f.nrMFNs.get(u), f.allow.get(u) != 0
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
		f := abi.ioportPerm
		first, nr, allow := f.firstPort.get(u), f.nrPorts.get(u), f.allow.get(u) != 0
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

// domctlBindPtIRQ is XEN_DOMCTL_bind_pt_irq (bind) and unbind_pt_irq.
// Called with s.mu held.
func (s *Sim) domctlBindPtIRQ(abi domctlABI, d *Domain, pt *passthrough, bind bool, u []byte) error {
	f := abi.bind
	// xen/arch/x86/domctl.c: the machine IRQ must be a PIRQ mapped into
	// the domain (domain_pirq_to_irq > 0) and accessible to the caller.
	mirq, typ := uint32(f.machineIRQ.get(u)), uint32(f.irqType.get(u))
	if _, ok := pt.pirqs[int32(mirq)]; !ok {
		return unix.EPERM
	}
	e := Event{Kind: EventBindPtIRQ, Dom: d.id, Type: typ, Data: uint64(mirq), Level: bind}
	switch typ {
	case xenabi.PT_IRQ_TYPE_PCI:
		e.Link, e.Dev, e.Pin = uint8(f.bus.get(u)), uint8(f.device.get(u)), uint8(f.intx.get(u))
		if e.Dev > 31 || e.Pin > 3 {
			return unix.EINVAL
		}
	case xenabi.PT_IRQ_TYPE_ISA:
		e.IRQ = uint8(f.isaIRQ.get(u))
		if e.IRQ > 15 {
			return unix.EINVAL
		}
	case xenabi.PT_IRQ_TYPE_MSI:
		e.First, e.Nr, e.Addr = f.gvec.get(u), f.gflags.get(u), f.gtable.get(u)
	default:
		return unix.EINVAL
	}
	s.record(e)
	return nil
}

// domctlMemoryMapping is XEN_DOMCTL_memory_mapping. Called with s.mu
// held.
func (s *Sim) domctlMemoryMapping(abi domctlABI, caller hyp.DomID, d *Domain, pt *passthrough, u []byte) error {
	f := abi.memMap
	gfn, mfn, nr, add := f.firstGFN.get(u), f.firstMFN.get(u), f.nrMFNs.get(u), uint32(f.add.get(u))
	end := mfn + nr - 1
	if nr == 0 || end < mfn || end>>(52-pageShift) != 0 || gfn+nr-1 < gfn {
		return unix.EINVAL
	}
	// xen/common/domctl.c: both the caller and the target domain must
	// have been granted the frames (iomem_access_permitted(current->domain,
	// ...) and (d, ...)).
	if !s.iomemPermitted(caller, mfn, end) || !pt.iomemPerm.contains(mfn, end) {
		return unix.EPERM
	}
	if nr > 1<<20 {
		return unix.E2BIG // the simulator does not do continuations
	}
	if add == xenabi.DPCI_ADD_MAPPING {
		// xen/arch/x86/mm/p2m.c:set_typed_p2m_entry: a different
		// direct-MMIO mapping already there is refused (and Xen crashes
		// the domain); the same one is accepted again; a RAM page there
		// is dropped from the p2m, without complaint.
		for i := uint64(0); i < nr; i++ {
			if old, ok := pt.mmio[gfn+i]; ok && old != mfn+i {
				s.violation(d.id, 0, "memory_mapping of gfn %#x to mfn %#x over mfn %#x (Xen crashes the domain)", gfn+i, mfn+i, old)
				return unix.EPERM
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
	return nil
}

// domctlIoportMapping is XEN_DOMCTL_ioport_mapping. Called with s.mu
// held.
func (s *Sim) domctlIoportMapping(abi domctlABI, caller hyp.DomID, d *Domain, pt *passthrough, u []byte) error {
	f := abi.ioMap
	fgp, fmp, np, add := f.firstGport.get(u), f.firstMport.get(u), f.nrPorts.get(u), uint32(f.add.get(u))
	if np == 0 || (fgp|fmp|(np-1)) >= maxIOPorts || fgp+np > maxIOPorts || fmp+np > maxIOPorts {
		return unix.EINVAL
	}
	if !s.ioportsPermitted(caller, fmp, fmp+np-1) {
		return unix.EPERM
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
		return err
	}
	s.record(Event{Kind: EventIOPortMapping, Dom: d.id, First: fgp, Addr: fmp, Nr: np, Level: add == xenabi.DPCI_ADD_MAPPING})
	return nil
}

// getDomainInfo answers XEN_DOMCTL_getdomaininfo into the struct
// xen_domctl op (xen/common/domctl.c of the release). Up to 4.17 it
// answers the first domain whose id is at least domid (a reserved id
// that names no domain is EINVAL); from 4.18 exactly domid. Xen echoes the
// domain answered in the header's domain field.
func (s *Sim) getDomainInfo(abi domctlABI, caller hyp.DomID, domid hyp.DomID, op []byte) error {
	d := s.domains[domid]
	if d != nil && d.dead {
		d = nil
	}
	if abi.exactInfo {
		// 4.18+: looked up like any domctl's domain, before XSM.
		if d == nil {
			if abi.lookupEPERM && caller != 0 {
				return unix.EPERM
			}
			return unix.ESRCH
		}
		if caller != 0 {
			return unix.EPERM // XSM_XS_PRIV: the control (or xenstore) domain
		}
	} else {
		// Up to 4.17: xsm_domctl first, then the search.
		if caller != 0 {
			return unix.EPERM
		}
		if d == nil && domid >= xenabi.DOMID_FIRST_RESERVED {
			return unix.EINVAL
		}
		for id, c := range s.domains {
			if id >= domid && !c.dead && (d == nil || id < d.id) {
				d = c
			}
		}
		if d == nil {
			return unix.ESRCH
		}
	}
	f := abi.info
	u := op[16:]
	clear(u[:f.size])
	f.domain.put(u, uint64(d.id))
	flags := uint32(xenabi.XEN_DOMINF_running)
	if d.hvm {
		flags |= xenabi.XEN_DOMINF_hvm_guest | xenabi.XEN_DOMINF_hap
		f.emulFlags.put(u, simHVMEmuFlags)
	}
	if d.zombie {
		flags = flags&^xenabi.XEN_DOMINF_running | xenabi.XEN_DOMINF_dying
	}
	if d.shutdown >= 0 {
		flags |= xenabi.XEN_DOMINF_shutdown | uint32(d.shutdown&xenabi.XEN_DOMINF_shutdownmask)<<xenabi.XEN_DOMINF_shutdownshift
	}
	f.flags.put(u, uint64(flags))
	var pages uint64
	for _, r := range d.regions {
		pages += r.size / pageSize
	}
	f.totPages.put(u, pages)
	f.maxPages.put(u, pages)
	vcpus := uint64(len(d.vcpus))
	if vcpus == 0 {
		vcpus = 1
	}
	f.onlineVCPUs.put(u, vcpus)
	f.maxVCPUID.put(u, vcpus-1)
	f.gpaddrBits.put(u, simGPAddrBits) // absent (size 0) before 4.16
	binary.LittleEndian.PutUint16(op[8:], uint16(d.id))
	return nil
}
