// Package vga will emulate QEMU's standard VGA ("-device VGA"); so far it
// holds the Bochs VBE "DISPI" register file (VBE), the interface SeaBIOS's
// VGA BIOS and Linux's bochs-drm program linear framebuffer modes through:
// an index port and a data port (0x1ce/0x1cf), and the same registers at
// offset 0x500 of the PCI MMIO BAR.
//
// Semantics follow QEMU 7.2's hw/display/vga.c (vbe_ioport_write_data,
// vbe_fixup_regs, vbe_ioport_read_data) and hw/display/vga-pci.c (the MMIO
// window); the registers are checked against QEMU through qtest
// (qemu_test.go). Scanout shows the linear framebuffer (15/16/24/32 bpp)
// as a display.Source, finding dirty tiles by hash comparison for now.
// Not yet here: the legacy VGA registers, memory window and text mode,
// palette modes, VRAM in the p2m with track_dirty_vram, the PCI function
// and its BAR, the board driver.
package vga
