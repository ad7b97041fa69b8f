// Package piix4pm is the power-management function 00:01.3 of the xenfv
// machine (Intel 82371AB PIIX4 ACPI, 8086:7113) together with the ACPI
// registers hvmloader's tables point at that Xen does not emulate itself:
//
//   - PM1a control at ACPI_PM1A_CNT_BLK_ADDRESS_V1 (0xb004, 2 bytes;
//     xen/include/public/hvm/ioreq.h). Writing SLP_EN with SLP_TYP 0 powers
//     the domain off (SHUTDOWN_poweroff through the Shutdowner) and with
//     SLP_TYP 1 suspends it to RAM (Suspender). The values are the DSDT's:
//     \_S5 and \_S4 are {0, 0} (tools/libacpi/dsdt.asl, ssdt_s4.asl) and
//     \_S3 is {1, 1} (tools/libacpi/ssdt_s3.asl, "Must match piix
//     emulation"); QEMU's acpi_pm1_cnt_write (hw/acpi/core.c) decodes the
//     same way. The other bits are stored; SCI_EN reads 1 (no SMI).
//   - GPE0 at ACPI_GPE0_BLK_ADDRESS_V1 (0xafe0, ACPI_GPE0_BLK_LEN_V1 = 4):
//     two status bytes (write 1 to clear) and two enable bytes. SCI (ISA
//     IRQ 9, the IRQ hvmloader hard-codes for this function) is asserted
//     while a status bit is set with its enable bit.
//   - The PCI hotplug controller the DSDT's _E01 method and _EJ0 methods
//     use (tools/libacpi/mk_dsdt.c, qemu-xen flavour): PCIU at 0xae00 and
//     PCID at 0xae04 (slots with a pending insertion or removal request,
//     read-only, one bit per slot), B0EJ at 0xae08 (write a slot bit to
//     eject it) and the slot removability mask at 0xae0c, inside the
//     0xae00/0x10 range the DSDT reserves. Events raise GPE0 bit 1. Reads
//     do not clear PCIU or PCID (the _E01 method reads them once per slot;
//     QEMU's legacy PIIX mode in hw/acpi/pcihp.c behaves the same); a
//     slot's bits clear when it is ejected or gets the opposite event.
//   - The processor-presence bitmap PRST at 0xaf00 (32 bytes) read by the
//     DSDT's PRSC method on GPE0 bit 2 (CPU hotplug).
//   - The debug port DG1 at 0xb044 (4 bytes) the DSDT declares: writes are
//     kept, reads return them.
//
// PM1a status/enable (0xb000..0xb003) and the PM timer (0xb008) belong to
// Xen (xen/arch/x86/hvm/pmtimer.c), so this package does not claim them.
// Xen raises SCI for its PM1 events on the same ISA IRQ 9 and keeps one
// level bit per ISA IRQ (hvm_isa_irq_assert, xen/arch/x86/hvm/irq.c), so a
// GPE deassertion from here can lower Xen's own assertion. QEMU drives the
// line the same way (XEN_DMOP_set_isa_irq_level for IRQ 9) and has the
// same exposure.
// The registers are at their fixed hvmloader addresses; the function's
// PMBA register (0x40) is stored but does not move them, as Xen's own half
// of the block cannot move either.
//
// Lifecycle: New, Attach (adds the function and registers the port
// ranges). Threading: safe for concurrent use; the Shutdowner, Suspender
// and Ejector are called without the device's lock held.
package piix4pm
