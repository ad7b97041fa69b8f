// Package dm issues Xen device-model operations (XEN_DMOP_*,
// xen/include/public/hvm/dm_op.h) for one guest domain: ioreq-server
// lifecycle and ranges, interrupt injection (PCI INTx, ISA IRQ, MSI, link
// routes), dirty tracking, memory types and domain shutdown. The encoding
// matches libxendevicemodel's byte for byte (tools/libs/devicemodel/core.c).
//
// Lifecycle: New wraps a privcmd.Handle for one domain; the Client holds no
// resources of its own and needs no Close. Its operations fail with
// hyp.ErrClosed once the Handle is closed.
//
// Threading: a Client is safe for concurrent use. SetPCIIntxLevel,
// SetISAIRQLevel, SetIRQLevel and InjectMSI run on the ioreq fast path:
// they allocate nothing, using argument blocks preallocated per Client and
// guarded by small mutexes (one per block, so concurrent vCPUs rarely
// wait).
//
// Errors wrap the kernel's unix.Errno with the op and domain, e.g.
// "dm: create_ioreq_server dom7: operation not permitted".
package dm
