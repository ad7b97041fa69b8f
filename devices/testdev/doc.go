// Package testdev is godm's test device: a PCI function with its own IDs
// (676f:646d) that exercises what real drivers do with a device model —
// an MMIO register BAR, an I/O BAR, MSI-X, INTx and DMA into guest memory —
// for the real-guest tests (its Linux driver is tools/guestdrv).
//
// Register map (BAR0, 4 KiB memory, 32-bit registers):
//
//	0x00 MAGIC     RO  0x676f646d
//	0x04 SCRATCH   RW
//	0x08 DMA_LO    RW  guest-physical buffer address, low half
//	0x0c DMA_HI    RW  high half
//	0x10 DMA_LEN   RW  bytes to fill, 1..MaxDMA
//	0x14 SEED      RW  byte i of the buffer becomes SEED+i
//	0x18 VECTOR    RW  MSI-X vector raised on completion
//	0x1c DOORBELL  WO  1 = fill the buffer, then interrupt
//	0x20 DONE      RO  commands completed
//	0x24 STATUS    RO  0 ok, 1 DMA failed (guest memory not mapped), 2 bad length
//	0x28 INTX      RW  1 asserts INTx, 0 deasserts (level test)
//
// BAR1 (16 bytes of I/O): 0x0 scratch (RW), 0x4 reads the scratch inverted;
// any access size and alignment within those 8 bytes works.
// BAR2 (4 KiB memory): MSI-X table (4 vectors) at 0, PBA at 0x800.
// Without MSI-X enabled the completion interrupt is an INTx pulse held until
// DONE is read.
//
// Threading: register handlers run on the ioreq path and never block; the
// DMA runs on a goroutine the device owns, stopped by Close.
package testdev
