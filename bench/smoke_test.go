package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"godm/ioreq"
	"regexp"
	"strings"
	"testing"
)

// TestShortRun is the CI smoke test: the short version of every scenario,
// with real checks on what came out (counts, samples, report contents) and
// none on timing. The scenarios themselves check every answer the guest
// gets (UART status, test device IDs and magic, rep and buffered data
// landing in the device) and that the server counted every request.
func TestShortRun(t *testing.T) {
	var progress bytes.Buffer
	rep, plot, err := Run(context.Background(), Options{Short: true, Progress: &progress})
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	all := Scenarios()
	if got, want := len(rep.Rows), len(all); got != want {
		t.Fatalf("%d rows, want %d (one per scenario)", got, want)
	}
	if got, want := strings.Count(progress.String(), "\n"), len(all); got != want {
		t.Errorf("%d progress lines, want %d", got, want)
	}
	for i, s := range all {
		r := rep.Rows[i]
		if r.Name != s.Name {
			t.Errorf("row %d is %q, want %q", i, r.Name, s.Name)
			continue
		}
		if r.Ops < s.ShortOps/max(s.vcpus, 1)*max(s.vcpus, 1) || r.Ops == 0 {
			t.Errorf("%s: %d ops, want %d", s.Name, r.Ops, s.ShortOps)
		}
		if r.MedianNS <= 0 || r.P99NS < r.MedianNS || r.P999NS < r.P99NS || r.ReqPerSec <= 0 {
			t.Errorf("%s: implausible summary %+v", s.Name, r)
		}
		if (s.Floor != "") != (r.Floor != "") || (s.Classic != "") != (r.Classic != "") {
			t.Errorf("%s: baselines %q/%q, want %q/%q", s.Name, r.Floor, r.Classic, s.Floor, s.Classic)
		}
		if r.Floor != "" && r.VsFloor <= 0 || r.Classic != "" && r.VsClassic <= 0 {
			t.Errorf("%s: ratios %v %v", s.Name, r.VsFloor, r.VsClassic)
		}
		if s.probe == nil && r.AllocsPerReq < 0 {
			t.Errorf("%s: allocations not measured", s.Name)
		}
		// godm's rows carry the workers' stage record of the sampled
		// requests (one in ioreq.DefaultLatencyEvery), and only they do.
		isGodm := s.design == godmPoll || s.design == godmBlock || s.design == godmBlockHeld || s.design == godmPollWide
		if s.probe == nil && isGodm {
			var n uint64
			for _, st := range r.Stages {
				n += st.N
				if st.SlowN == 0 || st.SlowN > st.N || st.MeanNS[ioreq.StageTotal] < st.MeanNS[ioreq.StageHandle] {
					t.Errorf("%s: implausible stages %+v", s.Name, st)
				}
			}
			if reqs := uint64(r.Ops * s.perOp); n == 0 || n > reqs {
				t.Errorf("%s: %d sampled requests in the stage record for %d requests", s.Name, n, reqs)
			}
		} else if len(r.Stages) != 0 {
			t.Errorf("%s: a stage record for a design that is not godm's", s.Name)
		}
	}
	if len(rep.Targets) < 8 {
		t.Errorf("%d targets evaluated, want every goal: %+v", len(rep.Targets), rep.Targets)
	}

	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"floor/cache-line", "rt/pio/poll/godm", "tput/8vcpu/block/classic", "burst/ring/godm-block",
		"sim/unclaimed", "vs classic", "targets", "bus dispatch", "worker stages", "wake-to-run"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Rows) != len(all) || !back.Short {
		t.Errorf("JSON round trip: %v, %d rows, short %v", err, len(back.Rows), back.Short)
	}
	var svg bytes.Buffer
	if err := WriteSVG(&svg, plot...); err != nil {
		t.Fatal(err)
	}
	curves := 0
	for _, p := range plot {
		curves += len(p.Results)
	}
	if got := strings.Count(svg.String(), "<polyline"); len(plot) != 2 || got != curves || got != 8 {
		t.Errorf("SVG has %d curves for %d plotted scenarios in %d panels, want 8 in 2", got, curves, len(plot))
	}
	for _, want := range []string{panelPoll, panelBlock, "rt/pio/block/classic (median"} {
		if !strings.Contains(svg.String(), want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
}

func TestSelected(t *testing.T) {
	tests := []struct {
		filter string
		want   []string
	}{
		{"^rt/pio/block/godm$", []string{"floor/eventfd", "sim/pio/block/null", "rt/pio/block/godm", "rt/pio/block/classic"}},
		{"^rt/mmio/poll/godm$", []string{"floor/cache-line", "rt/mmio/poll/godm", "rt/mmio/poll/classic"}},
		{"^tput/2vcpu/poll/godm$", []string{"tput/2vcpu/poll/godm", "tput/2vcpu/poll/classic"}},
		{"^bus/", []string{"bus/pio", "bus/mmio", "bus/pci"}},
		{"nothing-matches", nil},
	}
	for _, tc := range tests {
		var got []string
		for _, s := range (Options{Filter: regexp.MustCompile(tc.filter)}).Selected() {
			got = append(got, s.Name)
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("Selected(%q) = %v, want %v", tc.filter, got, tc.want)
		}
	}
	if _, _, err := Run(context.Background(), Options{Short: true, Filter: regexp.MustCompile("nothing-matches")}); err == nil {
		t.Error("Run with an empty selection succeeded")
	}
}

func TestScenarioNamesUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Scenarios() {
		if seen[s.Name] {
			t.Errorf("duplicate scenario %q", s.Name)
		}
		seen[s.Name] = true
		if s.Ops <= 0 || s.ShortOps <= 0 || s.Doc == "" {
			t.Errorf("%s: ops %d short %d doc %q", s.Name, s.Ops, s.ShortOps, s.Doc)
		}
	}
	for _, s := range Scenarios() {
		for _, b := range []string{s.Floor, s.Classic} {
			if b != "" && !seen[b] {
				t.Errorf("%s compares with unknown scenario %q", s.Name, b)
			}
		}
	}
}

// TestRunCancelled checks that a cancelled context stops the run between
// scenarios.
func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Run(ctx, Options{Short: true}); err != context.Canceled {
		t.Errorf("Run on a cancelled context = %v, want context.Canceled", err)
	}
}

// TestBurstOrdering runs more bursts than the smoke run: each burst's final
// read must see the burst's last buffered write, for every design (the
// classic loop once answered before draining the ring).
func TestBurstOrdering(t *testing.T) {
	const bursts = 1000
	for _, s := range Scenarios() {
		if !strings.HasPrefix(s.Name, "burst/") {
			continue
		}
		r, err := s.Run(bursts)
		if err != nil {
			t.Fatal(err)
		}
		if r.Ops != bursts || r.Requests != bursts*(burstWrites+1) || len(r.Samples) != bursts {
			t.Errorf("%s: ops %d requests %d samples %d", s.Name, r.Ops, r.Requests, len(r.Samples))
		}
	}
}

// TestVerifyRep checks that the rep scenario's check can fail: before any
// rep, the test device's scratch register is not the buffer's last dword.
func TestVerifyRep(t *testing.T) {
	r, err := newRig(1, godmBlock)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := r.close(); err != nil {
			t.Error(err)
		}
	}()
	if err := r.fillRepBuffer(); err != nil {
		t.Fatal(err)
	}
	if err := verifyRep(r); err == nil {
		t.Error("verifyRep passed before the rep")
	}
	if err := opRep(r, r.dom.VCPU(0), 0, 0, true); err != nil {
		t.Fatal(err)
	}
	if err := verifyRep(r); err != nil {
		t.Error(err)
	}
}
