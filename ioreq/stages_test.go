package ioreq

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// stageCount is the number of samples in one path's stage histogram.
func stageCount(c *Counters, p Path, s Stage) uint64 {
	var n uint64
	for _, v := range c.Stages[p][s] {
		n += v
	}
	return n
}

// checkStageSums asserts, for every path, that every stage histogram
// holds the same number of samples and that the stage sums add up to the
// total's; it returns the samples per path.
func checkStageSums(t *testing.T, c *Counters) [NumPaths]uint64 {
	t.Helper()
	var n [NumPaths]uint64
	for p := range NumPaths {
		n[p] = stageCount(c, p, StageTotal)
		var sum uint64
		for s := range StageTotal {
			if got := stageCount(c, p, s); got != n[p] {
				t.Errorf("%v/%v: %d samples, total has %d", p, s, got, n[p])
			}
			sum += c.StageSum[p][s]
		}
		if sum != c.StageSum[p][StageTotal] {
			t.Errorf("%v: stages sum to %d ns, total is %d ns", p, sum, c.StageSum[p][StageTotal])
		}
		for st := range NumStages {
			var split uint64
			for b := range c.Split[p] {
				split += c.Split[p][b][st]
			}
			if split != c.StageSum[p][st] {
				t.Errorf("%v/%v: split sums to %d ns, stage sum is %d ns", p, st, split, c.StageSum[p][st])
			}
		}
	}
	return n
}

func TestObserveStages(t *testing.T) {
	var st Stats
	// A blocked request: 3 µs to get the P back, 100 ns to the claim,
	// 50 ns handling, 10 ns responding, 990 ns notifying.
	st.observeStages(&stamps{wake: 1000, run: 4000, claimed: 4100, handled: 4150, responded: 4160, done: 5150})
	// A request found awake: no wake stages.
	st.observeStages(&stamps{claimed: 10, handled: 30, responded: 40, done: 100})
	var c Counters
	st.Snapshot(&c)
	n := checkStageSums(t, &c)
	if n[PathBlock] != 1 || n[PathSpin] != 1 {
		t.Fatalf("samples %v, want one per path", n)
	}
	want := [NumPaths][NumStages]uint64{
		PathBlock: {3000, 100, 50, 10, 990, 4150},
		PathSpin:  {0, 0, 20, 10, 60, 90},
	}
	if c.StageSum != want {
		t.Fatalf("stage sums %v, want %v", c.StageSum, want)
	}
	// The block request's total, 4150 ns, is in bucket 12 ([4096, 8192)).
	if c.Split[PathBlock][12] != want[PathBlock] || c.Split[PathSpin][6] != want[PathSpin] {
		t.Fatalf("split %v, %v; want %v, %v", c.Split[PathBlock][12], c.Split[PathSpin][6], want[PathBlock], want[PathSpin])
	}
	if got := c.StageQuantile(PathBlock, StageWakeToRun, 0.5); got != 4096 {
		t.Errorf("block wake-to-run median bound %v, want 4.096µs", got)
	}
	if got := c.StageQuantile(PathSpin, StageWakeToRun, 0.5); got != 2 {
		t.Errorf("spin wake-to-run median bound %v, want 2ns (bucket 0)", got)
	}
	for p, s := range map[Path]string{PathSpin: "spin", PathBlock: "block"} {
		if p.String() != s {
			t.Errorf("Path(%d) = %q, want %q", p, p.String(), s)
		}
	}
	names := []string{"wake-to-run", "run-to-claim", "handle", "respond", "notify", "total"}
	for s := range NumStages {
		if s.String() != names[s] {
			t.Errorf("Stage(%d) = %q, want %q", s, s.String(), names[s])
		}
	}
}

// Stages are recorded for the sampled requests only, add up, and cost no
// allocation.
func TestStagesSampledOnlyNoAlloc(t *testing.T) {
	for _, every := range []int{1, 16, -1} {
		rig := newAllocRig(t)
		rig.w.sampleEvery = WorkerConfig{LatencyEvery: every}.latencyEvery()
		s := rig.sp.Slot(0)
		const runs = 100
		allocs := testing.AllocsPerRun(runs, func() {
			post(s, Request{Type: TypePIO, Addr: 0x3f8, Size: 1, Count: 1, Read: true})
			if !rig.w.poll() {
				t.Fatal("poll found no request")
			}
			complete(s)
		})
		if allocs != 0 {
			t.Fatalf("every %d: %v allocations per request, want 0", every, allocs)
		}
		var c Counters
		rig.w.st.Snapshot(&c)
		n := checkStageSums(t, &c)
		served := uint64(runs + 1) // AllocsPerRun warms up once
		want := uint64(0)
		if every > 0 {
			want = (served + uint64(every) - 1) / uint64(every)
		}
		if n[PathSpin] != want || n[PathBlock] != 0 {
			t.Fatalf("every %d: %v stage samples (spin, block) for %d requests, want %d, 0", every, n, served, want)
		}
		var lat uint64
		for _, v := range c.Latency {
			lat += v
		}
		if lat != want {
			t.Fatalf("every %d: %d latency samples, want %d", every, lat, want)
		}
	}
}

// A stamped wait stamps the kernel's return, allocates nothing, and the
// goroutine runs after it.
func TestWaitStampedNoAlloc(t *testing.T) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	wt, err := newWaiter(efd)
	if err != nil {
		t.Fatal(err)
	}
	defer wt.close()
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	if _, err := unix.Write(efd, one); err != nil {
		t.Fatal(err)
	}
	var stamp int64
	allocs := testing.AllocsPerRun(100, func() {
		before := nanotime()
		if err := wt.wait(&stamp); err != nil {
			t.Fatal(err)
		}
		if after := nanotime(); stamp < before || stamp > after {
			t.Fatalf("stamp %d outside the wait [%d, %d]", stamp, before, after)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per stamped wait, want 0", allocs)
	}
}

// A blocking worker's sampled requests are recorded on the block path
// with their wake stages, and the stages add up.
func TestWorkerStagesBlockPath(t *testing.T) {
	const n = 64
	r := startWorker(t, 1, WorkerConfig{Spin: -1, LatencyEvery: 1})
	for range n {
		// Give the worker time to block (it is not an error if it has not:
		// that request is then counted on the spin path).
		time.Sleep(200 * time.Microsecond)
		r.roundTrip(t, 0, true)
	}
	if err := r.shutdown(t); err != nil {
		t.Fatalf("run returned %v", err)
	}
	var c Counters
	r.w.st.Snapshot(&c)
	got := checkStageSums(t, &c)
	if got[PathSpin]+got[PathBlock] != n {
		t.Fatalf("%v stage samples, want %d in all", got, n)
	}
	if got[PathBlock] == 0 {
		t.Fatalf("no request recorded on the block path in %d blocking round trips", n)
	}
	if c.StageSum[PathBlock][StageRunToClaim] == 0 || c.StageSum[PathBlock][StageTotal] <= c.StageSum[PathBlock][StageHandle] {
		t.Fatalf("block path sums %v: no time before the claim", c.StageSum[PathBlock])
	}
}
