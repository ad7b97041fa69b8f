// Package pcitest holds test helpers for PCI functions. It is imported
// only by tests.
//
//   - A differential check of a function's configuration space against the
//     same function of QEMU's "pc" machine, driven through qtest (tests
//     using it skip when qemu-system-x86_64 is not installed).
//   - A configuration-space checker for fuzz targets: LearnMasks finds each
//     byte's writable and write-1-to-clear bits from the outside, and
//     ConfigChecker checks every access of a random script against them
//     (read-only bits never change, writable bits take the value, W1C bits
//     clear, reads stay within the access size, bad accesses change
//     nothing, the IDs hold, reset restores the reset image). Steps and
//     Encode are the shared script format of the devices' fuzz targets.
package pcitest
