// Package pci models conventional PCI functions for emulated devices: the
// type 0 configuration header as registers with writable and
// write-1-to-clear masks, a capability-list builder, base address registers
// (I/O, 32- and 64-bit memory, prefetchable, expansion ROM) whose decoding
// follows the command register, INTx with level tracking, MSI and MSI-X.
// Bus is the registry that places functions on bus 0 and routes their
// configuration space, BARs and interrupts.
//
// # Lifecycle
//
// A device builds a Device with New (or NewFunction for the common case of
// a header and a few BARs), describes its BARs (SetBAR, SetROM),
// capabilities (AddCapability, AddExtendedCapability, AddMSI, AddMSIX) and
// device-specific registers (DefineRegister, SetWriteHook) and then adds it
// to a Bus (Add, AddAuto, AddFunction). Functions that register their own
// configuration-space handler (PCI passthrough) claim their slot with
// Reserve or ReserveAuto and free it with Release; AddAuto never places a
// function in a reserved slot, nor in one whose configuration space holds
// a handler the registry did not place. From then on, or from the first
// configuration write, the layout is fixed: set-up methods fail with
// ErrBusy, and Reset returns to the configuration image of that moment.
// When the guest enables decoding or moves a BAR, the Device re-registers
// the BAR's range on the Bus's port I/O or MMIO devices.Space (Register,
// Move, Unregister), so a Listener on the Space (the ioreq server)
// follows. The device raises interrupts through INTx (an irq.Line) and
// Interrupt (MSI-X, else MSI). Save and Restore carry the guest-visible
// state. Package pcitest compares a function with QEMU's.
//
// # Threading
//
// A Device is safe for concurrent use. Configuration reads, writes, BAR
// handler calls and interrupt calls take the Device's own mutex; writes
// that change BAR mappings additionally serialise on a second mutex that is
// taken first and that is never held by BAR accesses, so a Space update
// never waits for a guest access to the same device. Configuration reads
// and writes that do not change a mapping do not allocate. The Handler
// behind a BAR is called without the Device's lock and owns its locking.
//
// Sources: PCI Local Bus Specification 3.0 (§6.1 header, §6.2.2 command,
// §6.2.3 status, §6.2.5 BARs and expansion ROM, §6.7 capabilities, §6.8
// MSI and MSI-X), and QEMU's hw/pci/pci.c and hw/pci/pci_host.c for the
// behaviour guests and firmware (hvmloader, tools/firmware/hvmloader/pci.c)
// see under Xen.
package pci
