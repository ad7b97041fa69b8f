package ioreq

import (
	"testing"
	"time"
)

func TestLatencyHistogram(t *testing.T) {
	var st Stats
	for _, d := range []time.Duration{0, 1, 100, 100, 100, 5000, time.Hour * 1000} {
		st.observe(d)
	}
	var c Counters
	st.Snapshot(&c)
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0, 2},     // 0 and 1 ns land in bucket 0: [1, 2)
		{0.5, 128}, // 100 ns: [64, 128)
		{0.8, 8192},
		{1, 1 << LatencyBuckets}, // the overflow bucket
	}
	for _, tt := range tests {
		if got := c.LatencyQuantile(tt.q); got != tt.want {
			t.Errorf("LatencyQuantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	var empty Counters
	if got := empty.LatencyQuantile(0.5); got != 0 {
		t.Errorf("empty histogram quantile = %v, want 0", got)
	}
}

func TestCountersTotalAndKinds(t *testing.T) {
	var st Stats
	st.sync[KindPIO].Add(2)
	st.buffered[KindMMIO].Add(3)
	var a, b Counters
	st.Snapshot(&a)
	st.AddTo(&b)
	st.AddTo(&b)
	if a.Total() != 5 || b.Total() != 10 {
		t.Fatalf("Total = %d, %d; want 5, 10", a.Total(), b.Total())
	}
	want := map[Type]Kind{TypePIO: KindPIO, TypeCopy: KindMMIO, TypePCIConfig: KindPCIConfig,
		TypeTimeOffset: KindTimeOffset, TypeInvalidate: KindInvalidate, 3: KindOther, 255: KindOther}
	for typ, k := range want {
		if got := kindOf(typ); got != k {
			t.Errorf("kindOf(%d) = %v, want %v", typ, got, k)
		}
	}
	names := map[Kind]string{KindPIO: "pio", KindMMIO: "mmio", KindPCIConfig: "pci-config",
		KindTimeOffset: "timeoffset", KindInvalidate: "invalidate", KindOther: "other"}
	for k, n := range names {
		if k.String() != n {
			t.Errorf("Kind(%d).String() = %q, want %q", k, k.String(), n)
		}
	}
}
