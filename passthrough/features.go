package passthrough

import (
	"encoding/binary"
	"fmt"

	"godm/hyp/privcmd"
	"godm/hyp/xenabi"
)

// xenfeatDMMSIXAllWrites is XENFEAT_dm_msix_all_writes
// (xen/include/public/features.h, Xen 4.19 and later, xen commit
// 64b21662b1): Xen forwards every MSI-X vector-control write to the
// device model, not only unmasking ones. That is all it announces: it
// says nothing about the PBA or other registers on the MSI-X pages. Xen
// 4.19 also serves accesses beside the table on the table's first and
// last page once a vector is bound (xen/arch/x86/hvm/vmsi.c, commit
// b2cd07a044), without a flag of its own, and never a PBA on a page of
// its own; godm serves what reaches it from the device either way (see
// msixTrap).
const xenfeatDMMSIXAllWrites = 20

// DetectMSIXAllWrites asks the hypervisor (XENVER_get_features, submap
// 0) whether it advertises XENFEAT_dm_msix_all_writes.
func DetectMSIXAllWrites(p *privcmd.Handle) (bool, error) {
	b, err := p.Buffers().Alloc(8)
	if err != nil {
		return false, fmt.Errorf("passthrough: xen_version get_features: %w", err)
	}
	defer b.Free()
	info := b.Bytes()[:8] // struct xen_feature_info {submap_idx, submap}
	clear(info)
	if _, err := p.Hypercall(xenabi.HYPERVISOR_xen_version, [5]uint64{xenabi.XENVER_get_features, b.Addr()}); err != nil {
		return false, fmt.Errorf("passthrough: xen_version get_features: %w", err)
	}
	return binary.LittleEndian.Uint32(info[4:])&(1<<xenfeatDMMSIXAllWrites) != 0, nil
}
