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
	sn := metrics.Family{Name: "godm_ioreq_stage_split_requests_total", Type: metrics.Counter}
	sn.Add(4, "path", "block", "total_le", "2e-06")
	sn.Add(1, "path", "block", "total_le", "+Inf")
	sp := metrics.Family{Name: "godm_ioreq_stage_split_seconds_total", Type: metrics.Counter}
	sp.Add(4e-6, "path", "block", "total_le", "2e-06", "stage", "wake-to-run")
	sp.Add(6e-6, "path", "block", "total_le", "2e-06", "stage", "total")
	sp.Add(3, "path", "block", "total_le", "+Inf", "stage", "total")
	got := IoreqStagesText([]metrics.Family{st, lat, sp, sn})
	want := "ioreq-stage path=all stage=service n=4 mean_ns=500 p50_ns=1000 p90_ns=1000 p99_ns=1000\r\n" +
		"ioreq-stage path=block stage=wake-to-run n=10 mean_ns=2000 p50_ns=2000 p90_ns=-1 p99_ns=-1\r\n" +
		"ioreq-split path=block total_le_ns=2000 n=4 wake-to-run_ns=1000 total_ns=1500\r\n" +
		"ioreq-split path=block total_le_ns=-1 n=1 total_ns=3000000000\r\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if got := IoreqStagesText(nil); !strings.HasPrefix(got, "no ioreq histograms") {
		t.Fatalf("no families: %q", got)
	}
}
