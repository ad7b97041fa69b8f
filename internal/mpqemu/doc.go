// Package mpqemu serves one PCI function to QEMU's x-pci-proxy-dev over
// QEMU's multi-process protocol ("mpqemu", QEMU 7.2: hw/remote/mpqemu-link.c,
// include/hw/remote/mpqemu-link.h). It is test infrastructure for godm's
// real-guest harness: a Linux guest runs under QEMU TCG, and every config
// and BAR access it makes to the proxied slot arrives here.
//
// Wire format (native x86_64 layout): a 16-byte header {int32 cmd, 4 pad,
// u64 size}, then size bytes of payload; up to 8 fds ride as SCM_RIGHTS on
// the header. Config, BAR and reset messages get a RET reply carrying one
// u64 (all-ones means error); SYNC_SYSMEM and SET_IRQFD get none.
//
// Serve runs one loop per connection; the Device is called from that
// goroutine only.
package mpqemu
