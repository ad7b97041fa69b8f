// Package hcall issues typed Xen hypercalls through privcmd: xen_version,
// hvm_op get/set param, memory_op (populate_physmap, decrease_reservation,
// add_to_physmap), physdev_op (map_pirq, unmap_pirq) and the transport of
// domctls for package hyp/domctl.
//
// Each call encodes its argument structures byte for byte as the reference
// C library (libxenctrl, Xen 4.17) does, into hypercall buffers from
// privcmd.Handle.Buffers(); golden tests compare the encodings with the
// fixtures captured by tools/xencapture. Like libxenctrl on Linux, memory_op
// goes through a one-entry multicall, because its result can exceed the 31
// bits the ioctl's return value carries.
//
// Lifecycle: New wraps an open privcmd.Handle, which stays owned by the
// caller; a Caller needs no closing. Threading: a Caller is safe for
// concurrent use (every call uses its own hypercall buffer). None of this is
// hot path: calls allocate.
package hcall
