package xensim

import (
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// How a vCPU waits for the device model (VCPU.await). It re-reads the
// state word of its slot without the hypervisor lock, which a pageUse
// makes safe, and takes the lock again only to act on a change. It spins
// first if asked to (VCPU.SetSpin): tightPolls back-to-back reads, then a
// pause between reads; then it sleeps on a futex (a waker) until the
// device model's notify, the server's destruction or the timeout.

// tightPolls is how many re-reads a spinning vCPU makes back to back
// before it pauses between them: a few microseconds, longer than a
// polling device model takes to answer.
const tightPolls = 1 << 12

// goschedEvery is how many pauses in a row give the CPU to other OS
// threads (sched_yield) before one gives the goroutine's P to other
// goroutines (runtime.Gosched). On a thread-locked goroutine a Gosched is
// a hand-off between OS threads (several microseconds), so it is rare; on
// an ordinary goroutine it keeps a spinning vCPU from holding a P that a
// device model goroutine needs.
const goschedEvery = 256

// pause runs between re-read i and i+1 of a spinning vCPU.
func pause(i int64) {
	if i < tightPolls {
		return
	}
	if (i-tightPolls)%goschedEvery == goschedEvery-1 {
		runtime.Gosched()
		return
	}
	osYield()
}

// osYield gives the CPU to another runnable OS thread, if the kernel has
// one (sched_yield(2)). It does not involve the Go scheduler: on a
// thread-locked goroutine it costs a system call, not a thread hand-off.
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
	u.m = m
	if u.n.Or(retiredBit) == 0 {
		u.m = nil
		return m.close()
	}
	return nil
}
