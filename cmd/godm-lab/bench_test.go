package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"godm/bench"
)

// TestBenchShort runs godm-lab bench -short on a subset of scenarios (the
// bench package's own smoke test runs all of them) and checks the table,
// the JSON and the SVG it writes.
func TestBenchShort(t *testing.T) {
	dir := t.TempDir()
	js, svg := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.svg")
	var out, errw bytes.Buffer
	args := []string{"bench", "-short", "-scenarios", "^(rt/pio/|tput/2vcpu/poll/godm|bus/pio)", "-json", js, "-svg", svg}
	if err := run(args, &out, &errw); err != nil {
		t.Fatalf("godm-lab bench: %v\n%s%s", err, out.String(), errw.String())
	}
	want := []string{"floor/cache-line", "floor/eventfd", "bus/pio", "sim/pio/poll/null", "sim/pio/block/null", "rt/pio/poll/godm", "rt/pio/poll/classic",
		"rt/pio/block/godm", "rt/pio/block/classic", "tput/2vcpu/poll/godm", "tput/2vcpu/poll/classic"}
	for _, name := range want {
		if !strings.Contains(out.String(), name) {
			t.Errorf("table lacks %q:\n%s", name, out.String())
		}
		if !strings.Contains(errw.String(), name) {
			t.Errorf("progress lacks %q:\n%s", name, errw.String())
		}
	}
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != len(want) || !rep.Short || rep.Trials != 1 || !strings.HasPrefix(rep.Command, "godm-lab bench -short") {
		t.Errorf("JSON report: %d rows (want %d), short %v, trials %d, command %q", len(rep.Rows), len(want), rep.Short, rep.Trials, rep.Command)
	}
	for _, r := range rep.Rows {
		if r.Ops == 0 || r.MedianNS <= 0 {
			t.Errorf("row %s: ops %d median %v", r.Name, r.Ops, r.MedianNS)
		}
	}
	s, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(s, []byte("<svg")) || !bytes.Contains(s, []byte("rt/pio/block/classic")) {
		t.Errorf("SVG malformed: %.200s", s)
	}
}

func TestBenchList(t *testing.T) {
	var out, errw bytes.Buffer
	if err := run([]string{"bench", "-list", "-scenarios", "^bus/"}, &out, &errw); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), "\n"); got != 3 || !strings.Contains(out.String(), "bus/mmio") {
		t.Errorf("godm-lab bench -list -scenarios ^bus/ printed:\n%s", out.String())
	}
}

func TestBenchBadUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "-scenarios", "("}, "-scenarios"},
		{[]string{"bench", "-trials", "-1"}, "-trials -1"},
		{[]string{"bench", "extra"}, `unexpected argument "extra"`},
		{[]string{"bench", "-scenarios", "nothing-matches"}, "no scenario matches"},
		{[]string{"bench", "-short", "-scenarios", "^bus/pio$", "-json", "/nonexistent/dir/r.json"}, "no such file"},
		{[]string{"bench", "-list", "-json", "r.json"}, "-list only lists the scenarios: -json does not apply"},
	} {
		var out, errw bytes.Buffer
		err := run(tc.args, &out, &errw)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("godm-lab %v = %v, want error containing %q", tc.args, err, tc.want)
		}
	}
	var out, errw bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := cmdBench(ctx, []string{"-short"}, &out, &errw); err != context.Canceled {
		t.Errorf("cmdBench on a cancelled context = %v, want context.Canceled", err)
	}
}
