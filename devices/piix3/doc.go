// Package piix3 is the PCI-to-ISA bridge of the xenfv machine: function
// 00:01.0 of an Intel 82371SB PIIX3 (8086:7000). Under Xen it does three
// things a device model must do itself:
//
//   - PIRQ routing: writes to the PIRQA..PIRQD route registers (0x60..0x63)
//     are forwarded to Xen as link routes (XEN_DMOP_set_pci_link_route);
//     a route with the IRQEN# bit (0x80) set means "disabled" and becomes
//     ISA IRQ 0, as QEMU's xen_piix_pci_write_config_client does
//     (hw/i386/xen/xen-hvm.c).
//   - PCI INTx: it is the pci.INTxRouter of the bus. Each function's pin
//     reaches Xen as (slot, INTx) (XEN_DMOP_set_pci_intx_level); Xen applies
//     the barber-pole swizzle itself (xen/arch/x86/hvm/irq.c). Functions of
//     one slot sharing a pin are wired-OR here, because Xen keeps one bit,
//     not a count, per (slot, INTx).
//   - The reset control register at I/O port 0xcf9: writing bit 2 (RST_CPU)
//     reboots the domain (SHUTDOWN_reboot through the Shutdowner), bit 1
//     (SYS_RST) is stored, as QEMU's rcr_write does (hw/isa/piix.c).
//
// The PIC, PIT, RTC and ELCR (0x4d0/0x4d1) of a real PIIX3 are emulated by
// Xen (XEN_X86_EMU_*), so they are not here.
//
// Lifecycle: New, then pci.NewBus with the Device as its INTx router, then
// Attach. Threading: safe for concurrent use; calls into the LinkRouter,
// INTxSink and Shutdowner are made from guest accesses and must not block.
package piix3
