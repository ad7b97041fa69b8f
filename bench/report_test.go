package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

func TestReport(t *testing.T) {
	floor := Result{Name: "floor/x", Ops: 3, Elapsed: 3 * time.Microsecond, Samples: []time.Duration{100, 100, 100}, AllocsPerReq: -1}
	godm := Result{Name: "godm/pio", Ops: 3, Elapsed: 6 * time.Microsecond, Samples: []time.Duration{150, 150, 160}, AllocsPerReq: 0}
	rep := Report{Trials: 1, Rows: []Row{RowOf(floor, nil, nil), RowOf(godm, &floor, &floor)}}
	if got, want := rep.Rows[1].VsFloor, 1.5; got != want {
		t.Errorf("VsFloor = %v, want %v", got, want)
	}
	if got, want := rep.Rows[1].VsClassic, 0.5; got != want {
		t.Errorf("VsClassic = %v, want %v", got, want)
	}
	var tb bytes.Buffer
	if err := rep.WriteTable(&tb); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"godm/pio", "1.50x", "floor/x", "150ns"} {
		if !strings.Contains(tb.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tb.String())
		}
	}
	if strings.Contains(tb.String(), "distribution") {
		t.Errorf("table has a distribution section with no Dist row:\n%s", tb.String())
	}
	// A Dist row gets its percentiles, and their ratios to its floor's.
	rep.Rows[1].Dist = true
	tb.Reset()
	if err := rep.WriteTable(&tb); err != nil {
		t.Fatal(err)
	}
	_, dist, ok := strings.Cut(tb.String(), "distribution")
	if !ok {
		t.Fatalf("table lacks the distribution section:\n%s", tb.String())
	}
	for _, want := range []string{"p25", "p90", "vs floor/x", "1.50x", "1.60x"} {
		if !strings.Contains(dist, want) {
			t.Errorf("distribution lacks %q:\n%s", want, dist)
		}
	}
	var jb bytes.Buffer
	if err := rep.WriteJSON(&jb); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(jb.Bytes(), &back); err != nil || len(back.Rows) != 2 || back.Rows[1].Name != "godm/pio" {
		t.Errorf("JSON round trip: %v %+v", err, back)
	}
	var sb bytes.Buffer
	if err := WriteSVG(&sb, Panel{Title: "p", Results: []Result{floor, godm}}); err != nil {
		t.Fatal(err)
	}
	if s := sb.String(); !strings.HasPrefix(s, "<svg") || strings.Count(s, "<polyline") != 2 || !strings.Contains(s, "godm/pio") {
		t.Errorf("SVG malformed:\n%s", s)
	}
}

// TestLatestReport checks the committed full report (bench/README.md shows
// it): a full run, every row a known scenario, targets evaluated.
func TestLatestReport(t *testing.T) {
	b, err := os.ReadFile("testdata/latest.json")
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Short || rep.Trials < 3 || len(rep.Rows) == 0 || len(rep.Targets) == 0 || rep.Command == "" {
		t.Errorf("latest.json: short %v, %d trials, %d rows, %d targets, command %q", rep.Short, rep.Trials, len(rep.Rows), len(rep.Targets), rep.Command)
	}
	known := map[string]bool{}
	for _, s := range Scenarios() {
		known[s.Name] = true
	}
	for _, r := range rep.Rows {
		if !known[r.Name] {
			t.Errorf("latest.json has row %q, which is no scenario: regenerate it (see README.md)", r.Name)
		}
		if r.Ops == 0 || r.MedianNS <= 0 {
			t.Errorf("latest.json row %s: ops %d median %v", r.Name, r.Ops, r.MedianNS)
		}
	}
	svg, err := os.ReadFile("testdata/latest.svg")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(svg, []byte("<svg")) || !bytes.Contains(svg, []byte("rt/pio/poll/godm")) {
		t.Errorf("latest.svg is not the report's picture")
	}
}
