// Package devices is godm's bus vocabulary: the Handler interface every
// emulated device implements, the Access describing one guest access, and
// the address spaces (port I/O, MMIO, PCI configuration by SBDF) that route
// accesses to handlers. Concrete devices live in subpackages.
//
// # Lifecycle
//
// A Bus (or a lone Space / ConfigSpace) is built at set-up time; devices are
// registered, moved (PCI BAR relocation) and unregistered on the control
// path while guest accesses are dispatched concurrently on the fast path.
// A Listener (the ioreq server) mirrors every range into Xen so that Xen
// forwards the matching guest accesses to this process; Attach installs one
// and replays the ranges registered before it, atomically. Listener calls
// run under the space's writer mutex, so they see changes in the order
// they take effect and must not register into the same space.
//
// # Threading
//
// Space.Read/Write and ConfigSpace.Read/Write are lock-free and allocation
// free: each space keeps an immutable sorted table of ranges behind an
// atomic.Pointer, searched by binary search, plus a two-level direct index
// for addresses below 64K (the port I/O space). Writers (Register, Unregister, Move) serialise on a mutex,
// build a new table and publish it with a single atomic store, so a lookup
// sees either the old or the new table and a moved device is never visible
// at both places or at neither. A lookup that loaded the old table may still
// complete on a handler after Unregister returned; handlers must tolerate a
// late access (devices normally do: an access is just a register access).
//
// Handlers are called synchronously on the ioreq fast path, possibly from
// several goroutines at once (one per worker). A handler must not block or
// do slow I/O and owns its own locking (see Locked). Guest accesses never
// fail: misses read all-ones and drop writes, and are counted (Space.Stats).
package devices
