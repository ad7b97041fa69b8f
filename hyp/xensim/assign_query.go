package xensim

import (
	"encoding/binary"

	"godm/hyp"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// PCI device assignment (the IOMMU side of passthrough):
// XEN_DOMCTL_assign_device, test_assign_device and deassign_device, as
// xen/common/domctl.c and xen/drivers/passthrough/pci.c
// (iommu_do_pci_domctl, device_assigned, deassign_device) answer them in
// Xen 4.15 to 4.22. The simulator knows no host PCI devices, so every
// function exists; one that was never assigned is owned by the hardware
// domain. The simulated IOMMU is always enabled.
const (
	domctlAssignDevice     = 37 // XEN_DOMCTL_assign_device
	domctlTestAssignDevice = 45 // XEN_DOMCTL_test_assign_device
	domctlDeassignDevice   = 47 // XEN_DOMCTL_deassign_device
	domctlDevPCI           = 0  // XEN_DOMCTL_DEV_PCI
	domctlDevRDMRelaxed    = 1  // XEN_DOMCTL_DEV_RDM_RELAXED
)

// assignTable records which domain each assigned PCI function (machine
// SBDF) belongs to; a function not in it belongs to the hardware domain.
// DOMID_IO stands for quarantine. Guarded by Sim.mu.
type assignTable struct {
	owner map[uint32]hyp.DomID
}

// domctlAssign answers the assignment domctls and passes every other one
// to domctl.
func (s *Sim) domctlAssign(caller hyp.DomID, arg uint64) (uintptr, error) {
	b := guestBytes(arg, xenabi.XenDomctlSize)
	if b == nil {
		return 0, unix.EFAULT
	}
	le := binary.LittleEndian
	cmd := le.Uint32(b)
	switch cmd {
	case domctlAssignDevice, domctlTestAssignDevice, domctlDeassignDevice:
	default:
		return s.domctl(caller, arg)
	}
	if abi, ok := s.domctlABI(); !ok || le.Uint32(b[4:]) != abi.version { // the simulated release's (domctl_abi.go)
		return 0, unix.EACCES
	}
	domid := hyp.DomID(le.Uint16(b[8:]))
	// struct xen_domctl_assign_device: dev, flags, then the union (8-byte
	// aligned) whose pci.machine_sbdf is at offset 8.
	u := b[16:]
	dev, flags, sbdf := le.Uint32(u), le.Uint32(u[4:]), le.Uint32(u[8:])
	s.mu.Lock()
	defer s.mu.Unlock()
	// xen/common/domctl.c: DOMID_IO names quarantine for assign and
	// deassign, DOMID_INVALID means "any guest" for test_assign (and is
	// refused for the others); otherwise the domain must exist.
	var d *Domain
	switch {
	case domid == xenabi.DOMID_IO && cmd != domctlTestAssignDevice:
	case domid == xenabi.DOMID_INVALID:
		if cmd != domctlTestAssignDevice {
			return 0, unix.ESRCH
		}
	default:
		if d = s.domains[domid]; d == nil {
			return 0, unix.ESRCH
		}
	}
	// XSM dummy policy: every assignment domctl is XSM_PRIV (the control
	// domain).
	if caller != 0 {
		return 0, unix.EPERM
	}
	if domid == caller { // "Don't support self-assignment of devices."
		return 0, unix.EINVAL
	}
	if dev != domctlDevPCI {
		return 0, unix.ENODEV
	}
	if s.assigned.owner == nil {
		s.assigned.owner = make(map[uint32]hyp.DomID)
	}
	owner, ok := s.assigned.owner[sbdf]
	// device_assigned: owned by neither the hardware domain nor dom_io
	// means assigned to a guest. A dead guest's functions went back.
	busy := ok && owner != xenabi.DOMID_IO && s.domains[owner] != nil && !s.domains[owner].dead
	switch cmd {
	case domctlTestAssignDevice:
		if flags != 0 || busy {
			return 0, unix.EINVAL // "already assigned, or non-existent"
		}
		return 0, nil
	case domctlAssignDevice:
		if flags&^domctlDevRDMRelaxed != 0 || (d != nil && d.dead) {
			return 0, unix.EINVAL
		}
		if busy {
			return 0, unix.EBUSY
		}
		s.assigned.owner[sbdf] = domid
		return 0, nil
	}
	// deassign_device: the function must belong to d; it goes back to
	// the hardware domain (the simulator does not quarantine).
	if flags != 0 {
		return 0, unix.EINVAL
	}
	if !ok || owner != domid {
		return 0, unix.ENODEV
	}
	delete(s.assigned.owner, sbdf)
	return 0, nil
}

// AssignedTo returns the domain the PCI function sbdf (seg<<16 | bus<<8 |
// devfn) is assigned to by XEN_DOMCTL_assign_device, and false if it
// belongs to the hardware domain (never assigned, deassigned, or its guest
// died). Quarantined functions report DOMID_IO.
func (s *Sim) AssignedTo(sbdf uint32) (hyp.DomID, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	owner, ok := s.assigned.owner[sbdf]
	if !ok || (owner != xenabi.DOMID_IO && (s.domains[owner] == nil || s.domains[owner].dead)) {
		return 0, false
	}
	return owner, true
}
