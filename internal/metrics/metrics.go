// Package metrics is godm's observability output: counters gathered off
// the request path into metric families, written in the Prometheus text
// exposition format (version 0.0.4) and served on an opt-in endpoint
// (Serve: loopback TCP or a Unix socket only, plain HTTP/1.x GET).
//
// The format and the little HTTP it needs are written here rather than
// with prometheus/client_golang: that library (with net/http, protobuf
// and its other dependencies) grew the godm binary from 6.3 MB to 12.1 MB
// (CGO_ENABLED=0 go build ./cmd/godm, measured when this was written),
// net/http alone to 8.3 MB, and godm needs neither a registry nor a
// general web server to print a few hundred counters.
package metrics

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Metric types (the TYPE line).
const (
	Counter   = "counter"
	Gauge     = "gauge"
	Histogram = "histogram"
)

// Label is one name="value" pair.
type Label struct{ Name, Value string }

// Sample is one value of a family. Suffix is appended to the family's
// name ("_bucket", "_sum", "_count" of a histogram; "" otherwise).
type Sample struct {
	Suffix string
	Labels []Label
	Value  float64
}

// Family is one metric: its name (godm_...), help text, type and samples.
type Family struct {
	Name, Help, Type string
	Samples          []Sample
}

// Add appends a sample with labels given as name, value pairs.
func (f *Family) Add(v float64, labels ...string) {
	f.AddSuffix("", v, labels...)
}

// AddSuffix is Add with a name suffix.
func (f *Family) AddSuffix(suffix string, v float64, labels ...string) {
	s := Sample{Suffix: suffix, Value: v}
	for i := 0; i+1 < len(labels); i += 2 {
		s.Labels = append(s.Labels, Label{labels[i], labels[i+1]})
	}
	f.Samples = append(f.Samples, s)
}

// AddHistogram appends a histogram's samples: counts[i] observations fell
// in bucket i, whose upper bound is bounds[i] (ascending; the last bucket
// may be +Inf); sum is the sum of the observations.
func (f *Family) AddHistogram(bounds []float64, counts []uint64, sum float64, labels ...string) {
	var cum uint64
	for i, n := range counts {
		cum += n
		le := "+Inf"
		if i < len(bounds) && !math.IsInf(bounds[i], 1) {
			le = strconv.FormatFloat(bounds[i], 'g', -1, 64)
		}
		f.AddSuffix("_bucket", float64(cum), append(append([]string(nil), labels...), "le", le)...)
	}
	if len(counts) == 0 || (len(bounds) >= len(counts) && !math.IsInf(bounds[len(counts)-1], 1)) {
		f.AddSuffix("_bucket", float64(cum), append(append([]string(nil), labels...), "le", "+Inf")...)
	}
	f.AddSuffix("_sum", sum, labels...)
	f.AddSuffix("_count", float64(cum), labels...)
}

// WriteText writes the families in the text exposition format, in name
// order.
func WriteText(w io.Writer, fams []Family) error {
	sorted := append([]Family(nil), fams...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	var b strings.Builder
	for _, f := range sorted {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.Name, escapeHelp(f.Help), f.Name, f.Type)
		for _, s := range f.Samples {
			b.WriteString(f.Name)
			b.WriteString(s.Suffix)
			if len(s.Labels) > 0 {
				b.WriteByte('{')
				for i, l := range s.Labels {
					if i > 0 {
						b.WriteByte(',')
					}
					b.WriteString(l.Name)
					b.WriteString(`="`)
					b.WriteString(escapeLabel(l.Value))
					b.WriteByte('"')
				}
				b.WriteByte('}')
			}
			b.WriteByte(' ')
			b.WriteString(formatValue(s.Value))
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// escapeHelp escapes a HELP text: backslash and line feed.
func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

// escapeLabel escapes a label value: backslash, double quote, line feed.
func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// JSON returns the families as plain JSON values, the shape QMP's
// x-godm-query-stats answers: [{name, help, type, samples: [{name,
// labels: {..}, value}]}].
func JSON(fams []Family) []map[string]any {
	sorted := append([]Family(nil), fams...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	out := make([]map[string]any, 0, len(sorted))
	for _, f := range sorted {
		samples := make([]map[string]any, 0, len(f.Samples))
		for _, s := range f.Samples {
			labels := make(map[string]string, len(s.Labels))
			for _, l := range s.Labels {
				labels[l.Name] = l.Value
			}
			var v any = s.Value
			if math.IsInf(s.Value, 0) || math.IsNaN(s.Value) {
				v = formatValue(s.Value) // JSON has no infinities
			}
			samples = append(samples, map[string]any{"name": f.Name + s.Suffix, "labels": labels, "value": v})
		}
		out = append(out, map[string]any{"name": f.Name, "help": f.Help, "type": f.Type, "samples": samples})
	}
	return out
}

// HistSummary is one labelled histogram of a family, read back from its
// samples: its labels (without le), count, sum, and the upper bounds
// (le) of the buckets holding its quantiles.
type HistSummary struct {
	Labels     []Label
	Count, Sum float64
	bounds     []float64 // le of each bucket, in order
	cum        []float64 // cumulative count of each bucket
}

// Quantile returns the upper bound of the bucket holding the q-quantile
// (0..1), +Inf if that is the overflow bucket, 0 for an empty histogram.
func (h *HistSummary) Quantile(q float64) float64 {
	if h.Count == 0 {
		return 0
	}
	want := math.Floor(q * h.Count)
	if want >= h.Count {
		want = h.Count - 1
	}
	for i, c := range h.cum {
		if c > want {
			return h.bounds[i]
		}
	}
	return math.Inf(1)
}

// Histograms reads back the histograms of the family named name in fams
// (as AddHistogram wrote them), in the order they were added; nil if
// there is no such family.
func Histograms(fams []Family, name string) []HistSummary {
	var out []HistSummary
	key := func(ls []Label) string {
		var b strings.Builder
		for _, l := range ls {
			if l.Name != "le" {
				b.WriteString(l.Name + "=" + l.Value + ",")
			}
		}
		return b.String()
	}
	idx := map[string]int{}
	for _, f := range fams {
		if f.Name != name || f.Type != Histogram {
			continue
		}
		for _, s := range f.Samples {
			k := key(s.Labels)
			i, ok := idx[k]
			if !ok {
				i = len(out)
				idx[k] = i
				var ls []Label
				for _, l := range s.Labels {
					if l.Name != "le" {
						ls = append(ls, l)
					}
				}
				out = append(out, HistSummary{Labels: ls})
			}
			h := &out[i]
			switch s.Suffix {
			case "_bucket":
				le := math.Inf(1)
				for _, l := range s.Labels {
					if l.Name == "le" && l.Value != "+Inf" {
						if v, err := strconv.ParseFloat(l.Value, 64); err == nil {
							le = v
						}
					}
				}
				h.bounds = append(h.bounds, le)
				h.cum = append(h.cum, s.Value)
			case "_sum":
				h.Sum = s.Value
			case "_count":
				h.Count = s.Value
			}
		}
	}
	return out
}
