package domctl

import (
	"encoding/binary"
	"errors"
	"fmt"

	"godm/hyp"
	"godm/hyp/hcall"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

func domID(v uint16) hyp.DomID { return hyp.DomID(v) }

// Domctl issues domctls in one interface version's layout.
type Domctl struct {
	c *hcall.Caller
	l layout
}

// Open selects the domctl layout of the running hypervisor (see the
// package documentation) and returns a Domctl using it. An unimplemented
// interface version gives an error wrapping hyp.ErrNotSupported.
func Open(c *hcall.Caller) (*Domctl, error) {
	major, minor, verr := c.XenVersion()
	if verr == nil {
		if v, known := xenDomctlVersion(major, minor); known {
			l, ok := layoutFor(v)
			if !ok {
				return nil, fmt.Errorf("domctl: Xen %d.%d uses interface version %#x: %w", major, minor, v, hyp.ErrNotSupported)
			}
			return &Domctl{c: c, l: l}, nil
		}
	}
	// Unknown Xen: probe. Xen checks interface_version before anything
	// else and answers a mismatch with EACCES; any other answer (success,
	// or ESRCH/EPERM) means the version is Xen's.
	var errs []error
	if verr != nil {
		errs = append(errs, verr)
	}
	for _, l := range layouts() {
		d := &Domctl{c: c, l: l}
		_, err := d.GetDomainInfo(0)
		if err == nil || !errors.Is(err, unix.EACCES) {
			return d, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("domctl: no implemented interface version accepted (Xen %d.%d): %w: %w",
		major, minor, hyp.ErrNotSupported, errors.Join(errs...))
}

// OpenVersion returns a Domctl using interface version v without asking
// the hypervisor, or an error wrapping hyp.ErrNotSupported if v is not
// implemented.
func OpenVersion(c *hcall.Caller, v uint32) (*Domctl, error) {
	l, ok := layoutFor(v)
	if !ok {
		return nil, fmt.Errorf("domctl: interface version %#x: %w", v, hyp.ErrNotSupported)
	}
	return &Domctl{c: c, l: l}, nil
}

// InterfaceVersion returns the interface version in use.
func (d *Domctl) InterfaceVersion() uint32 { return d.l.version }

// newOp returns a zeroed struct xen_domctl with the header filled, and its
// union.
func (d *Domctl) newOp(cmd uint32, dom hyp.DomID) (op, u []byte) {
	op = make([]byte, d.l.size)
	binary.LittleEndian.PutUint32(op[0:], cmd)
	binary.LittleEndian.PutUint32(op[4:], d.l.version)
	binary.LittleEndian.PutUint16(op[8:], uint16(dom))
	return op, op[headerSize:]
}

// do issues op, naming it what in errors.
func (d *Domctl) do(what string, dom hyp.DomID, op []byte) error {
	if err := d.c.Domctl(op); err != nil {
		return fmt.Errorf("domctl: %s of %v: %w", what, dom, err)
	}
	return nil
}

// DomainInfo is the answer of XEN_DOMCTL_getdomaininfo.
type DomainInfo struct {
	Domain          hyp.DomID
	Flags           uint32 // xenabi.XEN_DOMINF_*
	TotPages        uint64
	MaxPages        uint64
	SharedInfoFrame uint64
	CPUTime         uint64 // nanoseconds
	OnlineVCPUs     uint32
	MaxVCPUID       uint32
	CPUPool         uint32
}

// HVM reports whether the domain is an HVM guest.
func (i DomainInfo) HVM() bool { return i.Flags&xenabi.XEN_DOMINF_hvm_guest != 0 }

// Dying reports whether the domain is being destroyed.
func (i DomainInfo) Dying() bool { return i.Flags&xenabi.XEN_DOMINF_dying != 0 }

// Shutdown reports whether the guest has shut down, and why
// (xenabi.SHUTDOWN_*).
func (i DomainInfo) Shutdown() (bool, uint32) {
	return i.Flags&xenabi.XEN_DOMINF_shutdown != 0,
		i.Flags >> xenabi.XEN_DOMINF_shutdownshift & xenabi.XEN_DOMINF_shutdownmask
}

// GetDomainInfo returns the state of dom. Xen answers with the first
// domain whose id is at least dom; like xc_domain_getinfo_single, a
// different domain is reported as ESRCH.
func (d *Domctl) GetDomainInfo(dom hyp.DomID) (DomainInfo, error) {
	op, u := d.newOp(xenabi.XEN_DOMCTL_getdomaininfo, dom)
	if err := d.do("getdomaininfo", dom, op); err != nil {
		return DomainInfo{}, err
	}
	info := d.l.codec.getDomainInfo(u)
	if info.Domain != dom {
		return DomainInfo{}, fmt.Errorf("domctl: getdomaininfo of %v: answer is %v: %w", dom, info.Domain, unix.ESRCH)
	}
	return info, nil
}

// IRQKind is the kind of a passthrough interrupt binding (enum
// pt_irq_type).
type IRQKind uint32

// Binding kinds.
const (
	PCI          IRQKind = xenabi.PT_IRQ_TYPE_PCI
	ISA          IRQKind = xenabi.PT_IRQ_TYPE_ISA
	MSI          IRQKind = xenabi.PT_IRQ_TYPE_MSI
	MSITranslate IRQKind = xenabi.PT_IRQ_TYPE_MSI_TRANSLATE
)

// IRQBinding routes a machine interrupt (a PIRQ of the guest) to the
// guest: to a PCI INTx pin (PCI: Bus, Device, Intx), an ISA IRQ (ISA:
// ISAIRQ) or a guest MSI (MSI: GVec, GFlags as
// xenabi.XEN_DOMCTL_VMSI_X86_*, GTable the guest MSI-X table address).
type IRQBinding struct {
	Kind       IRQKind
	MachineIRQ uint32
	Bus        uint8
	Device     uint8
	Intx       uint8 // 0..3 for INTA..INTD
	ISAIRQ     uint8
	GVec       uint8
	GFlags     uint32
	GTable     uint64
}

// BindPtIRQ binds an interrupt (XEN_DOMCTL_bind_pt_irq).
func (d *Domctl) BindPtIRQ(dom hyp.DomID, b IRQBinding) error {
	op, u := d.newOp(xenabi.XEN_DOMCTL_bind_pt_irq, dom)
	d.l.codec.putBindPtIRQ(u, b)
	return d.do("bind_pt_irq", dom, op)
}

// UnbindPtIRQ undoes BindPtIRQ (XEN_DOMCTL_unbind_pt_irq). For an MSI
// binding, GTable is not sent (as libxenctrl does).
func (d *Domctl) UnbindPtIRQ(dom hyp.DomID, b IRQBinding) error {
	if b.Kind == MSI {
		b.GTable = 0
	}
	op, u := d.newOp(xenabi.XEN_DOMCTL_unbind_pt_irq, dom)
	d.l.codec.putBindPtIRQ(u, b)
	return d.do("unbind_pt_irq", dom, op)
}

// MemoryMapping maps (add) or unmaps nr machine frames from firstMFN at
// guest frame firstGFN of dom (XEN_DOMCTL_memory_mapping). Like
// xc_domain_memory_mapping it retries in halved batches when Xen answers
// E2BIG, and rolls back a partly done mapping that fails; an unmapping
// continues past errors and reports the first.
func (d *Domctl) MemoryMapping(dom hyp.DomID, firstGFN, firstMFN, nr uint64, add bool) error {
	if nr == 0 {
		return nil
	}
	batch := nr
	var done uint64
	var first error
	for done < nr {
		n := min(nr-done, batch)
		op, u := d.newOp(xenabi.XEN_DOMCTL_memory_mapping, dom)
		d.l.codec.putMemoryMapping(u, firstGFN+done, firstMFN+done, n, add)
		err := d.c.Domctl(op)
		if errors.Is(err, unix.E2BIG) {
			if batch <= 1 {
				first = err
				break
			}
			batch >>= 1
			continue
		}
		if err != nil && first == nil {
			first = err
		}
		if err != nil && add {
			break
		}
		done += n
	}
	if first == nil {
		return nil
	}
	if add && done > 0 {
		_ = d.MemoryMapping(dom, firstGFN, firstMFN, done, false)
	}
	return fmt.Errorf("domctl: memory_mapping of %v (gfn %#x, mfn %#x, %d frames, add %v): %w", dom, firstGFN, firstMFN, nr, add, first)
}

// IoportMapping maps (add) or unmaps nr machine I/O ports from firstMport
// at guest port firstGport of dom (XEN_DOMCTL_ioport_mapping).
func (d *Domctl) IoportMapping(dom hyp.DomID, firstGport, firstMport, nr uint32, add bool) error {
	op, u := d.newOp(xenabi.XEN_DOMCTL_ioport_mapping, dom)
	d.l.codec.putIoportMapping(u, firstGport, firstMport, nr, add)
	return d.do("ioport_mapping", dom, op)
}

// IomemPermission allows or denies dom access to nr machine frames from
// firstMFN (XEN_DOMCTL_iomem_permission).
func (d *Domctl) IomemPermission(dom hyp.DomID, firstMFN, nr uint64, allow bool) error {
	op, u := d.newOp(xenabi.XEN_DOMCTL_iomem_permission, dom)
	d.l.codec.putIomemPermission(u, firstMFN, nr, allow)
	return d.do("iomem_permission", dom, op)
}

// IoportPermission allows or denies dom access to nr I/O ports from
// firstPort (XEN_DOMCTL_ioport_permission).
func (d *Domctl) IoportPermission(dom hyp.DomID, firstPort, nr uint32, allow bool) error {
	op, u := d.newOp(xenabi.XEN_DOMCTL_ioport_permission, dom)
	d.l.codec.putIoportPermission(u, firstPort, nr, allow)
	return d.do("ioport_permission", dom, op)
}

// IRQPermission allows or denies dom access to PIRQ pirq
// (XEN_DOMCTL_irq_permission).
func (d *Domctl) IRQPermission(dom hyp.DomID, pirq uint32, allow bool) error {
	if d.l.maxPIRQ != 0 && pirq > d.l.maxPIRQ {
		return fmt.Errorf("domctl: irq_permission of %v: pirq %d does not fit interface version %#x: %w", dom, pirq, d.l.version, unix.EINVAL)
	}
	op, u := d.newOp(xenabi.XEN_DOMCTL_irq_permission, dom)
	d.l.codec.putIRQPermission(u, pirq, allow)
	return d.do("irq_permission", dom, op)
}
