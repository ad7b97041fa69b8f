package bench

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"
)

// DefaultTrials is the number of trials of a full run.
const DefaultTrials = 5

// Options configures Run.
type Options struct {
	// Short runs the CI-sized iteration counts.
	Short bool
	// Trials is the number of times every scenario runs; zero means
	// DefaultTrials (1 with Short).
	Trials int
	// Filter, if set, selects the scenarios whose name it matches; the
	// floors and classic loops they are compared with run too.
	Filter *regexp.Regexp
	// Progress receives a line per scenario and trial; nil discards.
	Progress io.Writer
}

// Selected returns the scenarios o selects, with their baselines, in run
// order.
func (o Options) Selected() []*Scenario {
	all := Scenarios()
	if o.Filter == nil {
		return all
	}
	want := map[string]bool{}
	for _, s := range all {
		if o.Filter.MatchString(s.Name) {
			want[s.Name] = true
			if s.Floor != "" {
				want[s.Floor] = true
			}
			if s.Classic != "" {
				want[s.Classic] = true
			}
			if s.Sim != "" {
				want[s.Sim] = true
			}
		}
	}
	var sel []*Scenario
	for _, s := range all {
		if want[s.Name] {
			sel = append(sel, s)
		}
	}
	return sel
}

// Run measures the selected scenarios: every trial runs each of them once,
// in order, so that the baselines and the scenarios compared with them see
// the same machine conditions. It returns the report and the latency
// histograms to draw (for WriteSVG).
func Run(ctx context.Context, o Options) (*Report, []Panel, error) {
	trials := o.Trials
	if trials <= 0 {
		trials = DefaultTrials
		if o.Short {
			trials = 1
		}
	}
	sel := o.Selected()
	if len(sel) == 0 {
		return nil, nil, fmt.Errorf("bench: no scenario matches %v", o.Filter)
	}
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	per := make([][]Result, len(sel))
	for t := range trials {
		for i, s := range sel {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			n := s.Ops
			if o.Short {
				n = s.ShortOps
			}
			fmt.Fprintf(progress, "[trial %d/%d %2d/%d] %-28s ", t+1, trials, i+1, len(sel), s.Name)
			r, err := s.Run(n)
			if err != nil {
				fmt.Fprintln(progress, "FAILED")
				return nil, nil, err
			}
			sum := r.Summarize()
			fmt.Fprintf(progress, "median %-9s req/s %s\n", fmtNS(float64(sum.Median)), fmtRate(sum.ReqPerSec))
			per[i] = append(per[i], r)
		}
	}
	merged := make([]Result, len(sel))
	byName := map[string]*Result{}
	for i := range sel {
		merged[i] = Merge(per[i])
		byName[sel[i].Name] = &merged[i]
	}
	rep := &Report{
		When: time.Now().UTC(),
		Machine: fmt.Sprintf("%s/%s, %d CPUs, GOMAXPROCS %d, %s", runtime.GOOS, runtime.GOARCH,
			runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version()),
		Trials: trials,
		Short:  o.Short,
	}
	for i, s := range sel {
		row := RowOf(merged[i], byName[s.Floor], byName[s.Classic])
		if b := byName[s.Sim]; b != nil {
			if m := b.Summarize().Median; m > 0 {
				row.Sim = s.Sim
				row.VsSim = float64(merged[i].Summarize().Median) / float64(m)
			}
		}
		row.Doc = s.Doc
		row.Dist = s.Dist
		rep.Rows = append(rep.Rows, row)
	}
	rep.Targets = targets(rep)
	var panels []Panel
	for i, s := range sel {
		if s.Plot == "" {
			continue
		}
		j := slices.IndexFunc(panels, func(p Panel) bool { return p.Title == s.Plot })
		if j < 0 {
			panels = append(panels, Panel{Title: s.Plot})
			j = len(panels) - 1
		}
		panels[j].Results = append(panels[j].Results, merged[i])
	}
	return rep, panels, nil
}

// Run measures one trial of n operations.
func (s *Scenario) Run(n int) (Result, error) {
	if s.probe != nil {
		r, err := s.probe(n)
		r.Name = s.Name
		return r, err
	}
	return s.runRig(n)
}

// targets evaluates the goals of the benchmark issue on the rows present.
func targets(rep *Report) []Target {
	var ts []Target
	ratio := func(goal, name string, limit float64, f func(*Row) float64, atMost bool, unit string) {
		r := rep.Row(name)
		if r == nil {
			return
		}
		v := f(r)
		met := v >= limit
		if atMost {
			met = v <= limit
		}
		ts = append(ts, Target{Goal: goal, Row: name, Value: v, Unit: unit, Met: met})
	}
	vsFloor := func(r *Row) float64 { return r.VsFloor }
	vsClassic := func(r *Row) float64 { return r.VsClassic }
	ratio("polled round trip <= 1.5x the cache-line floor", "rt/pio/poll/godm", 1.5, vsFloor, true, "x")
	ratio("blocking round trip <= 1.2x the eventfd floor", "rt/pio/block/godm", 1.2, vsFloor, true, "x")
	for _, m := range []string{"poll", "block"} {
		ratio(">= 2x the classic loop's throughput at 1 vCPU", "tput/1vcpu/"+m+"/godm", 2, vsClassic, false, "x")
	}
	for _, m := range []string{"poll", "block"} {
		one, two := rep.Row("tput/1vcpu/"+m+"/godm"), rep.Row("tput/2vcpu/"+m+"/godm")
		if one != nil && two != nil && one.ReqPerSec > 0 {
			v := two.ReqPerSec / one.ReqPerSec
			ts = append(ts, Target{Goal: "throughput grows with vCPUs up to the cores (2 vCPUs over 1)",
				Row: "tput/2vcpu/" + m + "/godm", Value: v, Unit: "x", Met: v > 1})
		}
	}
	worst, worstRow := -1.0, ""
	for _, r := range rep.Rows {
		if strings.Contains(r.Name, "godm") && r.AllocsPerReq > worst {
			worst, worstRow = r.AllocsPerReq, r.Name
		}
	}
	if worstRow != "" {
		ts = append(ts, Target{Goal: "0 allocations per request (worst godm row)", Row: worstRow, Value: worst, Unit: "",
			Met: worst < 0.01})
	}
	for _, b := range []string{"bus/pio", "bus/mmio", "bus/pci"} {
		ratio("bus dispatch <= 20 ns per access", b, 20, func(r *Row) float64 { return r.MedianNS }, true, "ns")
	}
	return ts
}
