package ioreq

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeEvents models the Linux evtchn device over an eventfd: a port that
// fires is queued once and masked until Unmask; firing a masked port is
// remembered and re-delivered on Unmask (Xen re-raises a pending event
// when it is unmasked).
type fakeEvents struct {
	t  testing.TB
	fd int

	mu       sync.Mutex
	queue    []uint32
	masked   map[uint32]bool
	again    map[uint32]bool
	failRead error
	reads    int // Pending calls (read(2) on the real device)

	notified chan uint32
}

func newFakeEvents(t testing.TB) *fakeEvents {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &fakeEvents{t: t, fd: fd, masked: map[uint32]bool{}, again: map[uint32]bool{},
		notified: make(chan uint32, 1<<16)}
}

func (e *fakeEvents) fire(port uint32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fireLocked(port)
}

func (e *fakeEvents) fireLocked(port uint32) {
	if e.masked[port] {
		e.again[port] = true
		return
	}
	e.masked[port] = true
	e.queue = append(e.queue, port)
	one := [8]byte{1}
	unix.Write(e.fd, one[:])
}

func (e *fakeEvents) Pending(buf []uint32) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reads++
	if e.failRead != nil {
		return 0, e.failRead
	}
	n := copy(buf, e.queue)
	e.queue = e.queue[n:]
	if len(e.queue) == 0 {
		var b [8]byte
		unix.Read(e.fd, b[:])
	}
	return n, nil
}

func (e *fakeEvents) Unmask(port uint32) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.masked[port] = false
	if e.again[port] {
		e.again[port] = false
		e.fireLocked(port)
	}
	return nil
}

func (e *fakeEvents) Notify(port uint32) error {
	e.notified <- port
	return nil
}

func (e *fakeEvents) Fd() int { return e.fd }

func (e *fakeEvents) waitNotify(t testing.TB) uint32 {
	t.Helper()
	select {
	case p := <-e.notified:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a response notification")
		return 0
	}
}

type workerRig struct {
	sp   *SharedPage
	ev   *fakeEvents
	w    *worker
	pio  *countSpace
	stop context.CancelFunc
	done chan error
}

func startWorker(t *testing.T, vcpus int, cfg WorkerConfig) *workerRig {
	t.Helper()
	sp, err := NewSharedPage(newPage(t), vcpus)
	if err != nil {
		t.Fatal(err)
	}
	ev := newFakeEvents(t)
	pio := &countSpace{}
	w := newWorker(NewDispatcher(Targets{PIO: pio}), ev, nil, cfg)
	for i := range vcpus {
		w.addSlot(sp.Slot(i), uint32(100+i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.run(ctx) }()
	r := &workerRig{sp: sp, ev: ev, w: w, pio: pio, stop: cancel, done: done}
	t.Cleanup(func() { r.shutdown(t) })
	return r
}

func (r *workerRig) shutdown(t *testing.T) error {
	t.Helper()
	r.stop()
	select {
	case err := <-r.done:
		r.done <- err // keep it for a second call
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("worker did not stop")
		return nil
	}
}

// roundTrip posts a PIO read on vCPU v, fires (or not) its port, and waits
// for the response.
func (r *workerRig) roundTrip(t *testing.T, v int, fire bool) {
	t.Helper()
	s := r.sp.Slot(v)
	post(s, Request{Type: TypePIO, Addr: 0x60, Size: 1, Count: 1, Read: true})
	if fire {
		r.ev.fire(uint32(100 + v))
	}
	if p := r.ev.waitNotify(t); p != uint32(100+v) {
		t.Fatalf("notified port %d, want %d", p, 100+v)
	}
	if s.State() != StateRespReady || slotData(s) != 0x88 {
		t.Fatalf("slot state %d data %#x, want RESP_READY 0x88", s.State(), slotData(s))
	}
	complete(s)
}

func TestWorkerBlockingMode(t *testing.T) {
	r := startWorker(t, 2, WorkerConfig{Spin: -1})
	for i := range 200 {
		r.roundTrip(t, i%2, true)
	}
	if err := r.shutdown(t); err != nil {
		t.Fatalf("run returned %v", err)
	}
	var c Counters
	r.w.st.Snapshot(&c)
	if c.Sync[KindPIO] != 200 || c.Wakeups == 0 {
		t.Fatalf("PIO %d wakeups %d; want 200 and > 0", c.Sync[KindPIO], c.Wakeups)
	}
}

// A blocking worker reads the event channel once per request: after the
// read that drained and unmasked the ports, an empty poll blocks without a
// second read (which on Xen is a system call that finds nothing).
func TestWorkerBlockingReadsOncePerRequest(t *testing.T) {
	const n = 200
	r := startWorker(t, 1, WorkerConfig{Spin: -1})
	for range n {
		r.roundTrip(t, 0, true)
	}
	if err := r.shutdown(t); err != nil {
		t.Fatalf("run returned %v", err)
	}
	r.ev.mu.Lock()
	reads := r.ev.reads
	r.ev.mu.Unlock()
	// One read per wake-up, plus the reads before the first block.
	if reads > n+2 {
		t.Fatalf("%d event-channel reads for %d blocking round trips, want at most %d", reads, n, n+2)
	}
}

// A worker that keeps its P while it sleeps (KeepP) serves requests,
// lets a garbage collection stop the world while it sleeps (the runtime's
// signal interrupts the raw wait), and stops when cancelled.
func TestWorkerKeepP(t *testing.T) {
	r := startWorker(t, 1, WorkerConfig{Spin: -1, KeepP: time.Hour})
	for range 50 {
		r.roundTrip(t, 0, true)
	}
	gc := make(chan struct{})
	go func() {
		runtime.GC()
		close(gc)
	}()
	select {
	case <-gc:
	case <-time.After(10 * time.Second):
		t.Fatal("a garbage collection did not complete while the worker slept holding its P")
	}
	r.roundTrip(t, 0, true)
	if err := r.shutdown(t); err != nil {
		t.Fatalf("run returned %v", err)
	}
	var c Counters
	r.w.st.Snapshot(&c)
	if c.Sync[KindPIO] != 51 {
		t.Fatalf("PIO %d, want 51", c.Sync[KindPIO])
	}
}

func TestWorkerSpinFindsUnsignalledRequests(t *testing.T) {
	// A long window: the worker is still spinning when the next request
	// lands, so it needs no event at all.
	r := startWorker(t, 1, WorkerConfig{Spin: time.Minute})
	for range 50 {
		r.roundTrip(t, 0, false)
	}
	var c Counters
	r.w.st.Snapshot(&c)
	if c.SpinHits == 0 {
		t.Fatal("no request was found by spinning")
	}
}

func TestWorkerParallelVCPUs(t *testing.T) {
	const vcpus, each = 4, 300
	sp, err := NewSharedPage(newPage(t), vcpus)
	if err != nil {
		t.Fatal(err)
	}
	ev := newFakeEvents(t)
	// Per-vCPU notification channels, fed by a demultiplexer.
	chans := make([]chan struct{}, vcpus)
	for i := range chans {
		chans[i] = make(chan struct{}, 1)
	}
	w := newWorker(NewDispatcher(Targets{PIO: &countSpace{}}), ev, nil, WorkerConfig{Spin: 20 * time.Microsecond})
	for i := range vcpus {
		w.addSlot(sp.Slot(i), uint32(i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.run(ctx) }()
	go func() {
		for {
			select {
			case p := <-ev.notified:
				chans[p] <- struct{}{}
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, vcpus)
	for v := range vcpus {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := sp.Slot(v)
			for range each {
				post(s, Request{Type: TypePIO, Addr: 0x70, Size: 2, Count: 1, Read: true, VCPU: uint32(v)})
				ev.fire(uint32(v))
				select {
				case <-chans[v]:
				case <-time.After(10 * time.Second):
					errs <- errors.New("timeout")
					return
				}
				if s.State() != StateRespReady || slotData(s) != 0x7788 {
					errs <- errors.New("bad response")
					return
				}
				complete(s)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestWorkerEventErrorStops(t *testing.T) {
	r := startWorker(t, 1, WorkerConfig{Spin: -1})
	r.roundTrip(t, 0, true)
	boom := errors.New("evtchn gone")
	r.ev.mu.Lock()
	r.ev.failRead = boom
	r.ev.mu.Unlock()
	r.ev.fire(100)
	select {
	case err := <-r.done:
		r.done <- err
		if !errors.Is(err, boom) {
			t.Fatalf("run returned %v, want %v", err, boom)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("worker did not stop on an event-channel error")
	}
}

func TestWorkerAdaptiveSpin(t *testing.T) {
	w := newWorker(NewDispatcher(Targets{}), &nopEvents{}, nil, WorkerConfig{Spin: 100 * time.Microsecond})
	tests := []struct {
		gap  time.Duration
		want time.Duration
	}{
		{time.Second, 50 * time.Microsecond},
		{time.Second, 25 * time.Microsecond},
		{10 * time.Microsecond, 50 * time.Microsecond},
		{80 * time.Microsecond, 100 * time.Microsecond},
		{time.Millisecond, 50 * time.Microsecond},
	}
	for _, tt := range tests {
		w.adapt(tt.gap)
		if w.spin != tt.want {
			t.Fatalf("after gap %v: spin %v, want %v", tt.gap, w.spin, tt.want)
		}
	}
	b := newWorker(NewDispatcher(Targets{}), &nopEvents{}, nil, WorkerConfig{Spin: -1})
	b.adapt(time.Nanosecond)
	if b.spin != 0 {
		t.Fatalf("blocking mode spin %v, want 0", b.spin)
	}
}

// TestWorkerSpinForCPUs checks the default polling window against the
// CPUs the process may use: none with one CPU (polling would hold the
// CPU everything else in dom0 needs), DefaultSpin with more; an explicit
// window is obeyed either way, and blocking mode stays blocking.
func TestWorkerSpinForCPUs(t *testing.T) {
	tests := []struct {
		spin time.Duration
		cpus int
		want time.Duration
	}{
		{0, 1, 0},
		{0, 2, DefaultSpin},
		{0, 64, DefaultSpin},
		{200 * time.Microsecond, 1, 200 * time.Microsecond},
		{200 * time.Microsecond, 4, 200 * time.Microsecond},
		{-1, 1, 0},
		{-1, 8, 0},
	}
	for _, tt := range tests {
		if got := (WorkerConfig{Spin: tt.spin}).spinFor(tt.cpus); got != tt.want {
			t.Errorf("Spin %v on %d CPUs: window %v, want %v", tt.spin, tt.cpus, got, tt.want)
		}
	}
}

// TestWorkerSchedPoint checks when a worker looks for goroutines waiting
// for a P and when it yields its own: not before lookEvery has passed
// since its last look, and at the latest maxNoYield after its last yield.
func TestWorkerSchedPoint(t *testing.T) {
	base := time.Now()
	tests := []struct {
		name                string
		sinceLook, sinceYld time.Duration
		wantLook, wantYield bool // wantYield: certainly yields (a look may yield too)
	}{
		{"looked just now", time.Microsecond, time.Microsecond, false, false},
		{"looked just now, long without a yield", time.Microsecond, time.Second, false, false},
		{"time to look", lookEvery, time.Microsecond, true, false},
		{"time to look, long without a yield", lookEvery, maxNoYield, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorker(NewDispatcher(Targets{}), &nopEvents{}, nil, WorkerConfig{})
			w.lastLook, w.lastYield = base.Add(-tt.sinceLook), base.Add(-tt.sinceYld)
			look, yield := w.lastLook, w.lastYield
			w.schedPoint(base)
			if looked := w.lastLook != look; looked != tt.wantLook {
				t.Errorf("looked = %v, want %v", looked, tt.wantLook)
			}
			yielded := w.lastYield != yield
			if !tt.wantLook && yielded || tt.wantYield && !yielded {
				t.Errorf("yielded = %v, want %v", yielded, tt.wantYield)
			}
			if yielded && w.lastYield.Before(base) {
				t.Errorf("lastYield %v is before the call (%v)", w.lastYield, base)
			}
		})
	}
	w := newWorker(NewDispatcher(Targets{}), &nopEvents{}, nil, WorkerConfig{})
	if a := testing.AllocsPerRun(100, func() { w.othersRunnable() }); a != 0 {
		t.Errorf("reading the runnable count allocates %v times", a)
	}
}
