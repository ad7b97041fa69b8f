package bench

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// What shares the host with the device model in the shared scenarios. On a
// small Xen host (the benchmark box: dom0 with 2 vCPUs, the guest's vCPU
// on the same 2 cores) the device model's threads compete with the guest's
// vCPU for the CPUs, and its ioreq worker competes with its own other
// goroutines (timers, back ends, the monitor) for the Go scheduler's Ps.
const (
	// competeCPU runs a thread of its own (with a P of its own) that
	// keeps a core busy, giving it up only when the kernel's scheduler
	// takes it: another guest vCPU or dom0 work on the second core.
	competeCPU = 1 << iota
	// competeGo runs an ordinary goroutine, with no P of its own, that
	// is runnable goBusy out of every goBusy+goSleep: the device model's
	// own background work, which takes the P of a worker asleep in a
	// system call (sysmon hands it over), so that the worker, woken by a
	// request, needs a P back before it can answer.
	competeGo
)

const (
	goBusy  = 20 * time.Microsecond
	goSleep = 80 * time.Microsecond
)

// competitor runs the competing load of a shared scenario.
type competitor struct {
	stop atomic.Bool
	wg   sync.WaitGroup
}

// startCompetitor starts the load kinds selects (competeCPU, competeGo).
// The caller has raised GOMAXPROCS by one for competeCPU.
func startCompetitor(kinds int) *competitor {
	c := &competitor{}
	if kinds&competeCPU != 0 {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for !c.stop.Load() {
				spinFor(time.Millisecond)
			}
		}()
	}
	if kinds&competeGo != 0 {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			for !c.stop.Load() {
				spinFor(goBusy)
				time.Sleep(goSleep)
			}
		}()
	}
	return c
}

// spinFor keeps the CPU busy for about d.
func spinFor(d time.Duration) {
	t0 := time.Now()
	for time.Since(t0) < d {
	}
}

func (c *competitor) close() {
	if c == nil {
		return
	}
	c.stop.Store(true)
	c.wg.Wait()
}
