package domctl

import (
	"encoding/binary"

	"godm/hyp"
)

// Device assignment domctls (xen/include/public/domctl.h): the IOMMU side
// of PCI passthrough, which libxl does for each function
// (tools/libs/light/libxl_pci.c, pci_add_dm_done).
const (
	domctlAssignDevice     = 37 // XEN_DOMCTL_assign_device
	domctlTestAssignDevice = 45 // XEN_DOMCTL_test_assign_device
	domctlDeassignDevice   = 47 // XEN_DOMCTL_deassign_device
	devPCI                 = 0  // XEN_DOMCTL_DEV_PCI
)

// RDMRelaxed is XEN_DOMCTL_DEV_RDM_RELAXED: assign even if the
// function's reserved device memory conflicts with the guest's layout.
const RDMRelaxed uint32 = 1

// struct xen_domctl_assign_device is {uint32_t dev; uint32_t flags;
// union {struct {uint32_t machine_sbdf;} pci; struct {uint32_t size;
// XEN_GUEST_HANDLE_64(char) path;} dt;} u;}: the union is 8-byte aligned
// (the guest handle), so machine_sbdf is at offset 8. The public layout
// is the same in every release from 4.15 to 4.22 (4.22 only adds a
// hypervisor-internal field under __XEN__), so it needs no codec.
func putAssignDevice(u []byte, sbdf, flags uint32) {
	binary.LittleEndian.PutUint32(u[0:], devPCI)
	binary.LittleEndian.PutUint32(u[4:], flags)
	binary.LittleEndian.PutUint32(u[8:], sbdf)
}

// AssignDevice assigns the PCI function sbdf (seg<<16 | bus<<8 |
// dev<<3 | fn, like libxl's pci_encode_bdf) to dom in the IOMMU
// (XEN_DOMCTL_assign_device), with flags (0 or RDMRelaxed).
func (d *Domctl) AssignDevice(dom hyp.DomID, sbdf, flags uint32) error {
	op, u := d.newOp(domctlAssignDevice, dom)
	putAssignDevice(u, sbdf, flags)
	return d.do("assign_device", dom, op)
}

// DeassignDevice undoes AssignDevice (XEN_DOMCTL_deassign_device): Xen
// gives the function back to the hardware domain.
func (d *Domctl) DeassignDevice(dom hyp.DomID, sbdf uint32) error {
	op, u := d.newOp(domctlDeassignDevice, dom)
	putAssignDevice(u, sbdf, 0)
	return d.do("deassign_device", dom, op)
}

// TestAssignDevice asks whether the PCI function sbdf could be assigned
// (XEN_DOMCTL_test_assign_device; flags must be 0). Xen answers nil when
// no guest has it (it belongs to the hardware domain or is quarantined),
// and EINVAL when it is assigned to a guest, hidden by Xen or unknown
// (xen/drivers/passthrough/pci.c, iommu_do_pci_domctl). dom names the
// guest asking (or DOMID_INVALID for none).
func (d *Domctl) TestAssignDevice(dom hyp.DomID, sbdf uint32) error {
	op, u := d.newOp(domctlTestAssignDevice, dom)
	putAssignDevice(u, sbdf, 0)
	return d.do("test_assign_device", dom, op)
}
