// Package scripts holds the access scripts of godm's differential tests
// against QEMU: the 16550 UART's, the i8042's and the PCI configuration
// space checks of the platform functions. Each script is a list of
// qtest.Step (port accesses), so the same script runs against QEMU
// (qtest.QEMUTarget), against a bare godm device on a port space
// (qtest.SpaceTarget, devices/*/qemu*_test.go) and against the whole godm
// machine through the vCPUs of a simulated Xen domain
// (internal/qtest/simtarget, internal/machine/qemudiff_test.go).
//
// Where a target legitimately differs from QEMU, the step says why
// (qtest.Step.Why) and, for a value, which bits may differ
// (qtest.Step.Ignore).
//
// Lifecycle: the builders return fresh slices on every call. Threading:
// the functions are pure and safe for concurrent use.
//
// Like package qtest, this package is for tests only.
package scripts

import "godm/internal/qtest"

// Cat concatenates script parts.
func Cat(parts ...[]qtest.Step) []qtest.Step {
	var s []qtest.Step
	for _, p := range parts {
		s = append(s, p...)
	}
	return s
}

// Repeat returns n copies of s.
func Repeat(s qtest.Step, n int) []qtest.Step {
	r := make([]qtest.Step, n)
	for i := range r {
		r[i] = s
	}
	return r
}

// Why returns s documented with reason.
func Why(s qtest.Step, reason string) qtest.Step { s.Why = reason; return s }
