package metrics

import (
	"bufio"
	"io"
	"math"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func sample() []Family {
	a := Family{Name: "godm_b_total", Type: Counter, Help: "B with a \\ and\na line feed."}
	a.Add(7, "device", `se"r\ial`+"\n0", "counter", "tx")
	a.Add(0)
	h := Family{Name: "godm_a_seconds", Type: Histogram, Help: "A."}
	h.AddHistogram([]float64{0.001, 0.01, math.Inf(1)}, []uint64{2, 3, 1}, 0.042, "kind", "pio")
	return []Family{a, h}
}

func TestWriteText(t *testing.T) {
	var b strings.Builder
	if err := WriteText(&b, sample()); err != nil {
		t.Fatal(err)
	}
	want := `# HELP godm_a_seconds A.
# TYPE godm_a_seconds histogram
godm_a_seconds_bucket{kind="pio",le="0.001"} 2
godm_a_seconds_bucket{kind="pio",le="0.01"} 5
godm_a_seconds_bucket{kind="pio",le="+Inf"} 6
godm_a_seconds_sum{kind="pio"} 0.042
godm_a_seconds_count{kind="pio"} 6
# HELP godm_b_total B with a \\ and\na line feed.
# TYPE godm_b_total counter
godm_b_total{device="se\"r\\ial\n0",counter="tx"} 7
godm_b_total 0
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	checkExposition(t, b.String())
}

// A histogram whose last bound is finite gets the +Inf bucket.
func TestHistogramInf(t *testing.T) {
	var f Family
	f.AddHistogram([]float64{1, 2}, []uint64{1, 1}, 2.5)
	var names []string
	for _, s := range f.Samples {
		names = append(names, s.Suffix)
	}
	if got := strings.Join(names, " "); got != "_bucket _bucket _bucket _sum _count" || f.Samples[2].Labels[0].Value != "+Inf" || f.Samples[2].Value != 2 {
		t.Errorf("samples %v", f.Samples)
	}
}

// checkExposition checks every line against the text format's grammar
// (Prometheus "Exposition formats", text format 0.0.4).
func checkExposition(t *testing.T, text string) {
	t.Helper()
	comment := regexp.MustCompile(`^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped))$`)
	sampleRe := regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*")(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*")*\})? ([-+]?[0-9.eE+-]+|[+-]Inf|NaN)$`)
	if !strings.HasSuffix(text, "\n") {
		t.Error("exposition does not end with a line feed")
	}
	for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if !comment.MatchString(l) && !sampleRe.MatchString(l) {
			t.Errorf("not a valid exposition line: %q", l)
		}
	}
}

func TestListenRefusesNonLoopback(t *testing.T) {
	for _, a := range []string{"0.0.0.0:9100", ":9100", "10.1.2.3:9100", "tcp:[::]:9100", "example.com:80", "unix:", "9100", "http://127.0.0.1:9100"} {
		if ln, err := Listen(a); err == nil {
			ln.Close()
			t.Errorf("Listen(%q) accepted", a)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("Listen(%q): error of more than one line: %q", a, err)
		}
	}
}

func get(t *testing.T, network, addr, req string) string {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(bufio.NewReader(c))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestServe(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "unix:" + filepath.Join(t.TempDir(), "m.sock")} {
		ln, err := Listen(addr)
		if err != nil {
			t.Fatal(err)
		}
		gathered := 0
		s := Serve(ln, func() []Family { gathered++; return sample() })
		network := s.Addr().Network()
		a := s.Addr().String()
		resp := get(t, network, a, "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n")
		head, body, _ := strings.Cut(resp, "\r\n\r\n")
		if !strings.HasPrefix(head, "HTTP/1.1 200 OK\r\n") || !strings.Contains(head, "Content-Type: text/plain; version=0.0.4") {
			t.Errorf("%s: head %q", addr, head)
		}
		checkExposition(t, body)
		if !strings.Contains(body, `godm_a_seconds_count{kind="pio"} 6`) {
			t.Errorf("body %q", body)
		}
		for req, status := range map[string]string{
			"GET /other HTTP/1.1\r\n\r\n":    "404",
			"POST /metrics HTTP/1.1\r\n\r\n": "405",
			"garbage\r\n\r\n":                "400",
			"GET /metrics HTTP/1.1\r\nX: " + strings.Repeat("a", 10000) + "\r\n\r\n": "431",
			strings.Repeat("G", 9000): "400",
		} {
			if got := get(t, network, a, req); !strings.HasPrefix(got, "HTTP/1.1 "+status) {
				t.Errorf("%s: %.30q -> %.40q, want %s", addr, req, got, status)
			}
		}
		if gathered != 1 {
			t.Errorf("gathered %d times, want once (errors gather nothing)", gathered)
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		if _, err := net.Dial(network, a); err == nil {
			t.Errorf("%s: still accepting after Close", addr)
		}
	}
}

func TestHistogramsReadBack(t *testing.T) {
	f := Family{Name: "godm_x_seconds", Type: Histogram, Help: "x"}
	bounds := []float64{1, 2, 4, math.Inf(1)}
	f.AddHistogram(bounds, []uint64{1, 0, 8, 1}, 30, "path", "block")
	f.AddHistogram(bounds, []uint64{0, 0, 0, 0}, 0, "path", "spin")
	other := Family{Name: "godm_y_seconds", Type: Histogram, Help: "y"}
	other.AddHistogram(bounds, []uint64{5, 0, 0, 0}, 1)
	hs := Histograms([]Family{other, f}, "godm_x_seconds")
	if len(hs) != 2 {
		t.Fatalf("%d histograms, want 2", len(hs))
	}
	b, s := hs[0], hs[1]
	if len(b.Labels) != 1 || b.Labels[0] != (Label{"path", "block"}) || b.Count != 10 || b.Sum != 30 {
		t.Fatalf("block histogram %+v", b)
	}
	for _, tt := range []struct{ q, want float64 }{{0, 1}, {0.1, 4}, {0.5, 4}, {0.85, 4}, {0.9, math.Inf(1)}} {
		if got := b.Quantile(tt.q); got != tt.want {
			t.Errorf("Quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if s.Count != 0 || s.Quantile(0.5) != 0 {
		t.Errorf("empty histogram: count %v, median %v", s.Count, s.Quantile(0.5))
	}
	if Histograms([]Family{other}, "godm_x_seconds") != nil {
		t.Error("histograms of a missing family")
	}
}
