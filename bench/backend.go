package bench

import (
	"fmt"
	"sync"
	"sync/atomic"

	"godm/devices"
	"godm/hyp/xensim"
)

// backendPort is the port of the back-end device (see backend).
const backendPort = 0x2000

// backend is a device whose work is done by a goroutine of its own, as a
// disk or network device hands a request to its I/O goroutine: writing v
// to its register queues v for the back end (the handler readies the
// back-end goroutine, on the worker's P), reading it returns the last
// value the back end completed. A guest that writes and then polls until
// its value comes back measures how long a goroutine a handler readied
// waits to run: with no P to spare (the scenario runs with a P per vCPU
// and per server thread only), that is until a thread lets go of its P.
type backend struct {
	reqs chan uint64
	done atomic.Uint64
	quit sync.WaitGroup
}

func newBackend() *backend {
	b := &backend{reqs: make(chan uint64)}
	b.quit.Add(1)
	go func() {
		defer b.quit.Done()
		for v := range b.reqs {
			b.done.Store(v)
		}
	}()
	return b
}

// Read implements devices.Handler: the last value completed.
func (b *backend) Read(devices.Access) uint64 { return b.done.Load() }

// Write implements devices.Handler: v goes to the back end if it is idle
// (a guest writes again only after its last value came back).
func (b *backend) Write(_ devices.Access, v uint64) {
	select {
	case b.reqs <- v:
	default:
	}
}

// close stops the back-end goroutine.
func (b *backend) close() {
	close(b.reqs)
	b.quit.Wait()
}

// backendPolls bounds how many reads a guest makes waiting for the back
// end before the operation fails (far beyond any scheduling delay).
const backendPolls = 1 << 24

// opBackend writes a fresh value to the back-end device and reads the
// register until the back end has completed it.
func opBackend(_ *rig, v *xensim.VCPU, _, i int, check bool) error {
	want := uint64(byte(i + 1))
	if err := v.Out(backendPort, 1, want); err != nil {
		return err
	}
	for range backendPolls {
		got, err := v.In(backendPort, 1)
		if err != nil || !check || got == want {
			return err
		}
	}
	return fmt.Errorf("back end never completed %#x", want)
}
