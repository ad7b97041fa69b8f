package devices

// Access describes one guest access to a registered range.
type Access struct {
	// Addr is the absolute address in the space (port, GPA, or the config
	// register offset for PCI configuration space).
	Addr uint64
	// Offset is Addr minus the base of the range the handler was
	// registered for.
	Offset uint64
	// Size is the access width in bytes: 1, 2, 4 or 8.
	Size uint8
	// VCPU is the index of the vCPU that issued the access.
	VCPU uint32
}

// Handler emulates the registers of a device range.
type Handler interface {
	// Read returns the value of the access, in the low Size bytes.
	Read(a Access) uint64
	// Write performs a write of the low Size bytes of v.
	Write(a Access, v uint64)
}

// Resetter is implemented by devices with a reset state.
type Resetter interface {
	Reset()
}

// ResetKeeper is implemented by devices whose Reset leaves some bytes of
// their range as the guest wrote them (registers a system reset does not
// touch, as in QEMU).
type ResetKeeper interface {
	// KeptOnReset reports whether Reset leaves the byte at off alone.
	KeptOnReset(off uint64) bool
}

// SizeMask returns the mask of the low size bytes (size 1, 2, 4 or 8).
func SizeMask(size uint8) uint64 {
	if size >= 8 {
		return ^uint64(0)
	}
	return 1<<(8*uint64(size)) - 1
}

// Pauser is implemented by devices with goroutines of their own (DMA
// engines, timers that raise interrupts). Once Pause returns, none of
// them touches guest memory or raises an interrupt until Resume; work
// already queued waits and continues on Resume. Pause and Resume are
// called in pairs by one owner.
type Pauser interface {
	Pause()
	Resume()
}

// Snapshotter is implemented by devices whose state can be saved and
// loaded. Snapshot is taken with the device quiet (its machine paused);
// Restore loads a snapshot into a device built the same way, refusing,
// with an error, a record it cannot read (another version or layout).
type Snapshotter interface {
	Snapshot() ([]byte, error)
	Restore(b []byte) error
}
