// Package ioreq is godm's ioreq server: the protocol through which Xen
// forwards a guest's port I/O, MMIO and PCI configuration accesses to a
// device model, and the worker fast path that answers them.
//
// # Layers
//
// The package is built in three layers, each usable (and tested) alone:
//
//   - Pages. SharedPage and Slot view Xen's synchronous "shared iopage"
//     (one 32-byte struct ioreq per vCPU) and Ring views the buffered iopage
//     (xen/include/public/hvm/ioreq.h). Every field Xen also touches is
//     accessed with sync/atomic; comments name the barrier Xen pairs with.
//     Pages may be any 8-byte-aligned memory: a foreign mapping of the real
//     frames, a simulated hypervisor's pages, or a fuzzer's byte slice.
//   - Dispatch. Dispatcher decodes a Request and routes it to the bus
//     (port I/O, MMIO and PCI configuration spaces), copies rep/data_is_ptr
//     requests through a memory.Accessor, keeps the TIMEOFFSET sum and
//     calls the map-cache invalidation hook for INVALIDATE. It never
//     allocates.
//   - Runtime. A worker serves a shard of vCPU slots (and drains the
//     buffered ring) on a locked OS thread: after a request it keeps
//     polling its slots for an adaptive window (WorkerConfig.Spin), then
//     reads and unmasks its pending event-channel ports and blocks in
//     epoll on its event-channel fd. Server binds all of this to Xen: it
//     creates the ioreq server with DM ops, maps its frames, binds the
//     event channels (one event-channel handle per worker), mirrors the
//     bus's ranges into Xen (it implements devices.Listener and
//     devices.PCIListener), runs the workers and tears everything down.
//
// The interrupt backend (ISALine, PCIIntxLine, MSI) turns irq.Line and
// irq.MSISender calls into DM ops, calling the hypervisor only when a level
// changes.
//
// # Lifecycle
//
// NewServer creates and maps; Server.Serve runs the workers until its
// context is cancelled or the hypervisor fails; Server.Close disables,
// unbinds, destroys and unmaps, leaving nothing behind in the hypervisor.
// Several servers may run in one process, for one domain or several.
//
// # Threading
//
// Each worker goroutine owns its slots; a request is handled start to finish
// on one worker. Device handlers are therefore called concurrently from
// several workers and own their locking. The buffered ring is drained by
// whichever worker next needs it, serialised by the ring's one mutex (the
// only lock on the data path, needed so buffered writes stay ordered before
// any synchronous request that follows them). Statistics are per worker,
// updated atomically, and read without allocation.
package ioreq
