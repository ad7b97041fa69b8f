// Package irq is godm's interrupt vocabulary: the two small interfaces
// through which emulated devices raise interrupts, with no knowledge of
// who delivers them.
//
//   - Line is a level-triggered line: an ISA IRQ or a PCI INTx pin.
//     SetLevel(true) asserts it, SetLevel(false) deasserts it. The device
//     owns the level and sets it again whenever its interrupt condition
//     changes; setting the level it already has is allowed and must be
//     cheap (implementations forward only changes to the hypervisor). A
//     Line carries one source's level: sources sharing a wire need an
//     implementation that combines them (for PCI INTx, Xen itself ORs the
//     pins routed to one link; xen/arch/x86/hvm/irq.c).
//   - MSISender delivers one message-signalled interrupt per SendMSI call,
//     with the address and data the guest programmed (an MSI capability or
//     an MSI-X table entry). It is edge-like: nothing is remembered, every
//     call is one interrupt.
//
// Neither returns an error: delivery failures are the implementation's to
// count (a device cannot do anything useful about them, and a guest must
// not be able to make a device fail through them).
//
// Implementations: package ioreq's ISALine, PCIIntxLine and MSI turn these
// calls into Xen DM ops (set_isa_irq_level, set_pci_intx_level,
// inject_msi) for the served domain. LineFunc and MSIFunc adapt plain
// functions, which is how tests record interrupts.
//
// Lifecycle: the wiring (internal/machine, or a test) creates the
// implementations and hands them to devices at construction; a device
// keeps them for its lifetime. This package holds no state.
//
// Threading: devices call SetLevel and SendMSI from their access
// handlers, on any ioreq worker goroutine, often with the device's own
// lock held. Implementations must therefore be safe for concurrent use,
// must not allocate, must not call back into a device, and must not block
// beyond a short hypercall (they may take a lock of their own to order
// level changes).
package irq
