// Package virtio is the virtio PCI transport (virtio 1.2 §4.1) and split
// virtqueues (§2.7), shared by the virtio devices (virtio-blk today).
//
// A Transport is one transitional PCI function as QEMU 7.2 builds it: the
// modern capabilities (common configuration, notifications, ISR, device
// configuration) in a 64-bit memory BAR, the legacy registers (§4.1.4.8)
// in an I/O BAR so that SeaBIOS and old guests work, an MSI-X table with
// a vector for configuration changes and one per queue, INTx through the
// ISR otherwise. Feature negotiation, device status and reset, and
// DEVICE_NEEDS_RESET after a malformed ring are the transport's.
//
// Rings are pinned guest memory (memory.Region): the avail index is read
// with an atomic load (an acquire), the used element written before the
// used index's atomic store (a release), every device write recorded in
// the dirty log. Descriptor chain walks are bounded (the queue size, the
// indirect table's entries, the caller's storage) and need no allocation.
package virtio
