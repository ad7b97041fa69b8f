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
// # Rings and the dirty log
//
// Ring devices (virtio queues, AHCI command lists, NVMe queues) pin their
// rings once (MapCache.Pin) and then use the Region's atomic little-endian
// index accesses (Load16/Store16, 32, 64: sequentially consistent, so
// every load is an acquire and every store a release, as virtio 1.2 §2.7
// requires of avail idx and used idx; see ring.go) and its copies
// (ReadAt/WriteAt), none of which allocates or takes a lock.
//
// Every write the device model makes to guest RAM is recorded in a
// DirtyLog when the cache (or Flat) has one: MapCache.Write, Region
// WriteAt and stores, MarkDirty after writes through WritableSegments,
// and Release of a region written that way. Collect takes and clears the
// record in runs of pages, the extents of XEN_DMOP_modified_memory for
// live migration's log-dirty.
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
// # Invalidation: what holds
//
// Xen sends IOREQ_TYPE_INVALIDATE after it changed the guest's p2m
// (decrease_reservation, PoD; XEN-FACTS.md §0); the ioreq server then
// calls MapCache.Invalidate. The in-flight users of a mapping are the
// copies in progress (Read and Write: every device DMA in godm goes
// through them) and the pinned regions (Pin). Invalidate:
//
//  1. retires every bucket at once: no new reference can be taken on it,
//     so any access that starts after Invalidate returns maps the guest's
//     current p2m afresh (a new page, or ErrUnmapped for a hole) and never
//     sees a page mapped before;
//  2. waits for every copy in progress on a retired bucket, holding no
//     lock while it waits (copies never block on anything but the cache's
//     own short critical sections, so this wait is bounded);
//  3. unmaps every retired bucket that is not pinned before it returns;
//  4. does not wait for pinned regions: a pinned bucket leaves the cache
//     (it serves no later access) but stays mapped, so the pinned user's
//     view stays valid — never unmapped under it — until its Release,
//     which unmaps it. The view shows the page that was mapped at Pin,
//     which after the p2m change may no longer be the guest's: writes to
//     it are lost to the guest, reads may be stale. The memory is not
//     handed to anyone else meanwhile, because a foreign mapping holds a
//     reference on the page in Xen (xen/arch/x86/mm.c get_page_from_l1e),
//     so the page is freed only at the unmap.
//
// Why pins are not waited for (not even for a bounded time): a pin holder
// is any device goroutine, and it may be waiting for a guest access that
// the very worker running Invalidate would serve (sharded workers serve
// several vCPUs; the vCPU that sent INVALIDATE is stalled until the
// answer), so an unbounded wait can deadlock and a bounded one stalls
// every vCPU of that worker for the bound on every INVALIDATE (balloon
// drivers cause one per decrease_reservation batch) while buying nothing:
// the pinned DMA lands in the same old page either way. QEMU behaves alike
// where it matters: xen_invalidate_map_cache (hw/xen/xen-mapcache.c)
// drains the block layer's AIO (bdrv_drain_all, which it can do because
// block completions never wait for ioreqs), then unmaps only unlocked
// buckets and leaves locked DMA mappings in place ("Locked DMA mapping
// while invalidating mapcache"). The rule for users: never block while
// inside a Read or Write (they do not call back), and release pins
// promptly.
//
// # Threading
//
// Flat and MapCache are safe for concurrent use. MapCache serialises
// mapping, eviction and invalidation on a mutex that is never held while a
// copy is in progress.
package memory
