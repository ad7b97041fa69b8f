package board

import (
	"errors"
	"fmt"

	"godm/devices"
	"godm/devices/savestate"
)

// SnapshotVersion is the version of the board's snapshot format.
const SnapshotVersion = 1

// boardRecord names the board's own record.
const boardRecord = "godm-board"

// maxDevices bounds the device count a snapshot may claim.
const maxDevices = 1024

// maxRecord bounds one device's record: a VGA's record carries its VRAM
// (vgamem_mb up to 512). Reading a record slices the snapshot, so the
// bound allocates nothing.
const maxRecord = 513 << 20

// ErrNotSavable is wrapped when a device has no snapshot (a passed-through
// function: its state is in the host's hardware), as QEMU's migration
// blockers refuse.
var ErrNotSavable = errors.New("board: device cannot be saved")

// Snapshot saves every device in plug order, each as its own versioned
// record under its id. The board is paused for the duration (and left as
// it was). A device that cannot be saved fails the whole snapshot.
func (b *Board) Snapshot() ([]byte, error) {
	if !b.Paused() {
		b.Pause()
		defer b.Resume()
	}
	devs := b.Devices()
	var w savestate.Writer
	w.U32(uint32(len(devs)))
	for _, p := range devs {
		s, ok := p.Dev.(devices.Snapshotter)
		if !ok {
			return nil, fmt.Errorf("device '%s' (%s): %w", p.ID, p.Driver, ErrNotSavable)
		}
		rec, err := s.Snapshot()
		if err != nil {
			return nil, fmt.Errorf("device '%s' (%s): %w", p.ID, p.Driver, err)
		}
		w.String(p.ID)
		w.String(p.Driver)
		w.Bytes(rec)
	}
	return savestate.Record(boardRecord, SnapshotVersion, w.Out()), nil
}

// Restore loads a board snapshot into this board, which must hold the
// same devices (same ids and drivers, in the same order) freshly built or
// reset. A snapshot of another layout, version or a malformed one is
// refused before any device changes; a device refusing its record leaves
// the board partly restored (reset it before using it again). The board
// is paused for the duration.
func (b *Board) Restore(snap []byte) error {
	_, r, err := savestate.Open(snap, boardRecord, SnapshotVersion)
	if err != nil {
		return fmt.Errorf("board: restore: %w", err)
	}
	devs := b.Devices()
	n := r.U32()
	if n > maxDevices {
		r.Fail(savestate.ErrFormat)
	}
	type rec struct {
		id, driver string
		b          []byte
	}
	var recs []rec
	for i := uint32(0); i < n && r.Err() == nil; i++ {
		recs = append(recs, rec{id: r.String(256), driver: r.String(64), b: r.Bytes(maxRecord)})
	}
	if err := r.Done(); err != nil {
		return fmt.Errorf("board: restore: %w", err)
	}
	if len(recs) != len(devs) {
		return fmt.Errorf("board: restore: snapshot has %d devices, this board %d", len(recs), len(devs))
	}
	for i, p := range devs {
		if recs[i].id != p.ID || recs[i].driver != p.Driver {
			return fmt.Errorf("board: restore: device %d is '%s' (%s) in the snapshot, '%s' (%s) here",
				i, recs[i].id, recs[i].driver, p.ID, p.Driver)
		}
		if _, ok := p.Dev.(devices.Snapshotter); !ok {
			return fmt.Errorf("board: restore: device '%s' (%s): %w", p.ID, p.Driver, ErrNotSavable)
		}
	}
	if !b.Paused() {
		b.Pause()
		defer b.Resume()
	}
	for i, p := range devs {
		if err := p.Dev.(devices.Snapshotter).Restore(recs[i].b); err != nil {
			return fmt.Errorf("board: restore: device '%s' (%s): %w", p.ID, p.Driver, err)
		}
	}
	return nil
}
