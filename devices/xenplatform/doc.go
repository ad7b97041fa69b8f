// Package xenplatform is the Xen platform PCI device (5853:0001) that PV
// drivers in an HVM guest look for, with the fixed I/O ports of the
// emulated-device unplug protocol.
//
// The function (QEMU hw/i386/xen/xen_platform.c): class 0xff80, subsystem
// 5853:0001, revision 1, INTA#, decoding off at reset, BAR0 a
// 256-byte I/O BAR (byte 0 the platform flags, byte 8 the log port), BAR1 a
// 16 MiB prefetchable memory BAR: a hole where the PV drivers map grant
// table and shared-info frames; accesses that still reach the device model
// read 0 and are counted.
//
// The fixed ports 0x10..0x1f (docs/misc/hvm-emulated-unplug.pandoc):
//
//	0x10 read  16-bit  magic 0x49d2 (0xd249 when the drivers are blacklisted)
//	0x10 write 16-bit  unplug mask: bit 0 IDE and SCSI disks, bit 1 NICs,
//	                   bit 2 IDE disks but the primary master, bit 3 NVMe
//	0x10 write 32-bit  PV driver build number (stored)
//	0x10 read/write 8  platform flags; bit 0 (PFFLAG_ROM_LOCK) makes
//	                   0xc0000..0xfffff read-only (set_mem_type)
//	0x12 read   8-bit  protocol version 1
//	0x12 write 16-bit  PV product number (stored)
//	0x12 write  8-bit  log byte: buffered to a newline (or 4095 bytes), then
//	                   handed to the LogSink, rate-limited
//
// Other widths and offsets read all-ones and ignore writes, as QEMU does.
// BAR0 also accepts the unplug requests of drivers older than the protocol
// (byte 4 and byte 8 of BAR0, see ioBARHandler). The blacklist magic is
// kept as an option; current QEMU always answers 0x49d2.
//
// Lifecycle: New, Attach. Threading: safe for concurrent use. The Unplugger
// and ROMLocker run on the guest's access (QEMU also unplugs
// synchronously) and must not block for long; the LogSink gets a line that
// is valid only during the call.
package xenplatform
