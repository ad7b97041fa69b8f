// Package memory is godm's guest-memory vocabulary: guest-physical
// addresses, the consumer-side Accessor interface devices use for DMA, the
// Mapper interface through which the hypervisor layer maps guest pages, and
// MapCache, the cache of foreign mappings that implements Accessor for a
// running guest.
//
// Guest memory is shared with a running guest: any byte may change under
// the reader. Accessors copy; they never hand out pointers into guest
// memory except through explicitly pinned regions (MapCache.Pin).
//
// # Map cache
//
// MapCache maps guest memory in buckets (1 MiB by default, as QEMU's
// xen-mapcache on 64-bit hosts) on first use, keeps at most a configured
// number of them (a bound on the virtual address space used) and evicts
// unreferenced buckets when it needs room. A lookup that hits takes no lock
// and does not allocate. Pages Xen could not map (holes) are remembered per
// bucket; an access touching one fails with an error wrapping ErrUnmapped.
//
// # Invalidation and the deadlock rule
//
// Xen sends IOREQ_TYPE_INVALIDATE after it changed the guest's p2m
// (decrease_reservation, PoD); the ioreq server then calls
// MapCache.Invalidate, which drops every mapping so that later accesses
// map the new p2m. Invalidate waits only for copies in progress (Read
// and Write), which never block on anything but the cache's own short
// critical sections, and Invalidate holds no lock while
// it waits. It never waits for pinned regions: a bucket pinned at
// Invalidate is detached from the cache at once (new accesses map afresh)
// and unmapped when its last pin is released. So a DMA that holds a pin
// while it waits on the ioreq path (for the goroutine that is running
// Invalidate) cannot deadlock with it. The rule for users: never block
// while inside a Read or Write (they do not call back), and release pins
// promptly; a pinned region may show pages the guest no longer owns after
// an Invalidate, as QEMU's locked mapcache entries do.
//
// # Threading
//
// Flat and MapCache are safe for concurrent use. MapCache serialises
// mapping, eviction and invalidation on a mutex that is never held while a
// copy is in progress.
package memory
