package bench

import (
	"testing"
)

// BenchmarkScenarios runs every scenario as a Go benchmark: b.N operations
// (split over the scenario's vCPUs) in one trial. ns/op is the wall time of
// the measured part per operation, all vCPUs together (set-up and warm-up
// excluded); it also reports the median and p99 latency, the request rate
// and process-wide allocations per request. For the side-by-side report
// with ratios, use godm-lab bench.
func BenchmarkScenarios(b *testing.B) {
	for _, s := range Scenarios() {
		b.Run(s.Name, func(b *testing.B) {
			r, err := s.Run(max(b.N, max(s.vcpus, 1)))
			if err != nil {
				b.Fatal(err)
			}
			sum := r.Summarize()
			b.ReportMetric(float64(r.Elapsed.Nanoseconds())/float64(r.Ops), "ns/op")
			b.ReportMetric(float64(sum.Median.Nanoseconds()), "median-ns")
			b.ReportMetric(float64(sum.P99.Nanoseconds()), "p99-ns")
			b.ReportMetric(sum.ReqPerSec, "req/s")
			if r.AllocsPerReq >= 0 {
				b.ReportMetric(r.AllocsPerReq, "allocs/req")
			}
		})
	}
}
