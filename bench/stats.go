package bench

import (
	"math"
	"slices"
	"time"
)

// Result is the outcome of one scenario: one trial, or several merged.
type Result struct {
	// Name identifies the scenario.
	Name string
	// Ops is the number of operations measured (round trips, bursts,
	// batches of bus accesses).
	Ops int
	// Requests is the number of guest requests (or accesses) those
	// operations made; the rate reported is Requests/Elapsed. Zero means
	// Ops.
	Requests int
	// Elapsed is the wall time of the measured part.
	Elapsed time.Duration
	// Samples are per-operation latencies.
	Samples []time.Duration
	// AllocsPerReq is the number of heap allocations per request in the
	// whole process (simulator included) during the measured part, from
	// runtime.MemStats; -1 if not measured.
	AllocsPerReq float64
	// Trials holds each trial's median and rate when Results were merged.
	Trials []Trial
	// Stages is godm's workers' stage record of the measured part (nil
	// for other designs).
	Stages *Stages
}

// Trial is the summary of one trial of a merged Result.
type Trial struct {
	Median    time.Duration
	ReqPerSec float64
}

// Summary is a latency distribution summary.
type Summary struct {
	Median, P99, P999, Min, Max time.Duration
	// P25, P75 and P90 are the other quartiles and the 90th percentile.
	P25, P75, P90 time.Duration
	// ReqPerSec is Requests/Elapsed.
	ReqPerSec float64
}

// requests returns Requests, defaulting to Ops.
func (r Result) requests() int {
	if r.Requests > 0 {
		return r.Requests
	}
	return r.Ops
}

// Summarize computes the summary of r. It sorts a copy of the samples.
func (r Result) Summarize() Summary {
	var s Summary
	if r.Elapsed > 0 {
		s.ReqPerSec = float64(r.requests()) / r.Elapsed.Seconds()
	}
	if len(r.Samples) == 0 {
		return s
	}
	d := slices.Clone(r.Samples)
	slices.Sort(d)
	s.Min, s.Max = d[0], d[len(d)-1]
	s.Median = quantile(d, 0.5)
	s.P25 = quantile(d, 0.25)
	s.P75 = quantile(d, 0.75)
	s.P90 = quantile(d, 0.90)
	s.P99 = quantile(d, 0.99)
	s.P999 = quantile(d, 0.999)
	return s
}

// Merge pools the trials of one scenario: samples, operations and time add
// up, allocations are averaged over all requests, and each trial's median
// and rate are kept for the spread.
func Merge(trials []Result) Result {
	if len(trials) == 0 {
		return Result{}
	}
	m := Result{Name: trials[0].Name, AllocsPerReq: 0}
	var allocs float64
	for _, t := range trials {
		s := t.Summarize()
		m.Trials = append(m.Trials, Trial{Median: s.Median, ReqPerSec: s.ReqPerSec})
		m.Ops += t.Ops
		m.Requests += t.requests()
		m.Elapsed += t.Elapsed
		m.Samples = append(m.Samples, t.Samples...)
		if t.AllocsPerReq < 0 {
			m.AllocsPerReq = -1
		}
		allocs += t.AllocsPerReq * float64(t.requests())
		if t.Stages != nil {
			if m.Stages == nil {
				m.Stages = &Stages{}
			}
			m.Stages.add(t.Stages)
		}
	}
	if m.AllocsPerReq == 0 && m.Requests > 0 {
		m.AllocsPerReq = allocs / float64(m.Requests)
	}
	return m
}

// Spread returns (max-min)/median of the trials' medians and of their
// rates: how far apart repeated trials landed (0 for a single trial).
func (r Result) Spread() (latency, rate float64) {
	if len(r.Trials) < 2 {
		return 0, 0
	}
	med := make([]float64, len(r.Trials))
	rates := make([]float64, len(r.Trials))
	for i, t := range r.Trials {
		med[i], rates[i] = float64(t.Median), t.ReqPerSec
	}
	return relSpread(med), relSpread(rates)
}

func relSpread(v []float64) float64 {
	slices.Sort(v)
	mid := v[len(v)/2]
	if len(v)%2 == 0 {
		mid = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	if mid == 0 {
		return 0
	}
	return (v[len(v)-1] - v[0]) / mid
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
