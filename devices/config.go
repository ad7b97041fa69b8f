package devices

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// ConfigSize is the size of a PCI Express function's configuration space;
// registers 0..ConfigSize-1 are routed, anything beyond is a miss.
const ConfigSize = 4096

// PCIListener is told about every function registered in a ConfigSpace.
// The ioreq server implements it to claim the SBDF in Xen
// (XEN_DMOP_map_io_range_to_ioreq_server with XEN_DMOP_IO_RANGE_PCI).
//
// Its methods are called with the config space's writer mutex held and must
// not call Register, Unregister or SetListener on the same ConfigSpace.
type PCIListener interface {
	// PCIAdded is called before the new function becomes visible. If it
	// returns an error the registration fails and nothing changes.
	PCIAdded(sbdf SBDF) error
	// PCIRemoved is called after the function is no longer visible to
	// new lookups.
	PCIRemoved(sbdf SBDF)
}

// configEntry is one registered function.
type configEntry struct {
	sbdf SBDF
	h    Handler
}

// configTable is an immutable snapshot of a ConfigSpace, sorted by SBDF.
type configTable struct {
	entries []configEntry
}

func (t *configTable) find(sbdf SBDF) int {
	lo, hi := 0, len(t.entries)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if t.entries[m].sbdf < sbdf {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(t.entries) && t.entries[lo].sbdf == sbdf {
		return lo
	}
	return -1
}

// ConfigSpace routes PCI configuration accesses by SBDF. The handler of a
// function sees Access.Addr == Access.Offset == the register offset
// (0..ConfigSize-1). The zero value is not usable; use NewConfigSpace.
type ConfigSpace struct {
	table atomic.Pointer[configTable]

	_           [64]byte
	readMisses  atomic.Uint64
	writeMisses atomic.Uint64

	// mu serialises writers and listener calls; lookups never take it.
	mu       sync.Mutex
	listener PCIListener // guarded by mu
}

// NewConfigSpace returns an empty configuration space.
func NewConfigSpace() *ConfigSpace {
	c := &ConfigSpace{}
	c.table.Store(&configTable{})
	return c
}

// SetListener sets (or, with nil, clears) the listener told about later
// registrations. Functions already registered are not replayed; use Attach
// to set a listener and replay them atomically.
func (c *ConfigSpace) SetListener(l PCIListener) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.listener = l
}

// Attach sets l as the listener and calls l.PCIAdded for every function
// already registered, in ascending order, atomically with respect to
// registrations. If a PCIAdded fails, the functions added so far are
// removed again (PCIRemoved, in reverse order), the listener is left
// unchanged, and the error is returned wrapping ErrListener.
func (c *ConfigSpace) Attach(l PCIListener) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.table.Load()
	for i, e := range t.entries {
		if err := l.PCIAdded(e.sbdf); err != nil {
			for j := i - 1; j >= 0; j-- {
				l.PCIRemoved(t.entries[j].sbdf)
			}
			return fmt.Errorf("devices: pci config: attach %v: %w: %w", e.sbdf, ErrListener, err)
		}
	}
	c.listener = l
	return nil
}

// Register routes the configuration space of sbdf to h. It fails with
// ErrNilHandler, ErrOverlap (sbdf already registered) or an error wrapping
// ErrListener; on failure nothing changes.
func (c *ConfigSpace) Register(sbdf SBDF, h Handler) error {
	if h == nil {
		return fmt.Errorf("devices: pci config: register %v: %w", sbdf, ErrNilHandler)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.table.Load()
	if old.find(sbdf) >= 0 {
		return fmt.Errorf("devices: pci config: register %v: %w", sbdf, ErrOverlap)
	}
	entries := make([]configEntry, len(old.entries), len(old.entries)+1)
	copy(entries, old.entries)
	entries = append(entries, configEntry{sbdf: sbdf, h: h})
	slices.SortFunc(entries, func(a, b configEntry) int {
		switch {
		case a.sbdf < b.sbdf:
			return -1
		case a.sbdf > b.sbdf:
			return 1
		}
		return 0
	})
	if c.listener != nil {
		if err := c.listener.PCIAdded(sbdf); err != nil {
			return fmt.Errorf("devices: pci config: register %v: %w: %w", sbdf, ErrListener, err)
		}
	}
	c.table.Store(&configTable{entries: entries})
	return nil
}

// Unregister removes the function at sbdf; it fails with ErrNotFound.
func (c *ConfigSpace) Unregister(sbdf SBDF) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.table.Load()
	i := old.find(sbdf)
	if i < 0 {
		return fmt.Errorf("devices: pci config: unregister %v: %w", sbdf, ErrNotFound)
	}
	entries := make([]configEntry, 0, len(old.entries)-1)
	entries = append(append(entries, old.entries[:i]...), old.entries[i+1:]...)
	c.table.Store(&configTable{entries: entries})
	if c.listener != nil {
		c.listener.PCIRemoved(sbdf)
	}
	return nil
}

// Functions returns the registered SBDFs in ascending order.
func (c *ConfigSpace) Functions() []SBDF {
	t := c.table.Load()
	r := make([]SBDF, len(t.entries))
	for i, e := range t.entries {
		r[i] = e.sbdf
	}
	return r
}

// Stats returns the config space's miss counters.
func (c *ConfigSpace) Stats() Stats {
	return Stats{ReadMisses: c.readMisses.Load(), WriteMisses: c.writeMisses.Load()}
}

// lookup returns the handler for an access, or nil for a miss.
func (c *ConfigSpace) lookup(sbdf SBDF, reg uint32, size uint8) Handler {
	if !validSize(size) || reg >= ConfigSize || ConfigSize-reg < uint32(size) {
		return nil
	}
	t := c.table.Load()
	i := t.find(sbdf)
	if i < 0 {
		return nil
	}
	return t.entries[i].h
}

// Read dispatches a configuration read of size bytes at register reg of
// sbdf. Unregistered functions, registers beyond ConfigSize (or an access
// crossing it) and sizes other than 1, 2, 4, 8 are misses: all-ones masked
// to size (a PCI master abort), counted. Read does not allocate or lock.
func (c *ConfigSpace) Read(sbdf SBDF, reg uint32, size uint8, vcpu uint32) uint64 {
	if h := c.lookup(sbdf, reg, size); h != nil {
		return h.Read(Access{Addr: uint64(reg), Offset: uint64(reg), Size: size, VCPU: vcpu}) & SizeMask(size)
	}
	c.readMisses.Add(1)
	return SizeMask(size)
}

// Write dispatches a configuration write; misses (see Read) are dropped and
// counted. Write does not allocate or lock.
func (c *ConfigSpace) Write(sbdf SBDF, reg uint32, size uint8, vcpu uint32, v uint64) {
	if h := c.lookup(sbdf, reg, size); h != nil {
		h.Write(Access{Addr: uint64(reg), Offset: uint64(reg), Size: size, VCPU: vcpu}, v&SizeMask(size))
		return
	}
	c.writeMisses.Add(1)
}
