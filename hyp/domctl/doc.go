// Package domctl issues the domain-control hypercalls (domctls) a device
// model needs for PCI passthrough: binding physical interrupts to a guest
// (XEN_DOMCTL_bind_pt_irq / unbind_pt_irq), mapping machine memory and I/O
// ports into it (memory_mapping, ioport_mapping), granting access
// (iomem_permission, ioport_permission, irq_permission), and reading a
// domain's state (getdomaininfo).
//
// Unlike the stable DM-op ABI, the domctl ABI is versioned: every domctl
// carries XEN_DOMCTL_INTERFACE_VERSION and Xen refuses (EACCES) any other
// version than its own, and layouts may change between versions. libxenctrl
// is simply rebuilt against each Xen; godm instead selects the layout at
// run time. Open asks xen_version which Xen runs, maps it to its domctl
// interface version, and, for an unknown Xen, probes the layouts it knows
// with a harmless getdomaininfo, newest first, taking the first one Xen
// does not refuse. Versions 0x13 (Xen 4.15) to 0x18 (Xen 4.22) are
// implemented (versions.go): 0x15 (Xen 4.17) is checked byte for byte
// against libxenctrl by the golden tests, the others against the same
// fixtures with the differences each release's public domctl.h makes; a new
// version is one more entry in versionLayouts() with its codec.
//
// Lifecycle: Open (or OpenVersion) on an hcall.Caller; a Domctl needs no
// closing and is immutable, so it is safe for concurrent use. Not hot path:
// calls allocate.
package domctl
