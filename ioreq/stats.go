package ioreq

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Kind indexes the per-type request counters.
type Kind uint8

// Request kinds counted by Stats.
const (
	KindPIO Kind = iota
	KindMMIO
	KindPCIConfig
	KindTimeOffset
	KindInvalidate
	KindOther // unknown types (answered as bad requests)
	NumKinds
)

func kindOf(t Type) Kind {
	switch t {
	case TypePIO:
		return KindPIO
	case TypeCopy:
		return KindMMIO
	case TypePCIConfig:
		return KindPCIConfig
	case TypeTimeOffset:
		return KindTimeOffset
	case TypeInvalidate:
		return KindInvalidate
	}
	return KindOther
}

// String implements fmt.Stringer.
func (k Kind) String() string {
	switch k {
	case KindPIO:
		return "pio"
	case KindMMIO:
		return "mmio"
	case KindPCIConfig:
		return "pci-config"
	case KindTimeOffset:
		return "timeoffset"
	case KindInvalidate:
		return "invalidate"
	}
	return "other"
}

// LatencyBuckets is the number of latency histogram buckets. Bucket i
// counts requests handled in [2^i, 2^(i+1)) nanoseconds (bucket 0 also
// counts 0 ns; the last bucket counts everything longer).
const LatencyBuckets = 32

// Counters is a snapshot of Stats (plain values, safe to copy).
type Counters struct {
	// Sync counts synchronous requests handled, by kind.
	Sync [NumKinds]uint64
	// Buffered counts buffered-ring entries handled, by kind (an 8-byte
	// entry counts once).
	Buffered [NumKinds]uint64
	// Reps counts the individual repetitions of count>1 requests.
	Reps uint64
	// BadSize counts requests with a size their type does not allow.
	BadSize uint64
	// BadCount counts requests with count 0 or above MaxCount.
	BadCount uint64
	// BadType counts requests of unknown type.
	BadType uint64
	// BadPCIReg counts PCI configuration accesses beyond 4 KiB.
	BadPCIReg uint64
	// MemFaults counts rep/data_is_ptr elements whose guest buffer was not
	// RAM (served from the MMIO space instead: all-ones or dropped).
	MemFaults uint64
	// LostResponses counts responses not written because the slot had left
	// INPROCESS under the worker.
	LostResponses uint64
	// BufferedIncomplete counts 8-byte buffered entries missing their
	// second half (skipped).
	BufferedIncomplete uint64
	// BufferedOverrun counts ring states with more than a ring's worth of
	// entries (the entries are skipped).
	BufferedOverrun uint64
	// BufferedPasses counts drain passes that found entries; BufferedFull
	// counts the passes that stopped at the per-pass bound.
	BufferedPasses, BufferedFull uint64
	// Wakeups counts blocking waits that returned; SpinHits counts requests
	// found while spinning.
	Wakeups, SpinHits uint64
	// NotifyErrors and EventErrors count failed event-channel notifications
	// and reads/unmasks.
	NotifyErrors, EventErrors uint64
	// Latency is the histogram of synchronous request service times, from
	// claim to response, of the sampled requests (WorkerConfig's
	// sampling); LatencySum is their sum in nanoseconds.
	Latency    [LatencyBuckets]uint64
	LatencySum uint64
	// Stages are the per-stage histograms of the sampled synchronous
	// requests (the same sampling as Latency), by the path that served
	// them (PathSpin, PathBlock) and stage (StageWakeToRun ... StageTotal),
	// with the same buckets as Latency; StageSum are their sums in
	// nanoseconds. For every path, the stage sums other than StageTotal
	// add up to StageTotal's.
	Stages   [NumPaths][NumStages][LatencyBuckets]uint64
	StageSum [NumPaths][NumStages]uint64
	// Split says where the time of the requests in each bucket of a
	// path's StageTotal histogram went: Split[p][b][s] is the sum in
	// nanoseconds of stage s over the requests whose total fell in bucket
	// b (Split[p][b][StageTotal] is their total). So the slow requests'
	// time can be told apart from the fast ones'.
	Split [NumPaths][LatencyBuckets][NumStages]uint64
}

// Path says how a sampled request reached the worker.
type Path uint8

// Paths of Counters.Stages.
const (
	// PathSpin: the worker was awake (spinning, or still serving) when it
	// found the request; its wake stages are zero.
	PathSpin Path = iota
	// PathBlock: the worker had blocked in epoll since its last request.
	PathBlock
	NumPaths
)

// String implements fmt.Stringer.
func (p Path) String() string {
	if p == PathBlock {
		return "block"
	}
	return "spin"
}

// Stage is one part of a sampled request's time in the worker.
type Stage uint8

// Stages of Counters.Stages, in the order a request passes them.
const (
	// StageWakeToRun: from epoll_wait's return in the kernel to the
	// worker's goroutine running again: the Go runtime's exitsyscall,
	// which must find a P if sysmon handed the worker's away while it
	// slept (0 for a wait that keeps its P, WorkerConfig.KeepP).
	StageWakeToRun Stage = iota
	// StageRunToClaim: from running again to the request claimed from its
	// slot (the pause check, a buffered-ring pass, the slot scan).
	StageRunToClaim
	// StageHandle: the buffered writes queued before it, and dispatching
	// the request to its device.
	StageHandle
	// StageRespond: writing the response into the slot.
	StageRespond
	// StageNotify: the event-channel notify (on Xen, an ioctl) until it
	// returned; on a busy host it includes the time the thread it woke
	// (the vCPU's) ran instead of the worker.
	StageNotify
	// StageTotal: the sum of the above (the worker's whole share of the
	// round trip, from its wake-up or claim to the notify's return).
	StageTotal
	NumStages
)

// String implements fmt.Stringer.
func (s Stage) String() string {
	switch s {
	case StageWakeToRun:
		return "wake-to-run"
	case StageRunToClaim:
		return "run-to-claim"
	case StageHandle:
		return "handle"
	case StageRespond:
		return "respond"
	case StageNotify:
		return "notify"
	}
	return "total"
}

// StageQuantile is LatencyQuantile for one path's stage histogram.
func (c *Counters) StageQuantile(p Path, s Stage, q float64) time.Duration {
	return quantile(c.Stages[p][s][:], q)
}

// Total returns the number of synchronous plus buffered requests.
func (c *Counters) Total() uint64 {
	var n uint64
	for i := range c.Sync {
		n += c.Sync[i] + c.Buffered[i]
	}
	return n
}

// add adds o into c.
func (c *Counters) add(o *Counters) {
	for i := range c.Sync {
		c.Sync[i] += o.Sync[i]
		c.Buffered[i] += o.Buffered[i]
	}
	c.Reps += o.Reps
	c.BadSize += o.BadSize
	c.BadCount += o.BadCount
	c.BadType += o.BadType
	c.BadPCIReg += o.BadPCIReg
	c.MemFaults += o.MemFaults
	c.LostResponses += o.LostResponses
	c.BufferedIncomplete += o.BufferedIncomplete
	c.BufferedOverrun += o.BufferedOverrun
	c.BufferedPasses += o.BufferedPasses
	c.BufferedFull += o.BufferedFull
	c.Wakeups += o.Wakeups
	c.SpinHits += o.SpinHits
	c.NotifyErrors += o.NotifyErrors
	c.EventErrors += o.EventErrors
	for i := range c.Latency {
		c.Latency[i] += o.Latency[i]
	}
	c.LatencySum += o.LatencySum
	for p := range c.Stages {
		for st := range c.Stages[p] {
			for i := range c.Stages[p][st] {
				c.Stages[p][st][i] += o.Stages[p][st][i]
			}
			c.StageSum[p][st] += o.StageSum[p][st]
		}
		for b := range c.Split[p] {
			for st := range c.Split[p][b] {
				c.Split[p][b][st] += o.Split[p][b][st]
			}
		}
	}
}

// Stats holds the counters of one worker (or of a test's dispatcher). The
// owner updates it with atomic adds; anyone may Snapshot it concurrently.
// The zero value is ready to use.
type Stats struct {
	sync, buffered                       [NumKinds]atomic.Uint64
	reps, badSize, badCount, badType     atomic.Uint64
	badPCIReg, memFaults, lostResponses  atomic.Uint64
	bufIncomplete, bufOverrun, bufPasses atomic.Uint64
	bufFull, wakeups, spinHits           atomic.Uint64
	notifyErrors, eventErrors            atomic.Uint64
	latency                              [LatencyBuckets]atomic.Uint64
	latencySum                           atomic.Uint64
	stages                               [NumPaths][NumStages][LatencyBuckets]atomic.Uint64
	stageSum                             [NumPaths][NumStages]atomic.Uint64
	split                                [NumPaths][LatencyBuckets][NumStages]atomic.Uint64
	_                                    [64]byte // keep neighbours off the last cache line
}

// Snapshot copies the counters into dst (adding nothing, allocating
// nothing).
func (s *Stats) Snapshot(dst *Counters) {
	*dst = Counters{}
	s.AddTo(dst)
}

// AddTo adds the counters into dst, for summing several workers.
func (s *Stats) AddTo(dst *Counters) {
	var c Counters
	for i := range c.Sync {
		c.Sync[i] = s.sync[i].Load()
		c.Buffered[i] = s.buffered[i].Load()
	}
	c.Reps = s.reps.Load()
	c.BadSize = s.badSize.Load()
	c.BadCount = s.badCount.Load()
	c.BadType = s.badType.Load()
	c.BadPCIReg = s.badPCIReg.Load()
	c.MemFaults = s.memFaults.Load()
	c.LostResponses = s.lostResponses.Load()
	c.BufferedIncomplete = s.bufIncomplete.Load()
	c.BufferedOverrun = s.bufOverrun.Load()
	c.BufferedPasses = s.bufPasses.Load()
	c.BufferedFull = s.bufFull.Load()
	c.Wakeups = s.wakeups.Load()
	c.SpinHits = s.spinHits.Load()
	c.NotifyErrors = s.notifyErrors.Load()
	c.EventErrors = s.eventErrors.Load()
	for i := range c.Latency {
		c.Latency[i] = s.latency[i].Load()
	}
	c.LatencySum = s.latencySum.Load()
	for p := range c.Stages {
		for st := range c.Stages[p] {
			for i := range c.Stages[p][st] {
				c.Stages[p][st][i] = s.stages[p][st][i].Load()
			}
			c.StageSum[p][st] = s.stageSum[p][st].Load()
		}
		for b := range c.Split[p] {
			for st := range c.Split[p][b] {
				c.Split[p][b][st] = s.split[p][b][st].Load()
			}
		}
	}
	dst.add(&c)
}

// bucketOf is the histogram bucket of d nanoseconds.
func bucketOf(d int64) int {
	b := 0
	if d > 0 {
		b = bits.Len64(uint64(d)) - 1
	}
	return min(b, LatencyBuckets-1)
}

// observe records one synchronous request's service time.
func (s *Stats) observe(d time.Duration) {
	s.latency[bucketOf(int64(d))].Add(1)
	if d > 0 {
		s.latencySum.Add(uint64(d))
	}
}

// stamps are the clock readings (runtime nanotime, ns) of one sampled
// request: wake is when the kernel returned from the wait and run when the
// goroutine ran again (both 0 when the worker did not block before it),
// then claimed, handled, responded and done (the notify returned).
type stamps struct {
	wake, run, claimed, handled, responded, done int64
}

// observeStages records a sampled request's stages. A stamp that went
// backwards (it cannot on one thread's monotonic clock) counts as 0.
func (s *Stats) observeStages(t *stamps) {
	p := PathSpin
	var d [NumStages]int64
	if t.wake != 0 && t.run != 0 {
		p = PathBlock
		d[StageWakeToRun] = max(t.run-t.wake, 0)
		d[StageRunToClaim] = max(t.claimed-t.run, 0)
	}
	d[StageHandle] = max(t.handled-t.claimed, 0)
	d[StageRespond] = max(t.responded-t.handled, 0)
	d[StageNotify] = max(t.done-t.responded, 0)
	d[StageTotal] = d[StageWakeToRun] + d[StageRunToClaim] + d[StageHandle] + d[StageRespond] + d[StageNotify]
	tb := bucketOf(d[StageTotal])
	for st, v := range d {
		s.stages[p][st][bucketOf(v)].Add(1)
		s.stageSum[p][st].Add(uint64(v))
		s.split[p][tb][st].Add(uint64(v))
	}
}

// LatencyQuantile returns an upper bound (the top of the bucket) of the
// q-quantile (0..1) of the latency histogram in c, or 0 if it is empty.
func (c *Counters) LatencyQuantile(q float64) time.Duration {
	return quantile(c.Latency[:], q)
}

// quantile is LatencyQuantile of histogram h.
func quantile(h []uint64, q float64) time.Duration {
	var total uint64
	for _, n := range h {
		total += n
	}
	if total == 0 {
		return 0
	}
	want := uint64(q * float64(total))
	if want >= total {
		want = total - 1
	}
	var seen uint64
	for i, n := range h {
		seen += n
		if seen > want {
			return time.Duration(uint64(1) << (i + 1))
		}
	}
	return time.Duration(uint64(1) << LatencyBuckets)
}
