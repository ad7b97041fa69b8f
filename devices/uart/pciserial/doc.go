// Package pciserial is the PCI variant of the 16550A UART: QEMU's
// "pci-serial" function (vendor 1b36 Red Hat, device 0002, revision 1,
// class 07 00 02 — serial controller, 16550-compatible; subsystem
// 1af4:1100; one 8-byte I/O BAR; INTA#), which Linux's 8250_pci driver
// binds. Source: QEMU hw/char/serial-pci.c and docs/specs/pci-serial.txt.
//
// Lifecycle: New builds the pci.Device and the uart.UART behind BAR 0
// (the UART's interrupt is the function's INTx); add Device.PCI to a
// pci.Bus; Close detaches the UART from its backend.
//
// Threading: as package uart and package pci; the UART raises INTx with
// its own lock held, and the pci package calls BAR handlers without its
// lock, so there is no lock-order cycle.
package pciserial
