package machine

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"godm/hyp/dm"
	"godm/internal/devstate"
)

// Version names this godm in the device-state streams it writes.
var Version = "godm"

// DirtyReportEvery is how often the pages the devices wrote are reported
// to Xen while log-dirty is on. QEMU reports each write as it makes it
// (xen_hvm_modified_memory); godm batches them, and FlushDirty sends what
// is left whenever a save needs the log complete (stop, the device-state
// save), before Xen's last copy round reads its own bitmap.
const DirtyReportEvery = 100 * time.Millisecond

// maxExtentsPerReport bounds one report's extent list (one DM op carries
// 256; a long list is sent as several).
const maxExtentsPerReport = 4096

// dirtyReporter sends the machine's DirtyLog to Xen as
// XEN_DMOP_modified_memory extents while log-dirty is on.
type dirtyReporter struct {
	mu      sync.Mutex // one flush at a time; guards on, stop, ext
	on      bool
	stop    chan struct{}
	done    chan struct{}
	ext     []dm.Extent
	beyond  uint64 // writes beyond the log, since log-dirty was switched on
	lastErr error
}

// SetDirtyLog switches log-dirty on or off (QMP xen-set-global-dirty-log):
// the devices' writes to guest RAM are recorded and reported to Xen every
// DirtyReportEvery until it is switched off, which flushes the rest.
func (m *Machine) SetDirtyLog(on bool) error {
	if m.dirty == nil {
		return errors.New("machine: no dirty log (the guest's RAM size is not known)")
	}
	r := &m.reporter
	r.mu.Lock()
	defer r.mu.Unlock()
	if on == r.on {
		return nil
	}
	if on {
		// What was written before is not this round's business: Xen
		// sends all of RAM in its first round anyway.
		m.dirty.Collect(func(uint64, uint64) {})
		m.dirty.SetEnabled(true)
		r.on, r.beyond, r.lastErr = true, 0, nil
		r.stop, r.done = make(chan struct{}), make(chan struct{})
		go m.reportLoop(r.stop, r.done)
		return nil
	}
	// Off before the lock is let go, so that Close or another call
	// meanwhile finds nothing to stop.
	stop, done := r.stop, r.done
	r.on = false
	close(stop)
	r.mu.Unlock()
	<-done
	r.mu.Lock()
	err := m.flushLocked()
	m.dirty.SetEnabled(false)
	return err
}

func (m *Machine) reportLoop(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(DirtyReportEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if err := m.FlushDirty(); err != nil {
			m.Spec.Log.Warn("reporting the pages the devices wrote to Xen", "err", err)
		}
	}
}

// FlushDirty reports to Xen every page the devices wrote since the last
// report (nothing when log-dirty is off).
func (m *Machine) FlushDirty() error {
	r := &m.reporter
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.on {
		return nil
	}
	return m.flushLocked()
}

func (m *Machine) flushLocked() error {
	r := &m.reporter
	var errs []error
	send := func() {
		if len(r.ext) == 0 {
			return
		}
		if err := m.DM.ModifiedMemory(r.ext...); err != nil {
			errs = append(errs, err)
		}
		r.ext = r.ext[:0]
	}
	add := func(gfn, n uint64) {
		for n > 0 {
			k := min(n, 1<<32-1)
			r.ext = append(r.ext, dm.Extent{FirstPFN: gfn, Nr: uint32(k)})
			gfn, n = gfn+k, n-k
			if len(r.ext) == maxExtentsPerReport {
				send()
			}
		}
	}
	beyond := m.dirty.Collect(add)
	// VRAM in the p2m lies beyond the RAM the log covers.
	m.vrams.collect(add)
	send()
	r.beyond += beyond
	if err := errors.Join(errs...); err != nil {
		r.lastErr = err
		return fmt.Errorf("machine: modified_memory: %w", err)
	}
	return nil
}

// stateHeader describes this machine for a device-state stream.
func (m *Machine) stateHeader() devstate.Header {
	h := devstate.Header{Writer: Version, RAMBytes: m.Spec.MemBytes, VCPUs: uint32(m.Spec.VCPUs)}
	for _, p := range m.Board.Devices() {
		h.Devices = append(h.Devices, devstate.Device{ID: p.ID, Driver: p.Driver})
	}
	return h
}

// SaveState writes the devices' state as one device-state stream (QMP
// xen-save-devices-state). The devices are paused for the duration (and
// left as they were); with log-dirty on, every page they wrote is
// reported to Xen first, so that no DMA write is missing from Xen's last
// copy of RAM.
func (m *Machine) SaveState(w io.Writer) error {
	if !m.Board.Paused() {
		m.Board.Pause()
		defer m.Board.Resume()
	}
	if err := m.FlushDirty(); err != nil {
		return err
	}
	if n := m.reporter.beyondWrites(); n > 0 {
		// Pages beyond the log are not guest RAM this machine knows of;
		// say so rather than drop it silently.
		m.Spec.Log.Warn("device writes beyond the dirty log's range were not reported", "writes", n)
	}
	snap, err := m.Board.Snapshot()
	if err != nil {
		return fmt.Errorf("machine: saving device state: %w", err)
	}
	if err := devstate.Write(w, m.stateHeader(), snap); err != nil {
		return fmt.Errorf("machine: saving device state: %w", err)
	}
	return nil
}

func (r *dirtyReporter) beyondWrites() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.beyond
}

// LoadState reads one device-state stream and restores the devices from
// it (-incoming, QMP xen-load-devices-state). A stream of another format
// version or for another machine (RAM, vCPUs, devices) is refused before
// any device changes, with a line saying what differs. The devices are
// paused for the duration (and left as they were).
func (m *Machine) LoadState(r io.Reader) error {
	h, snap, err := devstate.Read(r)
	if err != nil {
		return err
	}
	if err := h.Check(m.stateHeader()); err != nil {
		return err
	}
	if err := m.Board.Restore(snap); err != nil {
		return err
	}
	return nil
}
