// Package vga emulates QEMU's standard VGA ("-device VGA", libxl's
// vga="stdvga"): the legacy VGA (sequencer, graphics and attribute
// controllers, CRTC, DAC, misc/status registers at 0x3b4-0x3da; the
// 0xa0000-0xbffff window with chain 4, odd/even and the planar write
// and read modes), the Bochs VBE "DISPI" registers (0x1ce/0x1cf, and
// offset 0x500 of the MMIO BAR) SeaBIOS's VGA BIOS and Linux's bochs-drm
// program, and the PCI function 1234:1111 (BAR 0 VRAM, BAR 2 MMIO, the
// VGA BIOS in the expansion ROM).
//
// Cirrus is QEMU's "-device cirrus-vga" (libxl's default vga), a
// CL-GD5446 (1013:00b8) on the same Core: the extended sequencer,
// graphics controller and CRTC registers, the banked window and write
// modes 4/5, the LFB BAR with the blitter registers and the
// system-to-screen aperture, the MMIO BAR, and the BitBLT engine with
// every blit checked against VRAM (cirrus.go, blit.go, cirrus_pci.go).
//
// The picture (Core.Source) is drawn from VRAM as QEMU 7.2's
// hw/display/vga.c draws it: text mode with the font in plane 2, the CGA,
// planar and 256-colour modes, and the VBE linear modes (Scanout).
// Registers, window accesses, VRAM, the configuration header and
// screendumps are checked against QEMU 7.2 through qtest. VRAM is host
// memory the device owns; Xen's VRAM-in-the-p2m with track_dirty_vram is
// not done.
package vga
