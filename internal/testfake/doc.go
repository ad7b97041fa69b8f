// Package testfake holds the fakes that tests across godm share: a
// deterministic Clock, an interrupt Recorder (irq.Line, irq.MSISender and
// a PCI INTx router), DMOps (the interrupt and platform DM ops a device
// model sends Xen, recorded one line each), and Xen, a simulated
// hypervisor with one domain that the test's cleanup closes.
//
// It is for _test.go files only: the product binary must not link it
// (cmd/godm's deps test forbids it), and it imports no device package, so
// that a device's in-package tests can use it without an import cycle.
package testfake
