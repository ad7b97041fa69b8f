package bench

import (
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 1000; i++ {
		s = append(s, time.Duration(i))
	}
	got := Result{Ops: 1000, Elapsed: time.Second, Samples: s}.Summarize()
	want := Summary{Median: 500, P99: 990, P999: 999, Min: 1, Max: 1000, P25: 250, P75: 750, P90: 900, ReqPerSec: 1000}
	if got != want {
		t.Errorf("Summarize = %+v, want %+v", got, want)
	}
	if got := (Result{}).Summarize(); got != (Summary{}) {
		t.Errorf("empty Summarize = %+v, want zero", got)
	}
}

func TestFloorsRun(t *testing.T) {
	r := CacheLineFloor(1000)
	if r.Ops != 1000 || len(r.Samples) != 1000 || r.Summarize().Median <= 0 {
		t.Errorf("CacheLineFloor: ops %d samples %d median %v", r.Ops, len(r.Samples), r.Summarize().Median)
	}
	e, err := EventfdFloor(1000)
	if err != nil {
		t.Fatal(err)
	}
	if e.Ops != 1000 || len(e.Samples) != 1000 || e.Summarize().Median <= 0 {
		t.Errorf("EventfdFloor: ops %d samples %d median %v", e.Ops, len(e.Samples), e.Summarize().Median)
	}
}
