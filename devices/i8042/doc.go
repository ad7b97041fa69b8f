// Package i8042 emulates the PC keyboard controller (an Intel 8042
// running the IBM AT firmware, as later integrated in every Super I/O
// chip) at ports 0x60 (data) and 0x64 (status/command), with a PS/2
// keyboard on its first port (IRQ 1) and a PS/2 mouse on its auxiliary
// port (IRQ 12).
//
// Behaviour follows QEMU's hw/input/pckbd.c (with the "extended state" of
// QEMU 6.1+, where controller replies have their own one-byte buffer) and
// hw/input/ps2.c, so that a guest sees what it would see under QEMU;
// internal/qtest checks this with differential tests. Controller commands:
// read/write command byte (0x20/0x60), self-test (0xaa → 0x55), interface
// tests (0xab, 0xa9 → 0x00), port enable/disable (0xae/0xad, 0xa8/0xa7),
// input/output port (0xc0, 0xd0/0xd1), output-buffer writes (0xd2/0xd3),
// mouse write (0xd4), A20 (0xdd/0xdf) and the reset pulse (0xfe, or any
// 0xf0-0xff with bit 0 clear, or an output-port write with bit 0 clear),
// which calls the configured ResetRequester.
//
// Deliberate difference from QEMU: a reset pulse only calls the
// ResetRequester (the owner decides how to reboot the domain); QEMU resets
// the whole machine at once, so the random differential scripts avoid
// 0xf0-0xfe and output-port writes.
//
// Lifecycle: New, register as a devices.Handler for the two ports (helper:
// Register; Access.Addr decides the port, so one handler serves both),
// feed host input with PutScancodes and MouseEvent.
//
// Threading: every entry point takes the controller's own mutex. Guest
// accesses never block and never allocate; the interrupt lines and the
// ResetRequester are called with the mutex held and must not call back
// into the controller.
package i8042
