package ioreq

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// eventChannel is the part of an event-channel handle a worker uses, with
// ports as plain uint32. The Xen binding adapts *evtchn.Handle to it;
// tests supply fakes. Pending, Unmask and Notify must not allocate.
type eventChannel interface {
	// Pending reads the ports that fired (non-blocking); 0, nil when none.
	Pending(buf []uint32) (int, error)
	// Unmask re-enables delivery on a port read by Pending.
	Unmask(port uint32) error
	// Notify signals the remote end of a port.
	Notify(port uint32) error
	// Fd is readable whenever Pending would return ports.
	Fd() int
}

// DefaultSpin is the default upper bound of the polling window after the
// last request. See WorkerConfig.Spin.
//
// Measured on xensim (2 CPUs, BenchmarkXenRoundTrip and
// BenchmarkXenThroughput, a loaded host): a spinning worker answered a
// blocking vCPU in 10-13 µs against 50-190 µs when blocking in epoll, and
// four vCPUs on one spinning worker ran at about 4 µs per access against
// 20-35 µs blocking. A spinning worker keeps its P; it gives it up only
// when other goroutines wait for one (see lookEvery).
const DefaultSpin = 50 * time.Microsecond

// scratchSize is the per-slot scratch buffer for rep copies: one guest page,
// the most a single rep request moves at size 1 (MaxCount) and a good chunk
// for larger sizes.
const scratchSize = 4096

// spinCheck is how many empty polls a spinning worker makes between two
// looks at the clock.
const spinCheck = 32

// A worker runs on a locked OS thread, where a yield of its P
// (runtime.Gosched) is a hand-off between threads of several
// microseconds: yielding on a fixed rhythm while spinning puts that delay
// in front of every request that lands during one (it was the polled
// p999). But goroutines its handlers ready (device back ends) are queued
// on the worker's P, and if every other P is busy they wait until the
// worker yields (or is preempted, after 10 ms). So a worker that has been
// running for lookEvery looks whether any goroutine waits for a P (the
// runtime's runnable count, about 50 ns to read) and yields only then, or
// when it has not yielded for maxNoYield (timers queued on its P run
// when it enters the scheduler).
const (
	lookEvery  = 10 * time.Microsecond
	maxNoYield = time.Millisecond
)

// osYieldAfter is how long a spinning worker polls without a request
// before it offers its CPU to other threads between looks at the clock
// (sched_yield: a system call when no other thread wants the CPU, and no
// Go scheduler involvement). When there are more runnable threads than
// CPUs — the vCPU it waits for may be one — it lets them run instead of
// spinning through a whole scheduler quantum.
const osYieldAfter = 2 * time.Microsecond

// osYield gives the CPU to another runnable OS thread, if the kernel has
// one (sched_yield(2)).
func osYield() {
	unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
}

// runnableMetric counts the goroutines ready to run but not running.
const runnableMetric = "/sched/goroutines/runnable:goroutines"

// maxPending bounds the ports read per Pending call.
const maxPending = 64

// WorkerConfig tunes the worker fast path.
type WorkerConfig struct {
	// Spin is the longest a worker keeps polling its slots after the last
	// request before it blocks in epoll. The window adapts between 0 and
	// Spin to the observed gap between requests. Zero means the default
	// (DefaultSpin, or no polling when the process can use only one CPU:
	// spinFor); negative disables spinning (pure blocking mode).
	Spin time.Duration
	// LatencyEvery samples the latency histogram and the stage
	// histograms (Counters.Stages): one request in LatencyEvery is timed
	// (reading the clock costs tens of nanoseconds on some hosts, as much
	// as handling a simple request); the others read no clock. Zero means
	// DefaultLatencyEvery; 1 times every request; negative disables it.
	LatencyEvery int
	// KeepP is how long after its last request a worker that blocks
	// keeps its P: it waits in a raw epoll_wait the Go scheduler does not
	// see, so that a request wakes the thread straight into its handler.
	// Waiting through the scheduler (syscall.Syscall) lets sysmon hand the
	// P to another thread while the worker sleeps, and the worker then
	// needs a P back before it can answer — from the idle list, or, with
	// none free, through another thread that must run and hand it over.
	// Zero or negative (the default) always waits through the scheduler.
	//
	// Measured on xensim (godm-lab bench, shared/pio/block/godm-held
	// against shared/pio/block/godm, 2 CPUs, a loaded host): holding the
	// P was never clearly faster at the median and made the blocking
	// round trip's p90 worse in 6 runs of 9, because the device model's
	// other goroutines then wait for the worker to yield (a hand-off
	// between locked threads) instead of taking its P while it sleeps;
	// so it is off until a host shows the opposite.
	KeepP time.Duration
}

func (c WorkerConfig) keepP() time.Duration {
	return max(c.KeepP, 0)
}

// DefaultLatencyEvery is the default latency sampling interval.
const DefaultLatencyEvery = 16

func (c WorkerConfig) latencyEvery() uint32 {
	switch {
	case c.LatencyEvery < 0:
		return 0
	case c.LatencyEvery == 0:
		return DefaultLatencyEvery
	}
	return uint32(c.LatencyEvery)
}

func (c WorkerConfig) spinMax() time.Duration {
	return c.spinFor(runtime.GOMAXPROCS(0))
}

// spinFor is spinMax for a process that may run cpus threads at once.
// By default a worker polls only when the process has a CPU besides the
// one it polls on: with one (a dom0 of one vCPU, or godm pinned to one),
// polling would hold the CPU that the device model's back ends, the
// rest of dom0 and — when dom0 shares its physical CPU with the guest —
// the very vCPU it waits for need, so the worker blocks at once instead.
// An explicit Spin is obeyed whatever the count.
func (c WorkerConfig) spinFor(cpus int) time.Duration {
	switch {
	case c.Spin < 0:
		return 0
	case c.Spin == 0 && cpus < 2:
		return 0
	case c.Spin == 0:
		return DefaultSpin
	}
	return c.Spin
}

type workerSlot struct {
	slot    *Slot
	port    uint32 // local port of the vCPU's event channel
	scratch []byte
}

// worker serves a shard of vCPU slots (and, if it has one, the buffered
// ring's event channel). Its run loop is the only code touching its slots.
type worker struct {
	d     *Dispatcher
	ev    eventChannel
	slots []workerSlot
	ring  *Ring

	spinMax time.Duration
	spin    time.Duration
	keepP   time.Duration
	last    time.Time

	sampleEvery uint32 // time one request in sampleEvery (0: none)
	sampleLeft  uint32
	// st8 holds the stage stamps of the next sampled request: its wake
	// and run stamps are set by the wait before it (when the next request
	// is the sampled one), the rest by serve, which then clears them.
	st8 stamps

	pending     []uint32
	ringScratch []byte
	st          Stats

	// lastLook and lastYield are when the worker last looked for waiting
	// goroutines and last left its P (yield or block); runnable is the
	// metric it reads (see lookEvery).
	lastLook, lastYield time.Time
	runnable            []metrics.Sample

	// gate holds the worker while its server is paused; wt is its
	// waiter while it runs (Pause nudges it).
	gate *pauseGate
	wt   atomic.Pointer[waiter]
}

func newWorker(d *Dispatcher, ev eventChannel, ring *Ring, cfg WorkerConfig) *worker {
	w := &worker{
		d:           d,
		ev:          ev,
		ring:        ring,
		spinMax:     cfg.spinMax(),
		keepP:       cfg.keepP(),
		sampleEvery: cfg.latencyEvery(),
		pending:     make([]uint32, maxPending),
		ringScratch: make([]byte, scratchSize),
		runnable:    []metrics.Sample{{Name: runnableMetric}},
	}
	w.spin = w.spinMax
	return w
}

func (w *worker) addSlot(s *Slot, port uint32) {
	w.slots = append(w.slots, workerSlot{slot: s, port: port, scratch: make([]byte, scratchSize)})
}

// poll drains the ring (one bounded pass) and serves every READY slot. It
// reports whether it found work.
func (w *worker) poll() bool {
	found := false
	if w.ring != nil {
		if n, _ := w.ring.Drain(w.d, w.ringScratch, &w.st); n > 0 {
			found = true
		}
	}
	for i := range w.slots {
		if w.serve(&w.slots[i]) {
			found = true
		}
	}
	return found
}

// serve handles the slot's request if it is READY.
func (w *worker) serve(ws *workerSlot) bool {
	var r Request
	word, ok := ws.slot.Claim(&r)
	if !ok {
		return false
	}
	timed := false
	if w.sampleEvery != 0 {
		if w.sampleLeft == 0 {
			w.sampleLeft = w.sampleEvery
			w.st8.claimed, timed = nanotime(), true
		}
		w.sampleLeft--
	}
	if w.ring != nil {
		// Buffered writes queued before this request are handled first.
		w.ring.Drain(w.d, w.ringScratch, &w.st)
	}
	w.st.sync[kindOf(r.Type)].Add(1)
	data, writeData := w.d.Handle(&r, ws.scratch, &w.st)
	if timed {
		w.st8.handled = nanotime()
	}
	if !ws.slot.Respond(word, data, writeData) {
		w.st.lostResponses.Add(1)
		w.st8 = stamps{}
		return true
	}
	if timed {
		w.st8.responded = nanotime()
		w.st.observe(time.Duration(w.st8.responded - w.st8.claimed))
	}
	if w.ev.Notify(ws.port) != nil {
		w.st.notifyErrors.Add(1)
	}
	if timed {
		w.st8.done = nanotime()
		w.st.observeStages(&w.st8)
	}
	w.st8 = stamps{}
	return true
}

// events reads the pending ports and unmasks them, so that every port is
// unmasked before the worker blocks (a request arriving after the last
// scan then makes the fd readable). It returns the number of ports read.
func (w *worker) events() (int, error) {
	total := 0
	for {
		n, err := w.ev.Pending(w.pending)
		if err != nil {
			w.st.eventErrors.Add(1)
			return total, err
		}
		if n == 0 {
			return total, nil
		}
		for _, p := range w.pending[:n] {
			if w.ev.Unmask(p) != nil {
				w.st.eventErrors.Add(1)
			}
		}
		total += n
		if n < len(w.pending) {
			return total, nil
		}
	}
}

// adapt updates the spin window after a request that arrived gap after the
// previous one: gaps shorter than the window bound grow it (spinning would
// have caught them), longer ones shrink it.
func (w *worker) adapt(gap time.Duration) {
	if w.spinMax == 0 {
		return
	}
	if gap <= w.spinMax {
		w.spin = min(w.spinMax, max(2*w.spin, 2*gap))
	} else {
		w.spin /= 2
	}
}

// schedPoint gives the worker's P to waiting goroutines, if the worker
// has run for lookEvery and some wait, or if it has kept its P for
// maxNoYield. now is the time of the caller's last look at the clock.
func (w *worker) schedPoint(now time.Time) {
	if now.Sub(w.lastLook) < lookEvery {
		return
	}
	w.lastLook = now
	if now.Sub(w.lastYield) < maxNoYield && !w.othersRunnable() {
		return
	}
	runtime.Gosched()
	w.lastYield = time.Now()
	w.lastLook = w.lastYield
}

// othersRunnable reports whether goroutines wait for a P.
func (w *worker) othersRunnable() bool {
	metrics.Read(w.runnable)
	v := w.runnable[0].Value
	return v.Kind() == metrics.KindUint64 && v.Uint64() > 0
}

// errStopped is returned internally when a worker's waiter is stopped.
var errStopped = errors.New("ioreq: worker stopped")

// errNudged is returned internally when a worker's waiter is nudged.
var errNudged = errors.New("ioreq: worker nudged")

// errTimedOut is returned internally when a worker's held wait ends
// without an event (timeout or signal).
var errTimedOut = errors.New("ioreq: wait timed out")

// pauseGate stops a server's workers between two requests (Server.Pause).
// A worker checks paused (one atomic load) before each poll; a paused
// worker parks until Resume or the end of its run.
type pauseGate struct {
	paused atomic.Bool
	mu     sync.Mutex
	cond   sync.Cond // on mu: active changed, or paused cleared
	active int       // workers running and not parked; guarded by mu
}

func newPauseGate() *pauseGate {
	g := &pauseGate{}
	g.cond.L = &g.mu
	return g
}

func (g *pauseGate) enter() {
	g.mu.Lock()
	g.active++
	g.mu.Unlock()
}

func (g *pauseGate) leave() {
	g.mu.Lock()
	g.active--
	g.cond.Broadcast()
	g.mu.Unlock()
}

func (g *pauseGate) broadcast() {
	g.mu.Lock()
	g.cond.Broadcast()
	g.mu.Unlock()
}

// park holds the calling worker while the gate is paused and ctx runs.
func (g *pauseGate) park(ctx context.Context) {
	g.mu.Lock()
	g.active--
	g.cond.Broadcast()
	for g.paused.Load() && ctx.Err() == nil {
		g.cond.Wait()
	}
	g.active++
	g.mu.Unlock()
}

// waitParked returns once no worker is active.
func (g *pauseGate) waitParked() {
	g.mu.Lock()
	for g.active > 0 {
		g.cond.Wait()
	}
	g.mu.Unlock()
}

// run serves until ctx is cancelled (nil) or the event channel fails. It
// runs on a locked OS thread: the thread spins and blocks on behalf of its
// vCPUs only.
func (w *worker) run(ctx context.Context) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	wt, err := newWaiter(w.ev.Fd())
	if err != nil {
		return err
	}
	defer wt.close()
	stop := context.AfterFunc(ctx, wt.wake)
	defer stop()
	if w.gate != nil {
		w.gate.enter()
		defer w.gate.leave()
		unpark := context.AfterFunc(ctx, w.gate.broadcast)
		defer unpark()
	}
	w.wt.Store(wt)
	defer w.wt.Store(nil)

	w.last = time.Now()
	w.lastLook, w.lastYield = w.last, w.last
	idle := 0        // empty polls since the last request
	blocked := false // blocked since the last request
	// drained: the last step read every pending port and unmasked it, and
	// nothing has been served since; a request after that fires an
	// unmasked port, so an empty poll may block without reading again.
	drained := false
	// woke: the worker left its P in its last wait; the next request's
	// clock reading stands for the time it got it back (one clock read
	// fewer per blocking round trip).
	woke := false
	for {
		if w.gate != nil && w.gate.paused.Load() {
			w.gate.park(ctx)
			if ctx.Err() != nil {
				return nil
			}
			w.last = time.Now()
			idle, blocked = 0, false
		}
		if w.poll() {
			drained = false
			now := time.Now()
			if woke {
				w.lastYield, woke = now, false
			}
			if idle > 0 {
				if !blocked {
					w.st.spinHits.Add(1)
				}
				w.adapt(now.Sub(w.last))
			}
			w.last, idle, blocked = now, 0, false
			w.schedPoint(now)
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		idle++
		if w.spin > 0 && !blocked {
			if idle%spinCheck != 0 {
				continue // keep polling: the next request is probably close
			}
			if now := time.Now(); now.Sub(w.last) < w.spin {
				if now.Sub(w.last) >= osYieldAfter {
					osYield()
				}
				w.schedPoint(now)
				continue
			}
		}
		// Block. Read and unmask every pending port first: a request that
		// lands after the last poll then fires an unmasked port (or is
		// re-raised by the unmask) and makes the fd readable.
		if !drained {
			n, err := w.events()
			if err != nil {
				return fmt.Errorf("ioreq worker: reading events: %w", err)
			}
			if n > 0 {
				drained = true
				continue
			}
		}
		drained = false
		blocked = true
		if w.othersRunnable() {
			// A goroutine a handler readied would wait on our P until the
			// runtime noticed the thread blocked (or, in a held wait,
			// until we woke).
			runtime.Gosched()
		}
		// Stamp the wake-up only when the next request is the sampled one.
		stamp := w.sampleEvery != 0 && w.sampleLeft == 0
		held := false
		if w.keepP > 0 {
			if left := w.keepP - time.Since(w.last); left > 0 {
				held = true
				err = wt.waitHeld(int((left + time.Millisecond - 1) / time.Millisecond))
				if stamp {
					// The raw wait kept the P: it runs on at once.
					w.st8.wake = nanotime()
					w.st8.run = w.st8.wake
				}
			}
		}
		if !held {
			var at *int64
			if stamp {
				at = &w.st8.wake
			}
			err = wt.wait(at)
			if stamp {
				w.st8.run = nanotime()
			}
		}
		if err != nil {
			w.st8.wake, w.st8.run = 0, 0
			switch {
			case errors.Is(err, errStopped):
				return nil
			case errors.Is(err, errNudged), errors.Is(err, errTimedOut):
				continue
			}
			return fmt.Errorf("ioreq worker: waiting for events: %w", err)
		}
		w.st.wakeups.Add(1)
		woke = woke || !held
	}
}
