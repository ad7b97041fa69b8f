package xensim

import (
	"runtime"
	"runtime/metrics"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// How a vCPU waits for the device model (VCPU.await). It re-reads the
// state word of its slot without the hypervisor lock, which a pageUse
// makes safe, and takes the lock again only to act on a change. It spins
// first if asked to (VCPU.SetSpin), then sleeps on a futex (a waker)
// until the device model's notify, the server's destruction or the
// timeout.
//
// A spinning vCPU makes tightPolls re-reads back to back (longer than a
// polling device model takes to answer), then gives its CPU to other
// runnable OS threads between re-reads (sched_yield(2): with more spinning
// threads than CPUs, the one it waits for may be among them). That does
// not involve the Go scheduler. Every lookEvery re-reads it also looks
// whether goroutines wait for a P (the runtime's runnable count, about
// 50 ns to read) and yields its P if so: on an ordinary goroutine, a
// device model goroutine may need it. It never yields its P otherwise: on
// a goroutine locked to its OS thread that is a hand-off between threads
// of several microseconds.

// tightPolls is how many re-reads a spinning vCPU makes back to back: a
// microsecond or two.
const tightPolls = 1 << 10

// lookEvery is how many re-reads a spinning vCPU makes between two looks
// for goroutines waiting for a P.
const lookEvery = 1 << 10

// runnableMetric counts the goroutines ready to run but not running.
const runnableMetric = "/sched/goroutines/runnable:goroutines"

// pause runs after the unanswered re-read i of a spinning vCPU.
func (v *VCPU) pause(i int64) {
	if i%lookEvery == lookEvery-1 {
		metrics.Read(v.runnable[:])
		if r := v.runnable[0].Value; r.Kind() == metrics.KindUint64 && r.Uint64() > 0 {
			runtime.Gosched()
			return
		}
	}
	if i >= tightPolls {
		osYield()
	}
}

// osYield gives the CPU to another runnable OS thread, if the kernel has
// one (sched_yield(2)). It does not involve the Go scheduler.
func osYield() {
	unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
}

// waker puts a vCPU's thread to sleep until it is kicked, at the cost of
// a futex wait and wake: about an eventfd round trip, without the Go
// scheduler's hand-offs between locked threads that a channel costs.
//
// The vCPU sets sleeping, reads seq, re-checks what it waits for and only
// then sleeps while seq is unchanged; a kicker changes what the vCPU
// waits for first, then bumps seq and wakes the thread if sleeping is set
// (Go's atomics are sequentially consistent, so either the kicker sees
// sleeping or the vCPU's re-check sees the change). A kick that finds the
// vCPU awake costs one atomic load.
type waker struct {
	seq      atomic.Uint32
	sleeping atomic.Bool
}

func (w *waker) kick() {
	if w.sleeping.Load() {
		w.seq.Add(1)
		futexWake(&w.seq)
	}
}

// pageUse counts the vCPUs waiting on a server's ioreq page, so that they
// can read their slot's state word without the hypervisor lock: when the
// server is destroyed (under the lock) while some wait, its page is
// unmapped by the last of them to stop waiting instead of at once. It
// sits alone on its cache line: every synchronous request updates it.
type pageUse struct {
	_ [64]byte
	// n counts the waiting vCPUs; retiredBit is set once the server is
	// destroyed.
	n atomic.Int64
	// m is the page the last waiter unmaps (set by retire before it
	// publishes retiredBit).
	m *shmem
	_ [48]byte
}

const retiredBit = 1 << 62

// acquire registers a waiting vCPU. Called with Sim.mu held (shared), on a
// server that is not destroyed.
func (u *pageUse) acquire() { u.n.Add(1) }

// release unregisters a waiting vCPU, which reads the page no more; the
// last one out of a destroyed server unmaps the page.
func (u *pageUse) release() {
	if u.n.Add(-1) == retiredBit {
		m := u.m
		u.m = nil
		m.close() // nobody to report an error to; the fd and mapping go either way
	}
}

// retired reports whether the server was destroyed.
func (u *pageUse) retired() bool { return u.n.Load()&retiredBit != 0 }

// retire marks the server destroyed and unmaps m now if no vCPU waits on
// it (reporting the error), or leaves it to the last waiter. Called with
// Sim.mu held exclusively.
func (u *pageUse) retire(m *shmem) error {
	if u.retired() {
		return nil // already handed over; only the exclusive lock's holder retires
	}
	u.m = m
	if u.n.Or(retiredBit) == 0 {
		u.m = nil
		return m.close()
	}
	return nil
}
