// Package foreign maps another domain's memory into this process through
// privcmd: guest frames by GFN (IOCTL_PRIVCMD_MMAPBATCH_V2, with per-page
// errors so that holes are tolerated) and hypervisor resources such as an
// ioreq server's pages (IOCTL_PRIVCMD_MMAP_RESOURCE). It follows
// libxenforeignmemory (tools/libs/foreignmemory/linux.c): reserve a range
// with mmap of the privcmd file, then ask the kernel to populate it.
//
// Lifecycle: Map or MapResource returns a Mapping owning its virtual
// address range; Close unmaps it and is idempotent. A Mapping must be
// closed before its privcmd.Handle is.
//
// Threading: a Mapping's methods are safe for concurrent use, but the
// memory returned by Bytes must not be used after (or concurrently with)
// Close.
package foreign
