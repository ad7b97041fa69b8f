package dmcontract

import (
	"math"
	"strings"
	"testing"

	"godm/internal/metrics"
)

func TestIoreqStagesText(t *testing.T) {
	bounds := []float64{1e-6, 2e-6, math.Inf(1)}
	lat := metrics.Family{Name: "godm_ioreq_latency_seconds", Type: metrics.Histogram}
	lat.AddHistogram(bounds, []uint64{4, 0, 0}, 2e-6)
	st := metrics.Family{Name: "godm_ioreq_stage_seconds", Type: metrics.Histogram}
	st.AddHistogram(bounds, []uint64{0, 9, 1}, 20e-6, "path", "block", "stage", "wake-to-run")
	got := IoreqStagesText([]metrics.Family{st, lat})
	want := "ioreq-stage path=all stage=service n=4 mean_ns=500 p50_ns=1000 p90_ns=1000 p99_ns=1000\r\n" +
		"ioreq-stage path=block stage=wake-to-run n=10 mean_ns=2000 p50_ns=2000 p90_ns=-1 p99_ns=-1\r\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if got := IoreqStagesText(nil); !strings.HasPrefix(got, "no ioreq histograms") {
		t.Fatalf("no families: %q", got)
	}
}
