package passthrough

import (
	"errors"
	"fmt"

	"godm/devices"
	"godm/hyp"
	"godm/hyp/domctl"

	"golang.org/x/sys/unix"
)

var _ AssignQuery = (*domctl.Domctl)(nil)

// AssignQuery asks the hypervisor about a host function's IOMMU
// assignment: XEN_DOMCTL_test_assign_device. Its answer, in every Xen
// from 4.15 to 4.22 (xen/drivers/passthrough/pci.c, iommu_do_pci_domctl
// and device_assigned):
//
//   - nil: the function is free, owned by the hardware domain or
//     quarantined (dom_io): no guest has it;
//   - EINVAL: it is assigned to some guest (Xen does not say which),
//     hidden by Xen (dom_xen), or unknown to Xen;
//   - EOPNOTSUPP: dom has no IOMMU context (a guest created without
//     passthrough), so nothing can be assigned to it;
//   - EPERM: the caller is not the control domain (XSM_PRIV).
//
// *domctl.Domctl implements it (TestAssignDevice); tests use xensim or a
// fake.
type AssignQuery interface {
	TestAssignDevice(dom hyp.DomID, sbdf uint32) error
}

// Assignment is what an AssignQuery says of a function.
type Assignment uint8

const (
	// AssignUnknown: the query failed (no privilege, no such domctl).
	AssignUnknown Assignment = iota
	// AssignFree: no guest has the function in its IOMMU context.
	AssignFree
	// AssignGuest: a guest has it (Xen does not say which one).
	AssignGuest
	// AssignNoIOMMU: the domain has no IOMMU context.
	AssignNoIOMMU
)

// QueryAssignment asks q about host for dom and classifies the answer; err
// is q's error when the answer is AssignUnknown.
func QueryAssignment(q AssignQuery, dom hyp.DomID, host devices.SBDF) (Assignment, error) {
	err := q.TestAssignDevice(dom, uint32(host))
	switch {
	case err == nil:
		return AssignFree, nil
	case errors.Is(err, unix.EINVAL):
		return AssignGuest, nil
	case errors.Is(err, unix.EOPNOTSUPP):
		return AssignNoIOMMU, nil
	}
	return AssignUnknown, err
}

// CheckAssigned refuses (ErrNotGranted) a function no guest has in its
// IOMMU context, or a domain without one; it is the up-front check for a
// function the toolstack must have assigned before the device model is
// told about it (a -device option on godm's command line, Standalone).
// It cannot refuse a function assigned to another guest: Xen's only query
// does not say which guest has it (the xenstore records libxl keeps do,
// see XenstoreAssignments), and then Xen itself refuses the BAR mappings,
// since the I/O memory permission is per domain.
//
// It must not be used for libxl's QMP device_add: libxl assigns the
// function only after the device model added it
// (tools/libs/light/libxl_pci.c: libxl__device_pci_add requires
// test_assign_device to answer "free", pci_add_dm_done assigns).
func CheckAssigned(q AssignQuery, dom hyp.DomID, host devices.SBDF) error {
	a, err := QueryAssignment(q, dom, host)
	switch a {
	case AssignGuest:
		return nil
	case AssignFree:
		return fmt.Errorf("passthrough: %v is assigned to no guest (Xen's test_assign_device: the hardware domain "+
			"or quarantine owns it); assign it to %v first (xl pci-attach, pci=[...]): %w", host, dom, ErrNotGranted)
	case AssignNoIOMMU:
		return fmt.Errorf("passthrough: %v has no IOMMU context (created without passthrough: "+
			"set passthrough= or pci=[...] in its configuration): %w", dom, ErrNotGranted)
	}
	return fmt.Errorf("passthrough: cannot check that %v is assigned to %v: %w", host, dom, err)
}
