package bench

import (
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// paddedWord is a 64-bit word alone on its cache line.
type paddedWord struct {
	_ [64]byte
	v atomic.Uint64
	_ [56]byte
}

// CacheLineFloor measures n round trips of two OS threads ping-ponging one
// cache line: the requester stores an odd sequence number, the responder
// spins until it sees it and stores the next even one, the requester spins
// until it sees that. This is the least a polled ioreq round trip
// (requester writes the slot, server polls it and answers) can cost here.
// Every round trip is timed individually, as the scenarios are.
func CacheLineFloor(n int) Result {
	var w paddedWord
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(done)
		for want := uint64(1); ; want += 2 {
			for spins := 0; w.v.Load() != want; spins++ {
				spinPause(spins)
			}
			if want == uint64(2*n-1) {
				w.v.Store(want + 1)
				return
			}
			w.v.Store(want + 1)
		}
	}()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	samples := make([]time.Duration, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		t0 := time.Now()
		req := uint64(2*i + 1)
		w.v.Store(req)
		for spins := 0; w.v.Load() != req+1; spins++ {
			spinPause(spins)
		}
		samples[i] = time.Since(t0)
	}
	elapsed := time.Since(start)
	<-done
	return Result{Name: "floor/cache-line", Ops: n, Elapsed: elapsed, Samples: samples, AllocsPerReq: -1}
}

// EventfdFloor measures n round trips of two OS threads waking each other
// through eventfds (each blocks in read(2) on its own eventfd and writes
// the other's): the least a wake-up round trip (event channel notify, the
// server blocked in epoll) can cost here.
func EventfdFloor(n int) (Result, error) {
	a, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return Result{}, err
	}
	defer unix.Close(a)
	b, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return Result{}, err
	}
	defer unix.Close(b)

	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var buf [8]byte
		for i := 0; i < n; i++ {
			if _, err := unix.Read(a, buf[:]); err != nil {
				errc <- err
				return
			}
			if _, err := unix.Write(b, one); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	samples := make([]time.Duration, n)
	var buf [8]byte
	start := time.Now()
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if _, err := unix.Write(a, one); err != nil {
			return Result{}, err
		}
		if _, err := unix.Read(b, buf[:]); err != nil {
			return Result{}, err
		}
		samples[i] = time.Since(t0)
	}
	elapsed := time.Since(start)
	if err := <-errc; err != nil {
		return Result{}, err
	}
	return Result{Name: "floor/eventfd", Ops: n, Elapsed: elapsed, Samples: samples, AllocsPerReq: -1}, nil
}

// spinPause is called on every failed poll of a spin loop. It spins freely
// for a while, then gives the CPU to other threads between polls
// (sched_yield, which does not involve the Go scheduler): with more
// runnable threads than cores, a pure busy loop can starve its peer for a
// whole scheduler quantum. It is the pause of xensim's spinning vCPUs, so
// that the floor and the simulated round trips spin alike.
func spinPause(spins int) {
	if spins >= 1024 {
		unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
	}
}
