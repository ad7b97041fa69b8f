// Package qtest drives QEMU's qtest protocol so that godm's device models
// can be compared with QEMU's own: the same port-I/O script is run against
// a godm devices.Space and against a qemu-system-x86_64 started with
// "-machine pc -accel tcg -S -qtest unix:PATH", and every read value and
// every interrupt edge is compared (Diff). A step may document a
// deliberate difference (Step.Why, Step.Ignore).
//
// Targets: QEMUTarget (QEMU through qtest), SpaceTarget (a bare godm port
// space; with ConfigPorts or NewConfigTarget, the guest's 0xcf8/0xcfc
// configuration accesses reach a godm ConfigSpace) and, in package
// internal/qtest/simtarget, the vCPUs of a simulated Xen domain served by
// the whole godm machine. The shared scripts are in internal/qtest/scripts.
//
// The protocol is line based (QEMU docs/devel/qtest.rst, softmmu/qtest.c):
// the client sends "outb 0x3f8 0x41", QEMU answers "OK" or "OK 0x0041"
// (or "FAIL ..."), and after "irq_intercept_in ioapic" asynchronous
// "IRQ raise N" / "IRQ lower N" lines report changes of the I/O APIC input
// pins; QEMU emits them before the answer to the command that caused them.
// With -S the vCPU never runs and the virtual clock stands still, so a
// script is deterministic.
//
// Lifecycle: Start (listens on a socket in a temporary directory, starts
// QEMU, accepts its connection), commands, Close (kills QEMU by PID,
// reaps it, removes the directory). Every read has a deadline.
//
// Threading: a Client is used by one goroutine at a time.
//
// This package is for tests: it starts processes and is never imported by
// the product.
package qtest
