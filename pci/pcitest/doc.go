// Package pcitest holds test helpers for PCI functions: a differential
// check of a function's configuration space against the same function of
// QEMU's "pc" machine, driven through qtest (tests using it skip when
// qemu-system-x86_64 is not installed). It is imported only by tests.
package pcitest
