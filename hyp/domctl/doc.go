// Package domctl issues the domain-control hypercalls (domctls) a device
// model needs for PCI passthrough: binding physical interrupts to a guest
// (XEN_DOMCTL_bind_pt_irq / unbind_pt_irq), mapping machine memory and I/O
// ports into it (memory_mapping, ioport_mapping), granting access
// (iomem_permission, ioport_permission, irq_permission), assigning PCI
// functions in the IOMMU (assign_device, deassign_device,
// test_assign_device), and reading a domain's state (getdomaininfo).
//
// Unlike the stable DM-op ABI, the domctl ABI is versioned: every domctl
// carries XEN_DOMCTL_INTERFACE_VERSION and Xen refuses (EACCES) any other
// version than its own, and layouts may change between versions. libxenctrl
// is simply rebuilt against each Xen; godm instead selects the layout at
// run time. Open asks xen_version which Xen runs, maps it to its domctl
// interface version, and, for an unknown Xen, probes the layouts it knows
// with a harmless getdomaininfo, newest first, taking the first one Xen
// does not refuse. Versions 0x13 (Xen 4.15) to 0x18 (Xen 4.22) are
// implemented (versions.go); a new version is one more entry in
// versionLayouts() with its codec. Three oracles check them: 0x15 (Xen
// 4.17) byte for byte against libxenctrl (the golden tests); every
// release's encoding and decoding against the layout the C compiler gives
// that release's public headers (testdata/layout, printed by
// tools/xencapture/domctl_layout.c from the installed libxen-dev, Debian
// trixie's libxen-dev for 4.20, and the Xen tree's release tags); and
// round trips on xensim simulating each release, whose decoder is
// written independently from the same headers.
//
// Lifecycle: Open (or OpenVersion) on an hcall.Caller; a Domctl needs no
// closing and is immutable, so it is safe for concurrent use. Not hot path:
// calls allocate.
package domctl
