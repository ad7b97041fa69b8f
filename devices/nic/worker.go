package nic

import "sync"

// Notifier is the part of a back-end (netback.Backend) the worker needs:
// the rx and tx wake-ups.
type Notifier interface {
	SetNotify(rx, tx func())
}

// Worker is a NIC model's back-end worker: one goroutine that runs the
// device's poll function (deliver waiting frames, retry a transmit the
// back-end refused, fire timers) after each Wake. Wake-ups coalesce; a
// paused worker polls nothing until Resume; Close stops it. The poll
// function takes the device's own lock; Pause waits for a poll in
// progress, so once it returns the worker touches neither guest memory
// nor the interrupt line.
type Worker struct {
	kick    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
	be      Notifier

	// run is held by the goroutine while it polls, and by Pause until
	// Resume.
	run    sync.Mutex
	pmu    sync.Mutex
	paused bool
}

// Start installs Wake as be's rx and tx wake-up (be may be nil: no
// back-end) and starts the goroutine that calls poll. Call it once,
// before any Close; Wake before Start does nothing.
func (w *Worker) Start(be Notifier, poll func()) {
	w.kick = make(chan struct{}, 1)
	w.stop = make(chan struct{})
	w.stopped = make(chan struct{})
	w.be = be
	if be != nil {
		be.SetNotify(w.Wake, w.Wake)
	}
	go w.loop(poll)
}

func (w *Worker) loop(poll func()) {
	defer close(w.stopped)
	for {
		select {
		case <-w.stop:
			return
		case <-w.kick:
		}
		w.run.Lock()
		poll()
		w.run.Unlock()
	}
}

// Wake asks for a poll; it never blocks (wake-ups while one is pending
// merge into it).
func (w *Worker) Wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Pause implements devices.Pauser for the worker: once it returns no poll
// runs until Resume; frames wait in the back-end's queue.
func (w *Worker) Pause() {
	w.pmu.Lock()
	defer w.pmu.Unlock()
	if !w.paused {
		w.run.Lock()
		w.paused = true
	}
}

// Resume lets the worker poll again, and wakes it for what came meanwhile.
func (w *Worker) Resume() {
	w.pmu.Lock()
	defer w.pmu.Unlock()
	if w.paused {
		w.paused = false
		w.run.Unlock()
		w.Wake()
	}
}

// Close resumes a paused worker, detaches the back-end's wake-ups (the
// back-end stays open: its owner closes it), calls stop once (the device
// stops its timers there; it may be nil) and waits for the goroutine to
// end. Idempotent.
func (w *Worker) Close(stop func()) {
	w.Resume()
	w.once.Do(func() {
		if w.be != nil {
			w.be.SetNotify(nil, nil)
		}
		close(w.stop)
		if stop != nil {
			stop()
		}
	})
	<-w.stopped
}
