package testfake

import (
	"slices"
	"sync"
	"testing"
	"time"

	"godm/irq"
)

// MSI is one message sent through an irq.MSISender.
type MSI struct {
	Addr uint64
	Data uint32
}

// Recorder records interrupts: it is an irq.Line (every level sent, the
// edges among them, rises counted, a level sent twice in a row flagged),
// an irq.MSISender (every message, in order) and a PCI INTx router whose
// lines are Recorders of their own. It is safe for concurrent use; the
// zero Recorder is a low line with nothing recorded.
type Recorder struct {
	mu       sync.Mutex
	level    bool
	calls    int
	rises    int
	repeated bool
	levels   []bool // every level sent since TakeLevels
	edges    []bool // the changes of level since TakeEdges
	msis     []MSI  // since TakeMSIs
	intx     map[[3]uint8]*Recorder
}

var (
	_ irq.Line      = (*Recorder)(nil)
	_ irq.MSISender = (*Recorder)(nil)
)

// SetLevel implements irq.Line.
func (r *Recorder) SetLevel(high bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.levels = append(r.levels, high)
	if high == r.level {
		r.repeated = true
		return
	}
	r.level = high
	r.edges = append(r.edges, high)
	if high {
		r.rises++
	}
}

// SendMSI implements irq.MSISender.
func (r *Recorder) SendMSI(addr uint64, data uint32) {
	r.mu.Lock()
	r.msis = append(r.msis, MSI{addr, data})
	r.mu.Unlock()
}

// INTx returns the Recorder of a function's INTx pin (the pci.INTxRouter
// shape), the same one for the same (dev, fn, pin).
func (r *Recorder) INTx(dev, fn, pin uint8) irq.Line { return r.Pin(dev, fn, pin) }

// Pin is INTx with the Recorder type, for reading what the pin saw.
func (r *Recorder) Pin(dev, fn, pin uint8) *Recorder {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := [3]uint8{dev, fn, pin}
	if r.intx == nil {
		r.intx = map[[3]uint8]*Recorder{}
	}
	l := r.intx[k]
	if l == nil {
		l = &Recorder{}
		r.intx[k] = l
	}
	return l
}

// Level returns the line's level.
func (r *Recorder) Level() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.level
}

// Calls returns how many times SetLevel was called.
func (r *Recorder) Calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// Rises returns how many times the line went from low to high (pulses
// and edges alike).
func (r *Recorder) Rises() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rises
}

// Repeated reports whether a level was ever sent while the line already
// had it.
func (r *Recorder) Repeated() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.repeated
}

// Levels returns every level sent since the last TakeLevels.
func (r *Recorder) Levels() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.levels)
}

// Grow makes room for levels more levels (and edges) and msis more
// messages, so that recording them does not allocate (for AllocsPerRun
// tests).
func (r *Recorder) Grow(levels, msis int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.levels = slices.Grow(r.levels, levels)
	r.edges = slices.Grow(r.edges, levels)
	r.msis = slices.Grow(r.msis, msis)
}

// TakeLevels returns every level sent since the last call, and clears
// them.
func (r *Recorder) TakeLevels() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.levels
	r.levels = nil
	return l
}

// TakeEdges returns the level changes since the last call, and clears
// them.
func (r *Recorder) TakeEdges() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.edges
	r.edges = nil
	return e
}

// MSIs returns the messages sent since the last TakeMSIs.
func (r *Recorder) MSIs() []MSI {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msis)
}

// TakeMSIs returns the messages sent since the last call, and clears
// them.
func (r *Recorder) TakeMSIs() []MSI {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.msis
	r.msis = nil
	return m
}

// WaitFor waits until cond holds, checking every 100 µs for at most
// timeout, and fails t with what if it never does. cond typically reads
// a Recorder (it must not hold a Recorder's lock).
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Until(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// Until waits until cond holds, checking every 100 µs for at most
// timeout, and reports whether it did.
func Until(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return cond()
		}
		time.Sleep(100 * time.Microsecond)
	}
	return true
}

// AllPins is a PCI INTx router that wires every pin of every function to
// Line.
type AllPins struct{ Line irq.Line }

// INTx returns Line.
func (a AllPins) INTx(dev, fn, pin uint8) irq.Line { return a.Line }
