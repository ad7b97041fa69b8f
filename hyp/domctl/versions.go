package domctl

import "godm/hyp/xenabi"

// Domctl interface versions of the Xen releases godm supports
// (XEN_DOMCTL_INTERFACE_VERSION in xen/include/public/domctl.h of each
// release tag).
const (
	Version4_15 uint32 = 0x13 // Xen 4.15
	Version4_16 uint32 = 0x14 // Xen 4.16
	Version4_17 uint32 = 0x15 // Xen 4.17
	Version4_18 uint32 = 0x16 // Xen 4.18
	Version4_19 uint32 = 0x17 // Xen 4.19, 4.20 and 4.21
	Version4_22 uint32 = 0x18 // Xen 4.22
)

// The domctls godm issues kept their 4.17 layout in every release from
// 4.15 to 4.22, with one exception, read from the release headers:
//
//   - 0x13 (4.15): struct xen_domctl_irq_permission is {uint8_t pirq;
//     uint8_t allow_access;} (4.16 widened pirq to uint32_t and added
//     pad[3]); xen_domctl_getdomaininfo has no pad1 (flags stays at
//     offset 4 by alignment) and no gpaddr_bits after cpupool, which
//     godm does not read.
//   - 0x14 (4.16), 0x16 (4.18), 0x17 (4.19-4.21), 0x18 (4.22):
//     getdomaininfo, bind_pt_irq, memory_mapping, ioport_mapping and the
//     three permission structures are byte for byte those of 0x15; the
//     bumps came from other domctls (paging mempool, dt_overlay,
//     gsi_permission, llc colours, get_domain_state).
//
// struct xen_domctl is 16 bytes of header plus a 128-byte union in all
// of them. testdata/layout/xen-4.NN.json holds what the C compiler makes
// of each release's headers (tools/xencapture/domctl-layouts.sh);
// TestHeaderLayouts checks every codec against it.

// versionLayouts returns every implemented layout, newest first.
func versionLayouts() []layout {
	return []layout{
		{version: Version4_22, size: xenabi.XenDomctlSize, codec: v15{}},
		{version: Version4_19, size: xenabi.XenDomctlSize, codec: v15{}},
		{version: Version4_18, size: xenabi.XenDomctlSize, codec: v15{}},
		{version: Version4_17, size: xenabi.XenDomctlSize, codec: v15{}},
		{version: Version4_16, size: xenabi.XenDomctlSize, codec: v15{}},
		{version: Version4_15, size: xenabi.XenDomctlSize, codec: v13{}, maxPIRQ: 0xff},
	}
}

// releaseVersion maps a Xen release to its domctl interface version.
func releaseVersion(major, minor int) (uint32, bool) {
	if major != 4 {
		return 0, false
	}
	switch minor {
	case 15:
		return Version4_15, true
	case 16:
		return Version4_16, true
	case 17:
		return Version4_17, true
	case 18:
		return Version4_18, true
	case 19, 20, 21:
		return Version4_19, true
	case 22:
		return Version4_22, true
	}
	return 0, false
}

// v13 is the layout of interface version 0x13 (Xen 4.15): that of 0x15
// except for the narrower irq_permission.
type v13 struct{ v15 }

func (v13) putIRQPermission(u []byte, pirq uint32, allow bool) {
	u[0] = uint8(pirq) // IRQPermission refuses pirq > maxPIRQ first
	putBool(u[1:], allow)
}
