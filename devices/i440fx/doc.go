// Package i440fx is the host bridge of the xenfv machine: the PCI function
// 00:00.0 of an Intel 82441FX PMC (8086:1237), with the registers firmware
// reads and writes stored (PAM and SMRAM). Under Xen the host bridge maps
// no memory: PAM and SMRAM writes are kept for the guest to read back and
// have no other effect, since Xen owns the guest's memory map.
//
// Lifecycle: New, then Attach to a pci.Bus (00:00.0). Threading: the
// function's registers are guarded by the pci.Device's lock; Device is safe
// for concurrent use.
//
// Sources: QEMU hw/pci-host/i440fx.c (identity, revision 2, SMRAM reset
// value 0x02, PAM at 0x59..0x5f, SMRAM at 0x72, the coreboot RAM size at
// 0x57) and the Intel 440FX PCIset datasheet (29054901) for the register
// layout. Where the datasheet and QEMU differ (QEMU leaves every
// device-specific bit writable, SMRAM's hardwired ones included) this
// package follows QEMU, whose behaviour guests have seen; a differential
// test checks it against qemu-system-x86_64 when installed.
package i440fx
