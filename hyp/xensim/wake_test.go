package xensim

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"godm/hyp"
	"godm/hyp/xenabi"
)

// TestPageUse checks that a destroyed server's page is unmapped exactly
// when the last vCPU waiting on it lets go, and at once when none waits.
func TestPageUse(t *testing.T) {
	for _, tc := range []struct {
		name      string
		waiters   int // acquired before retire
		released  int // released before retire
		wantAtEnd bool
	}{
		{"no waiter", 0, 0, true},
		{"one waiter", 1, 0, true},
		{"three waiters", 3, 0, true},
		{"waiters gone before retire", 2, 2, true},
		{"one of two gone before retire", 2, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := newShmem("xensim-test-pageuse", pageSize)
			if err != nil {
				t.Fatal(err)
			}
			var u pageUse
			for range tc.waiters {
				u.acquire()
			}
			for range tc.released {
				u.release()
			}
			if err := u.retire(m); err != nil {
				t.Fatalf("retire: %v", err)
			}
			if err := u.retire(nil); err != nil { // a second retire changes nothing
				t.Fatalf("second retire: %v", err)
			}
			if !u.retired() {
				t.Error("retired() = false after retire")
			}
			left := tc.waiters - tc.released
			if got, want := m.fd < 0, left == 0; got != want {
				t.Fatalf("unmapped at retire = %v, want %v (%d waiters left)", got, want, left)
			}
			for i := range left {
				if m.fd < 0 {
					t.Fatalf("unmapped with %d waiters left", left-i)
				}
				u.release()
			}
			if got := m.fd < 0; got != tc.wantAtEnd {
				t.Errorf("unmapped after the last release = %v, want %v", got, tc.wantAtEnd)
			}
		})
	}
}

// TestWaitExits drives every way a waiting vCPU's access ends — an
// answer, the server destroyed, the domain destroyed, the timeout — with
// the vCPU blocking at once and spinning first, on a goroutine locked to
// its OS thread (as the benchmarks run it).
func TestWaitExits(t *testing.T) {
	type exit int
	const (
		answer exit = iota
		destroyServer
		destroyDomain
		timeout
	)
	for _, spin := range []int{0, 100, 1 << 14} {
		for _, tc := range []struct {
			name    string
			exit    exit
			wantErr error
		}{
			{"answer", answer, nil},
			{"server destroyed", destroyServer, hyp.ErrClosed},
			{"domain destroyed", destroyDomain, hyp.ErrClosed},
			{"timeout", timeout, ErrTimeout},
		} {
			t.Run(fmt.Sprintf("spin%d/%s", spin, tc.name), func(t *testing.T) {
				s, d := newSim(t, Config{IOReqTimeout: 50 * time.Millisecond, Spin: spin}, stdDomain())
				dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, func(r reqView) uint64 { return 0x5a })
				dom := uint16(d.ID())
				if err := rangeOp(dm.pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_PORT, 0x70, 0x71); err != nil {
					t.Fatal(err)
				}
				s.mu.RLock()
				pages := d.servers[dm.id].pages
				s.mu.RUnlock()
				switch tc.exit {
				case destroyServer:
					dm.setHook(func(int) {
						dmop(dm.pc, dom, xenabi.XEN_DMOP_destroy_ioreq_server, union(dm.id, uint16(0)))
					})
				case destroyDomain:
					dm.setHook(func(int) { d.Close() })
				case timeout:
					dm.setHook(func(int) {})
				}
				got, err := lockedIn(d.VCPU(0), 0x70)
				if tc.wantErr == nil {
					if err != nil || got != 0x5a {
						t.Fatalf("In = %#x, %v; want 0x5a", got, err)
					}
				} else if !errors.Is(err, tc.wantErr) {
					t.Fatalf("In: err = %v, want %v", err, tc.wantErr)
				}
				if tc.exit == destroyServer || tc.exit == destroyDomain {
					// The vCPU has let go: the page is unmapped.
					if pages.fd >= 0 {
						t.Error("the destroyed server's page is still mapped after the vCPU returned")
					}
				}
				if tc.exit != timeout {
					return
				}
				// The DM answers late; the vCPU's next access is served.
				dm.setHook(nil)
				if got, err := lockedIn(d.VCPU(0), 0x70); err == nil {
					t.Errorf("In after a timed-out request = %#x, want the slot-state error", got)
				}
			})
		}
	}
}

// lockedIn performs v.In(port, 1) on a goroutine locked to its OS thread.
func lockedIn(v *VCPU, port uint16) (uint64, error) {
	type result struct {
		v   uint64
		err error
	}
	c := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		got, err := v.In(port, 1)
		c <- result{got, err}
	}()
	r := <-c
	return r.v, r.err
}

// TestLockedVCPUsRoundTrips runs vCPUs on locked OS threads against one
// device model, blocking and spinning, more vCPUs than CPUs included, and
// checks every answer. The held case sleeps holding each vCPU's P
// (SetHoldP, each vCPU with a P of its own) while garbage collections stop
// the world.
func TestLockedVCPUsRoundTrips(t *testing.T) {
	for _, tc := range []struct {
		spin int
		held bool
	}{{0, false}, {1 << 14, false}, {0, true}} {
		spin := tc.spin
		t.Run(fmt.Sprintf("spin%d/held=%v", spin, tc.held), func(t *testing.T) {
			s, d := newSim(t, Config{Spin: spin}, DomainConfig{VCPUs: 4, RAM: []Region{{0, 1 << 20}}})
			if tc.held {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + d.NumVCPUs()))
				stop := make(chan struct{})
				gcDone := make(chan int)
				go func() {
					n := 0
					for {
						select {
						case <-stop:
							gcDone <- n
							return
						default:
						}
						runtime.GC()
						n++
					}
				}()
				defer func() {
					close(stop)
					if n := <-gcDone; n == 0 {
						t.Error("no garbage collection completed while the vCPUs slept holding their Ps")
					}
				}()
			}
			dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, func(r reqView) uint64 { return r.addr + uint64(r.vcpu) })
			if err := rangeOp(dm.pc, uint16(d.ID()), xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_PORT, 0x100, 0x1ff); err != nil {
				t.Fatal(err)
			}
			const n = 300
			var wg sync.WaitGroup
			errs := make(chan error, d.NumVCPUs())
			for i := range d.NumVCPUs() {
				v := d.VCPU(i)
				wg.Add(1)
				go func() {
					defer wg.Done()
					runtime.LockOSThread()
					defer runtime.UnlockOSThread()
					v.SetHoldP(tc.held)
					for j := range n {
						port := uint16(0x100 + j%0x100)
						got, err := v.In(port, 1)
						if want := (uint64(port) + uint64(v.ID())) & 0xff; err != nil || got != want {
							errs <- fmt.Errorf("vcpu%d In(%#x) = %#x, %v; want %#x", v.ID(), port, got, err, want)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if got, want := len(dm.requests()), d.NumVCPUs()*n; got != want {
				t.Errorf("DM saw %d requests, want %d", got, want)
			}
			if vs := s.Violations(); len(vs) != 0 {
				t.Errorf("violations %v", vs)
			}
		})
	}
}

// TestCloseUnderLoad destroys the domain while every vCPU, each on its
// own locked thread, issues requests back to back (spinning or blocking):
// every vCPU stops with ErrClosed, and the server's page is unmapped once
// they all have.
func TestCloseUnderLoad(t *testing.T) {
	for _, spin := range []int{0, 1 << 14} {
		t.Run(fmt.Sprintf("spin%d", spin), func(t *testing.T) {
			s, d := newSim(t, Config{Spin: spin}, DomainConfig{VCPUs: 4, RAM: []Region{{0, 1 << 20}}})
			dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, func(r reqView) uint64 { return 1 })
			if err := rangeOp(dm.pc, uint16(d.ID()), xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_PORT, 0x100, 0x1ff); err != nil {
				t.Fatal(err)
			}
			s.mu.RLock()
			pages := d.servers[dm.id].pages
			s.mu.RUnlock()
			var wg sync.WaitGroup
			started := make(chan struct{}, d.NumVCPUs())
			errs := make(chan error, d.NumVCPUs())
			for i := range d.NumVCPUs() {
				v := d.VCPU(i)
				wg.Add(1)
				go func() {
					defer wg.Done()
					runtime.LockOSThread()
					defer runtime.UnlockOSThread()
					for j := 0; ; j++ {
						if j == 10 {
							started <- struct{}{}
						}
						if _, err := v.In(0x100, 1); err != nil {
							if j < 10 {
								started <- struct{}{} // failed early: reported below
							}
							errs <- err
							return
						}
					}
				}()
			}
			for range d.NumVCPUs() {
				<-started
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if !errors.Is(err, hyp.ErrClosed) {
					t.Errorf("vCPU stopped with %v, want ErrClosed", err)
				}
			}
			if pages.fd >= 0 {
				t.Error("the server's page is still mapped after every vCPU returned")
			}
		})
	}
}
