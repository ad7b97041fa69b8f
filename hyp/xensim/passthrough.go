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
