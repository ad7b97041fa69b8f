// Package privcmd is godm's handle on the dom0 kernel's privileged-command
// device (/dev/xen/privcmd, include/uapi/xen/privcmd.h): raw hypercalls
// with their hypercall buffers, device-model ops (IOCTL_PRIVCMD_DM_OP),
// foreign and resource mapping (IOCTL_PRIVCMD_MMAPBATCH_V2,
// IOCTL_PRIVCMD_MMAP_RESOURCE), restriction to one domain
// (IOCTL_PRIVCMD_RESTRICT) and, on Linux >= 6.7, irqfd and ioeventfd.
//
// Everything goes through the kernel seam (package hyp/kernel), so the same
// code runs against the real kernel and the simulated Xen.
//
// Lifecycle: Open a Handle, use it, Close it (idempotent). Operations on a
// closed Handle return an error wrapping hyp.ErrClosed. Closing does not
// unmap regions mapped through the handle's file: their owners (package
// hyp/foreign) unmap them.
//
// Threading: a Handle is safe for concurrent use. DMCall blocks are not:
// each must be used by one goroutine at a time (package hyp/dm guards its
// blocks with small mutexes).
//
// Memory: buffers handed to the kernel by address (DM-op buffers, frame
// and error arrays) are referenced from heap argument blocks for the
// duration of the call, so they stay alive and do not move. Hypercall
// arguments are plain numbers: pointers among them must come from
// Buffers (Buffer.Addr), which maps /dev/xen/hypercall or, on kernels
// without it, locked anonymous memory (the one allocation that does not go
// through the kernel seam).
//
// Errors from the kernel are wrapped with the operation and stay
// errors.Is-able to their unix.Errno. Requests the running kernel does not
// know (ENOTTY, ENOSYS, EOPNOTSUPP; for the DM_OP probe at Open, EINVAL
// too) additionally wrap hyp.ErrNotSupported.
// EINVAL is ambiguous for irqfd and ioeventfd (a kernel offering them gives
// it for bad arguments): there a probe that only an offering kernel
// answers with EBADF or EPERM decides, once per Handle
// (IRQFDSupported, IOEventFDSupported).
package privcmd
