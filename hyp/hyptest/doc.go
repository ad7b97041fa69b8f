// Package hyptest is a conformance suite for godm's dom0 interface (hyp/...):
// the control-path operations a device model performs, checked against
// what Xen 4.17 answers. It runs against the simulated Xen in every test
// run, and against a real Xen host when one is there, so the simulator and
// the real hypervisor are held to the same expectations.
//
// On real Xen the suite needs an existing HVM guest to work on: it creates
// an ioreq server of its own (Xen allows eight per domain), claims a
// port range and a PCI function nobody uses, and destroys everything again.
// It never injects interrupts or touches guest memory of that guest.
package hyptest
