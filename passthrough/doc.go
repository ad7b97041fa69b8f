// Package passthrough passes a host PCI function through to a Xen HVM
// guest, as QEMU's hw/xen/xen_pt*.c do: the device model virtualises the
// function's configuration space, maps its BARs into the guest's p2m
// while the guest decodes them, and routes its INTx, MSI and MSI-X to the
// guest through PIRQs; the device's own MMIO and port accesses never
// reach the device model (Xen maps them straight to the hardware), except
// the pages holding the MSI-X table and PBA, which are trapped (see
// below), and the expansion ROM, served read-only from its sysfs image.
//
// # Host side
//
// OpenHost finds the function under an injectable sysfs root (u-root's
// pkg/pci reads its identification, IRQ and resources; the configuration
// space is the sysfs "config" file, read and written with pread/pwrite)
// and refuses one that does not exist, is not bound to pciback (or the
// configured stub driver) or is a bridge. Assignments (for instance
// XenstoreAssignments) refuses a function the toolstack did not assign to
// the domain, before anything is mapped. Where no toolstack does its part
// (permissions for the function's memory, ports and IRQ, and the IOMMU
// assignment), Grant does it and returns its undo.
//
// # Configuration space
//
// A per-byte rule table (see regs.go) over the header and the supported
// capabilities (power management, MSI, MSI-X, PCI Express, vendor
// specific) says which bits are emulated, read-only, read-write through,
// write-1-to-clear, mirrored, merged or reserved; unsupported capabilities
// are hidden by rewriting the next-pointer chain; bytes no rule covers
// read from the host and are written only in permissive mode. Only the
// 256-byte space is virtualised: the extended space (0x100-0xfff) is
// never read from or written to the host; a PCI Express function shows
// an empty extended capability list there (reads 0), a conventional one
// none (all-ones). MSI offers one vector (Multiple Message Capable 0).
//
// # Assignment
//
// Xen has no query for a domain's I/O memory or port permissions, and its
// only assignment query, XEN_DOMCTL_test_assign_device, says whether some
// guest has the function in its IOMMU context, not which. So: with
// Config.Assign, nothing is mapped or bound and bus mastering stays off on
// the host until Xen says a guest has the function (libxl assigns it only
// after the device model added it); a BAR mapping Xen refuses (EPERM: the
// domain was not granted that memory) leaves the whole BAR unmapped,
// logged and counted; CheckAssigned is the up-front refusal for functions
// the toolstack must have assigned before (command-line devices).
//
// # Mappings and interrupts
//
// Each guest write that changes the command register, a BAR, the ROM BAR,
// or the MSI or MSI-X control re-derives the wanted state and applies the
// difference: XEN_DOMCTL_memory_mapping / ioport_mapping for BARs (never
// the MSI-X table or PBA pages, which are registered on the bus's MMIO
// space instead), PHYSDEVOP_map_pirq plus XEN_DOMCTL_bind_pt_irq for
// interrupts. Unplug undoes all of it; so does Standalone on every exit.
//
// # The MSI-X pages
//
// The pages the MSI-X table and the PBA span are never mapped into the
// guest; they are registered on the bus's MMIO space. The table is
// emulated. Everything else on those pages (the PBA, and registers a
// device keeps beside the table although the PCI spec forbids it) is
// read from the device through a read-only mmap of the function's sysfs
// resourceN file, made at Plug and undone by Unplug (never /dev/mem);
// writes there are dropped: the PBA is read-only, and the host maps
// these pages read-only while the function uses MSI-X (Xen's
// mmio_ro_ranges, xen/arch/x86/msi.c). If the file cannot be mapped
// (kernel lockdown, a missing or short file), those reads return 0,
// counted, with a one-time hint.
//
// What Xen leaves to the device model there (xen/arch/x86/hvm/vmsi.c):
// while no vector of the function is bound, every access; a PBA on a
// page of its own, always (Xen never serves it; QEMU maps it into the
// guest instead, read-only through the same mmio_ro_ranges). Once a
// vector is bound, Xen intercepts the pages the table spans: it serves
// reads of the bound entries it shadows, and from Xen 4.19 on accesses
// beside the table on its first and last page (reads from the device,
// writes to it unless the PBA shares the page); before 4.19 those come
// here. XENFEAT_dm_msix_all_writes (xen/include/public/features.h, also
// 4.19) announces only that Xen forwards every vector-control write, not
// just unmasking ones; from 4.19 Xen forwards every write it intercepts
// on those pages, adjacent ones included, after doing it, which is one
// more reason to never repeat one. The adjacent-access handling has no
// feature flag of its own.
//
// # Modes
//
// Standalone runs an ioreq server of its own for one function (godm
// passthrough). Inside the full device model, a Manager adds
// xen-pci-passthrough devices (DeviceSpec, from QMP device_add arguments
// or a -device string) to the machine's devices.Bus and removes them at
// run time; a Device can also be plugged (Plug) and removed (Unplug)
// directly.
//
// # Lifecycle and threading
//
// New builds a Device from an open HostDevice; Plug registers it; Unplug
// tears it down (idempotent); the HostDevice is closed by its opener.
// After Unplug, accesses still in flight are dropped (reads all-ones).
// A Device is safe for concurrent use: configuration accesses and MSI-X
// table accesses take its one mutex, which is also held while it issues
// the hypercalls a write causes. Configuration reads and writes that
// change no mapping or interrupt do not allocate.
package passthrough
