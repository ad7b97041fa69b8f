// Package kernel is godm's kernel seam: the one small interface through
// which every package under hyp reaches the dom0 kernel's Xen device files
// (/dev/xen/privcmd, /dev/xen/hypercall, /dev/xen/evtchn, /dev/xen/xenbus).
//
// Production code uses Host, which opens the real files under a device
// directory (default /dev/xen). Tests, benchmarks and the demo use the
// simulated Xen (package hyp/xensim), which implements the same Kernel
// interface, so godm's real encoding and decoding run in every test.
//
// A File is safe for concurrent use as far as the underlying device file is
// (ioctl, read and write on one fd from several goroutines). Ioctl argument
// pointers must point to memory that stays valid and does not move for the
// duration of the call: Go heap memory (an escaping value) or memory mapped
// from the device.
package kernel
