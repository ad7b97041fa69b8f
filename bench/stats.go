package bench

import (
	"math"
	"slices"
	"time"
)

// Result is the outcome of one scenario run.
type Result struct {
	// Name identifies the scenario.
	Name string
	// Ops is the number of round trips (or requests) measured.
	Ops int
	// Elapsed is the wall time of the measured part.
	Elapsed time.Duration
	// Samples are per-operation latencies (possibly a subset of Ops).
	Samples []time.Duration
	// AllocsPerOp is the average number of heap allocations per operation
	// in the process during the measured part (-1 if not measured).
	AllocsPerOp float64
}

// Summary is a latency distribution summary.
type Summary struct {
	Median, P99, P999, Min, Max time.Duration
	// OpsPerSec is Ops/Elapsed.
	OpsPerSec float64
}

// Summarize computes the summary of r. It sorts a copy of the samples.
func (r Result) Summarize() Summary {
	var s Summary
	if r.Elapsed > 0 {
		s.OpsPerSec = float64(r.Ops) / r.Elapsed.Seconds()
	}
	if len(r.Samples) == 0 {
		return s
	}
	d := slices.Clone(r.Samples)
	slices.Sort(d)
	s.Min, s.Max = d[0], d[len(d)-1]
	s.Median = quantile(d, 0.5)
	s.P99 = quantile(d, 0.99)
	s.P999 = quantile(d, 0.999)
	return s
}

// quantile returns the q-quantile of sorted samples (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}
