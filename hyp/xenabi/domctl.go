package xenabi

// Domctl interface versions; xen/include/public/domctl.h. A domctl whose
// interface_version differs from the hypervisor's own is refused with
// EACCES, so the layout must be chosen per running Xen.
const (
	// XEN_DOMCTL_INTERFACE_VERSION_4_17 is the version of Xen 4.17 (the
	// installed headers).
	XEN_DOMCTL_INTERFACE_VERSION_4_17 = 0x15
)

// Domctl commands godm uses; xen/include/public/domctl.h.
const (
	XEN_DOMCTL_getdomaininfo     = 5
	XEN_DOMCTL_irq_permission    = 19
	XEN_DOMCTL_iomem_permission  = 20
	XEN_DOMCTL_ioport_permission = 21
	XEN_DOMCTL_bind_pt_irq       = 38
	XEN_DOMCTL_memory_mapping    = 39
	XEN_DOMCTL_ioport_mapping    = 40
	XEN_DOMCTL_unbind_pt_irq     = 48
)

// Flags of XenDomctlGetDomainInfo.Flags.
const (
	XEN_DOMINF_dying         = 1 << 0
	XEN_DOMINF_hvm_guest     = 1 << 1
	XEN_DOMINF_shutdown      = 1 << 2
	XEN_DOMINF_paused        = 1 << 3
	XEN_DOMINF_blocked       = 1 << 4
	XEN_DOMINF_running       = 1 << 5
	XEN_DOMINF_debugged      = 1 << 6
	XEN_DOMINF_xs_domain     = 1 << 7
	XEN_DOMINF_hap           = 1 << 8
	XEN_DOMINF_shutdownmask  = 255
	XEN_DOMINF_shutdownshift = 16
)

// Interrupt kinds of XEN_DOMCTL_bind_pt_irq (enum pt_irq_type).
const (
	PT_IRQ_TYPE_PCI           = 0
	PT_IRQ_TYPE_ISA           = 1
	PT_IRQ_TYPE_MSI           = 2
	PT_IRQ_TYPE_MSI_TRANSLATE = 3
	PT_IRQ_TYPE_SPI           = 4
)

// Guest MSI flags (gflags) of a PT_IRQ_TYPE_MSI binding.
const (
	XEN_DOMCTL_VMSI_X86_DEST_ID_MASK = 0x0000ff
	XEN_DOMCTL_VMSI_X86_RH_MASK      = 0x000100
	XEN_DOMCTL_VMSI_X86_DM_MASK      = 0x000200
	XEN_DOMCTL_VMSI_X86_DELIV_MASK   = 0x007000
	XEN_DOMCTL_VMSI_X86_TRIG_MASK    = 0x008000
	XEN_DOMCTL_VMSI_X86_UNMASKED     = 0x010000
)

// add_mapping values of XEN_DOMCTL_memory_mapping and ioport_mapping.
const (
	DPCI_ADD_MAPPING    = 1
	DPCI_REMOVE_MAPPING = 0
)

// XenDomctlSize is sizeof(struct xen_domctl) for interface version 0x15:
// a 16-byte header and a 128-byte union.
const XenDomctlSize = 144

// XenDomctl mirrors struct xen_domctl (interface version 0x15): the header
// and the union holding one of the XenDomctl* argument structs.
type XenDomctl struct {
	Cmd              uint32
	InterfaceVersion uint32
	Domain           uint16
	Pad              [3]uint16
	U                [128]byte
}

// XenArchDomainconfig mirrors the x86 struct xen_arch_domainconfig.
type XenArchDomainconfig struct {
	EmulationFlags uint32
	MiscFlags      uint32
}

// XenDomctlGetDomainInfo mirrors struct xen_domctl_getdomaininfo (all OUT).
type XenDomctlGetDomainInfo struct {
	Domain           uint16
	Pad1             uint16
	Flags            uint32
	TotPages         uint64
	MaxPages         uint64
	OutstandingPages uint64
	ShrPages         uint64
	PagedPages       uint64
	SharedInfoFrame  uint64
	CPUTime          uint64
	NrOnlineVCPUs    uint32
	MaxVCPUID        uint32
	SSIDRef          uint32
	Handle           [16]byte
	CPUPool          uint32
	GPAddrBits       uint8
	Pad2             [7]uint8
	ArchConfig       XenArchDomainconfig
}

// XenDomctlBindPtIRQ mirrors struct xen_domctl_bind_pt_irq. U holds one of
// XenDomctlBindPtIRQISA, XenDomctlBindPtIRQPCI or XenDomctlBindPtIRQMSI
// according to IRQType.
type XenDomctlBindPtIRQ struct {
	MachineIRQ uint32
	IRQType    uint32
	U          [16]byte
}

// XenDomctlBindPtIRQISA mirrors the isa member of xen_domctl_bind_pt_irq.u.
type XenDomctlBindPtIRQISA struct {
	ISAIRQ uint8
}

// XenDomctlBindPtIRQPCI mirrors the pci member of xen_domctl_bind_pt_irq.u.
type XenDomctlBindPtIRQPCI struct {
	Bus    uint8
	Device uint8
	Intx   uint8
}

// XenDomctlBindPtIRQMSI mirrors the msi member of xen_domctl_bind_pt_irq.u.
type XenDomctlBindPtIRQMSI struct {
	GVec   uint8
	_      [3]byte
	GFlags uint32
	GTable uint64
}

// XenDomctlMemoryMapping mirrors struct xen_domctl_memory_mapping.
type XenDomctlMemoryMapping struct {
	FirstGFN   uint64
	FirstMFN   uint64
	NrMFNs     uint64
	AddMapping uint32
	Padding    uint32
}

// XenDomctlIoportMapping mirrors struct xen_domctl_ioport_mapping.
type XenDomctlIoportMapping struct {
	FirstGport uint32
	FirstMport uint32
	NrPorts    uint32
	AddMapping uint32
}

// XenDomctlIomemPermission mirrors struct xen_domctl_iomem_permission.
type XenDomctlIomemPermission struct {
	FirstMFN    uint64
	NrMFNs      uint64
	AllowAccess uint8
	_           [7]byte
}

// XenDomctlIoportPermission mirrors struct xen_domctl_ioport_permission.
type XenDomctlIoportPermission struct {
	FirstPort   uint32
	NrPorts     uint32
	AllowAccess uint8
	_           [3]byte
}

// XenDomctlIRQPermission mirrors struct xen_domctl_irq_permission.
type XenDomctlIRQPermission struct {
	PIRQ        uint32
	AllowAccess uint8
	Pad         [3]uint8
}
