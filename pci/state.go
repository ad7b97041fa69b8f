package pci

import (
	"errors"
	"fmt"
	"godm/devices/savestate"
	"slices"
)

// StateVersion is the version of State this package writes and reads.
const StateVersion = 1

// ErrState is returned by Restore for a State that does not fit the
// function.
var ErrState = errors.New("pci: state does not match the function")

// State is a function's saved state (for save/restore and migration). It
// holds guest-visible state only; the layout (BARs, capabilities, masks)
// comes from the code that builds the Device.
type State struct {
	// Version is StateVersion.
	Version int
	// Config is the whole configuration space.
	Config []byte
	// MSIXTable and MSIXPending are the MSI-X table and pending bits
	// (empty without MSI-X).
	MSIXTable   []byte
	MSIXPending []uint64
	// INTx is the device's INTx condition.
	INTx bool
}

// Save returns a copy of the function's state.
func (d *Device) Save() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return State{
		Version:     StateVersion,
		Config:      slices.Clone(d.cfg),
		MSIXTable:   slices.Clone(d.msix.table),
		MSIXPending: slices.Clone(d.msix.pba),
		INTx:        d.intxLevel,
	}
}

// Restore loads a state saved from a function built the same way. Only
// guest-writable bits (and the device-owned MSI pending bits) are taken
// from s; read-only bits keep this function's values, so a state can not
// change its identity. BAR mappings and the INTx level are brought in line
// with the restored registers; pending messages stay pending.
func (d *Device) Restore(s State) error {
	if s.Version != StateVersion || len(s.Config) != len(d.cfg) ||
		len(s.MSIXTable) != len(d.msix.table) || len(s.MSIXPending) != len(d.msix.pba) {
		return fmt.Errorf("pci: restore: version %d, %d config bytes, %d msi-x table bytes: %w",
			s.Version, len(s.Config), len(s.MSIXTable), ErrState)
	}
	d.mapMu.Lock()
	defer d.mapMu.Unlock()
	d.mu.Lock()
	d.freezeLocked()
	for i := range d.cfg {
		m := d.wmask[i] | d.w1c[i]
		d.cfg[i] = d.cfg[i]&^m | s.Config[i]&m
	}
	if c := int(d.msi.cap); c != 0 && d.msi.pending != 0 {
		p := c + int(d.msi.pending)
		copy(d.cfg[p:p+4], s.Config[p:p+4])
	}
	copy(d.msix.table, s.MSIXTable)
	for v := 0; v < d.msix.n; v++ {
		// Reserved Vector Control bits stay zero.
		d.msix.table[v*msixEntrySize+msixEntryControl] &= msixEntryMasked
		clear(d.msix.table[v*msixEntrySize+msixEntryControl+1 : (v+1)*msixEntrySize])
	}
	copy(d.msix.pba, s.MSIXPending)
	if n := d.msix.n % 64; n != 0 && len(d.msix.pba) > 0 {
		d.msix.pba[len(d.msix.pba)-1] &= 1<<n - 1
	}
	d.intxLevel = s.INTx
	d.updateINTxLocked()
	d.mu.Unlock()
	d.updateMappings()
	return nil
}

// maxStateBytes bounds the configuration and MSI-X images a state record
// may carry (4 KiB extended configuration space; 2048 MSI-X vectors).
const maxStateBytes = 2048 * msixEntrySize

// WriteState appends the function's state (Save) to w.
func (d *Device) WriteState(w *savestate.Writer) {
	s := d.Save()
	w.U32(uint32(s.Version))
	w.Bytes(s.Config)
	w.Bytes(s.MSIXTable)
	w.U32(uint32(len(s.MSIXPending)))
	for _, p := range s.MSIXPending {
		w.U64(p)
	}
	w.Bool(s.INTx)
}

// ReadState reads a state WriteState wrote and restores it (Restore: a
// state of another layout is refused with ErrState, and read-only bits
// keep this function's identity).
func (d *Device) ReadState(r *savestate.Reader) error {
	var s State
	s.Version = int(r.U32())
	s.Config = r.Bytes(ExtendedConfigSize)
	s.MSIXTable = r.Bytes(maxStateBytes)
	n := r.U32()
	if n > maxStateBytes/64 {
		r.Fail(savestate.ErrFormat)
	}
	if r.Err() == nil {
		s.MSIXPending = make([]uint64, n)
		for i := range s.MSIXPending {
			s.MSIXPending[i] = r.U64()
		}
	}
	s.INTx = r.Bool()
	if err := r.Err(); err != nil {
		return fmt.Errorf("pci: state: %w", err)
	}
	return d.Restore(s)
}
