package xensim

import (
	"encoding/binary"
	"fmt"
)

// The domctl ABI per Xen release. Config.XenMajor/XenMinor select the
// release the Sim simulates; its domctl handler accepts exactly that
// release's XEN_DOMCTL_INTERFACE_VERSION (xen/common/domctl.c refuses any
// other with EACCES before looking at anything else) and decodes and
// encodes each domctl with that release's layout. A release the simulator
// has no table for accepts no domctl at all.
//
// The tables are written from each release's public header
// (xen/include/public/domctl.h at the RELEASE-4.NN tags), on purpose
// independently of hyp/domctl's codecs, so that the round trips between
// the two check each other; domctl_abi_test.go checks every offset and
// size against hyp/domctl/testdata/layout, which
// tools/xencapture/domctl_layout.c prints from the headers themselves.

// abiField is a member of a domctl structure: its offset in the union
// (struct xen_domctl.u, at byte 16) and its size; size 0 means the release
// does not have it.
type abiField struct{ off, size int }

func (f abiField) get(u []byte) uint64 {
	switch f.size {
	case 1:
		return uint64(u[f.off])
	case 2:
		return uint64(binary.LittleEndian.Uint16(u[f.off:]))
	case 4:
		return uint64(binary.LittleEndian.Uint32(u[f.off:]))
	case 8:
		return binary.LittleEndian.Uint64(u[f.off:])
	}
	return 0
}

func (f abiField) put(u []byte, v uint64) {
	switch f.size {
	case 1:
		u[f.off] = uint8(v)
	case 2:
		binary.LittleEndian.PutUint16(u[f.off:], uint16(v))
	case 4:
		binary.LittleEndian.PutUint32(u[f.off:], uint32(v))
	case 8:
		binary.LittleEndian.PutUint64(u[f.off:], v)
	}
}

// domctlABI is one release's domctl interface as the simulator uses it.
type domctlABI struct {
	major, minor int
	version      uint32 // XEN_DOMCTL_INTERFACE_VERSION

	// exactInfo: getdomaininfo answers exactly the domain named (from
	// 4.18, where do_domctl looks it up like any other); before, it
	// answers the first domain whose id is at least the one named.
	exactInfo bool
	// lookupEPERM: a domain that does not exist is EPERM rather than
	// ESRCH for a caller that is not the control domain (4.22's
	// do_domctl: "is_control_domain(current->domain) ? -ESRCH : -EPERM").
	lookupEPERM bool

	info struct { // struct xen_domctl_getdomaininfo (all OUT)
		size                                      int
		domain, flags, totPages, maxPages         abiField
		sharedInfoFrame, cpuTime, onlineVCPUs     abiField
		maxVCPUID, cpupool, gpaddrBits, emulFlags abiField
	}
	bind struct { // struct xen_domctl_bind_pt_irq
		machineIRQ, irqType, isaIRQ, bus, device, intx, gvec, gflags, gtable abiField
	}
	memMap struct { // struct xen_domctl_memory_mapping
		firstGFN, firstMFN, nrMFNs, add abiField
	}
	ioMap struct { // struct xen_domctl_ioport_mapping
		firstGport, firstMport, nrPorts, add abiField
	}
	iomemPerm struct { // struct xen_domctl_iomem_permission
		firstMFN, nrMFNs, allow abiField
	}
	ioportPerm struct { // struct xen_domctl_ioport_permission
		firstPort, nrPorts, allow abiField
	}
	irqPerm struct { // struct xen_domctl_irq_permission
		pirq, allow abiField
	}
}

func (a domctlABI) String() string {
	return fmt.Sprintf("Xen %d.%d (domctl %#x)", a.major, a.minor, a.version)
}

// domctlABIFor returns the domctl interface of Xen major.minor.
func domctlABIFor(major, minor int) (domctlABI, bool) {
	if major != 4 {
		return domctlABI{}, false
	}
	// XEN_DOMCTL_INTERFACE_VERSION of each release.
	versions := [...]uint32{15: 0x13, 16: 0x14, 17: 0x15, 18: 0x16, 19: 0x17, 20: 0x17, 21: 0x17, 22: 0x18}
	switch {
	case minor == 15:
		return domctlABI415(), true
	case minor == 16 || minor == 17:
		return domctlABI416(minor, versions[minor]), true
	case minor >= 18 && minor <= 22:
		// 4.18 made getdomaininfo exact; 0x16 (4.18), 0x17 (4.19, 4.20,
		// 4.21) and 0x18 (4.22) change none of the structures here.
		a := domctlABI416(minor, versions[minor])
		a.exactInfo = true
		a.lookupEPERM = minor >= 22
		return a, true
	}
	return domctlABI{}, false
}

// domctlABIReleases lists the releases domctlABIFor knows (tests).
func domctlABIReleases() []int { return []int{15, 16, 17, 18, 19, 20, 21, 22} }

// domctlABI415 is Xen 4.15 (interface version 0x13), from RELEASE-4.15's
// public/domctl.h.
func domctlABI415() domctlABI {
	a := domctlABI{major: 4, minor: 15, version: 0x13}
	// struct xen_domctl_getdomaininfo { domid_t domain; uint32_t flags;
	// uint64_aligned_t tot_pages, max_pages, outstanding_pages,
	// shr_pages, paged_pages; uint64_aligned_t shared_info_frame;
	// uint64_aligned_t cpu_time; uint32_t nr_online_vcpus, max_vcpu_id,
	// ssidref; xen_domain_handle_t handle (16 bytes); uint32_t cpupool;
	// struct xen_arch_domainconfig arch_config; }: no pad1 (flags is at
	// 4 by alignment), no gpaddr_bits, arch_config right after cpupool.
	a.info.size = 104
	a.info.domain = abiField{0, 2}
	a.info.flags = abiField{4, 4}
	a.info.totPages = abiField{8, 8}
	a.info.maxPages = abiField{16, 8}
	a.info.sharedInfoFrame = abiField{48, 8}
	a.info.cpuTime = abiField{56, 8}
	a.info.onlineVCPUs = abiField{64, 4}
	a.info.maxVCPUID = abiField{68, 4}
	a.info.cpupool = abiField{92, 4}
	a.info.emulFlags = abiField{96, 4} // arch_config.emulation_flags (x86)
	commonDomctlABI(&a)
	// struct xen_domctl_irq_permission { uint8_t pirq; uint8_t
	// allow_access; }
	a.irqPerm.pirq = abiField{0, 1}
	a.irqPerm.allow = abiField{1, 1}
	return a
}

// domctlABI416 is Xen 4.16's layout (interface version 0x14), which 0x15
// to 0x18 keep for every structure here: getdomaininfo gained pad1 after
// domain and gpaddr_bits plus pad2[7] after cpupool (moving arch_config
// to 104), irq_permission's pirq became a uint32_t followed by
// allow_access and pad[3].
func domctlABI416(minor int, version uint32) domctlABI {
	a := domctlABI{major: 4, minor: minor, version: version}
	a.info.size = 112
	a.info.domain = abiField{0, 2}
	a.info.flags = abiField{4, 4}
	a.info.totPages = abiField{8, 8}
	a.info.maxPages = abiField{16, 8}
	a.info.sharedInfoFrame = abiField{48, 8}
	a.info.cpuTime = abiField{56, 8}
	a.info.onlineVCPUs = abiField{64, 4}
	a.info.maxVCPUID = abiField{68, 4}
	a.info.cpupool = abiField{92, 4}
	a.info.gpaddrBits = abiField{96, 1}
	a.info.emulFlags = abiField{104, 4}
	commonDomctlABI(&a)
	a.irqPerm.pirq = abiField{0, 4}
	a.irqPerm.allow = abiField{4, 1}
	return a
}

// commonDomctlABI fills the structures no release from 4.15 to 4.22
// changed.
func commonDomctlABI(a *domctlABI) {
	// struct xen_domctl_bind_pt_irq { uint32_t machine_irq; uint32_t
	// irq_type; union { struct { uint8_t isa_irq; } isa; struct {
	// uint8_t bus, device, intx; } pci; struct { uint8_t gvec; uint32_t
	// gflags; uint64_aligned_t gtable; } msi; ... } u; }: the union is at
	// 8; msi.gflags at 8+4, msi.gtable at 8+8.
	a.bind.machineIRQ = abiField{0, 4}
	a.bind.irqType = abiField{4, 4}
	a.bind.isaIRQ = abiField{8, 1}
	a.bind.bus = abiField{8, 1}
	a.bind.device = abiField{9, 1}
	a.bind.intx = abiField{10, 1}
	a.bind.gvec = abiField{8, 1}
	a.bind.gflags = abiField{12, 4}
	a.bind.gtable = abiField{16, 8}
	// struct xen_domctl_memory_mapping { uint64_aligned_t first_gfn,
	// first_mfn, nr_mfns; uint32_t add_mapping; uint32_t padding; }
	a.memMap.firstGFN = abiField{0, 8}
	a.memMap.firstMFN = abiField{8, 8}
	a.memMap.nrMFNs = abiField{16, 8}
	a.memMap.add = abiField{24, 4}
	// struct xen_domctl_ioport_mapping { uint32_t first_gport,
	// first_mport, nr_ports, add_mapping; }
	a.ioMap.firstGport = abiField{0, 4}
	a.ioMap.firstMport = abiField{4, 4}
	a.ioMap.nrPorts = abiField{8, 4}
	a.ioMap.add = abiField{12, 4}
	// struct xen_domctl_iomem_permission { uint64_aligned_t first_mfn,
	// nr_mfns; uint8_t allow_access; }
	a.iomemPerm.firstMFN = abiField{0, 8}
	a.iomemPerm.nrMFNs = abiField{8, 8}
	a.iomemPerm.allow = abiField{16, 1}
	// struct xen_domctl_ioport_permission { uint32_t first_port,
	// nr_ports; uint8_t allow_access; }
	a.ioportPerm.firstPort = abiField{0, 4}
	a.ioportPerm.nrPorts = abiField{4, 4}
	a.ioportPerm.allow = abiField{8, 1}
}

// domctlABI returns the domctl interface of the release the Sim
// simulates.
func (s *Sim) domctlABI() (domctlABI, bool) { return domctlABIFor(s.cfg.XenMajor, s.cfg.XenMinor) }
