// Package uart emulates a National Semiconductor PC16550D-compatible UART
// (the "16550A" every PC operating system drives through its 8250 driver):
// eight byte-wide registers with the divisor latch behind LCR.DLAB, 16-byte
// receive FIFO with trigger levels, the five interrupt sources with the
// datasheet priorities (line status > received data / character timeout >
// THR empty > modem status), loopback mode and the modem control lines.
//
// Behaviour follows the PC16550D datasheet (TI SNLS378) and, where the
// datasheet leaves room, QEMU's hw/char/serial.c, so that a guest sees what
// it would see under QEMU; internal/qtest checks this with differential
// tests against QEMU's own model. Transmission is instantaneous: a byte
// written to THR is handed at once to the chardev backend's bounded,
// non-blocking queue and THRE rises again, as in QEMU.
//
// Deliberate differences from QEMU (none is reachable by the differential
// scripts, which is why they pass unchanged):
//
//   - In loopback mode the UART takes no input from the host (datasheet,
//     MCR bit 4: the serial input is disconnected); QEMU keeps accepting host
//     bytes into the FIFO, which can corrupt the loopback probe of Linux's
//     8250 autoconfig when the host types at that moment.
//   - Reset also clears FCR; QEMU's serial_reset keeps FCR but clears the
//     FIFO bits of IIR, leaving the two inconsistent.
//   - The interrupt is not gated by MCR.OUT2 (as in QEMU; on a real PC
//     board OUT2 gates the IRQ driver).
//
// Lifecycle: New (attaches to the backend as its Sink), register the UART
// as a devices.Handler for an 8-port range (ISA helper: COM), Close when
// done (detaches and stops the timeout timer; the backend stays the
// caller's).
//
// Threading: every entry point (Read, Write, Reset, the backend's Receive,
// the timeout timer, the host-side setters) takes the UART's own mutex.
// Guest accesses never block, never do I/O and never allocate; the
// character-timeout timer comes from an injected Clock.
package uart
