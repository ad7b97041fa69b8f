package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// Row is one line of a report: a scenario's pooled summary and its ratios
// against the baselines measured in the same run.
type Row struct {
	// Name is the scenario's name and Doc what one operation is.
	Name string `json:"name"`
	Doc  string `json:"doc,omitempty"`
	// Trials is the number of trials pooled.
	Trials int `json:"trials"`
	// Ops is the number of operations measured over all trials.
	Ops int `json:"ops"`
	// MedianNS, P99NS and P999NS are latency percentiles of one
	// operation, in nanoseconds, over the pooled samples.
	MedianNS float64 `json:"median_ns"`
	P99NS    float64 `json:"p99_ns"`
	P999NS   float64 `json:"p999_ns"`
	// MinNS, P25NS, P75NS and P90NS complete the distribution.
	MinNS float64 `json:"min_ns"`
	P25NS float64 `json:"p25_ns"`
	P75NS float64 `json:"p75_ns"`
	P90NS float64 `json:"p90_ns"`
	// Dist marks the rows whose distribution the table prints in full.
	Dist bool `json:"dist,omitempty"`
	// ReqPerSec is guest requests per second over all trials.
	ReqPerSec float64 `json:"req_per_sec"`
	// AllocsPerReq is process-wide heap allocations per request (-1: not
	// measured).
	AllocsPerReq float64 `json:"allocs_per_req"`
	// Spread is (max-min)/median of the per-trial medians; RateSpread the
	// same for the per-trial request rates.
	Spread     float64 `json:"spread"`
	RateSpread float64 `json:"rate_spread"`
	// Floor names the physical floor, and VsFloor is this row's median
	// over the floor's median (1.0 = at the floor).
	Floor   string  `json:"floor,omitempty"`
	VsFloor float64 `json:"vs_floor,omitempty"`
	// Classic names the classic loop's row for the same workload, and
	// VsClassic is this row's request rate over the classic loop's (2.0 =
	// twice the classic loop's throughput).
	Classic   string  `json:"classic,omitempty"`
	VsClassic float64 `json:"vs_classic,omitempty"`
	// Sim names the simulator's own cost for the same access and mode (a
	// responder that answers without dispatching), and VsSim is this
	// row's median over it: how much of the round trip is the server's.
	Sim   string  `json:"sim,omitempty"`
	VsSim float64 `json:"vs_sim,omitempty"`
	// Stages is where godm's workers spent the sampled requests' time,
	// by path (godm rows only).
	Stages []StageRow `json:"stages,omitempty"`
}

// Target is one of the goals the report tracks (not a gate).
type Target struct {
	// Goal states the target.
	Goal string `json:"goal"`
	// Row names the row it is evaluated on.
	Row string `json:"row"`
	// Value is the measured figure, in Unit ("x" for ratios).
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Met says whether the goal was reached in this run.
	Met bool `json:"met"`
}

// Report is a set of rows measured in one run.
type Report struct {
	// When the run ended, and on what machine.
	When    time.Time `json:"when"`
	Machine string    `json:"machine"`
	// Command is the command line that produced the report, if known.
	Command string `json:"command,omitempty"`
	// Load is the host's load average before and after the run, if known
	// (other processes' load makes the figures noisier).
	Load string `json:"load,omitempty"`
	// Revision is the VCS revision of the binary that measured, if known.
	Revision string `json:"revision,omitempty"`
	// Trials is the number of trials per scenario; Short says the
	// CI-sized counts were used.
	Trials int  `json:"trials"`
	Short  bool `json:"short,omitempty"`
	// Rows holds one row per scenario, in run order, and Targets the
	// goals evaluated on them.
	Rows    []Row    `json:"rows"`
	Targets []Target `json:"targets,omitempty"`
}

// RowOf summarises r, comparing its median with floor's and its request
// rate with classic's (either may be nil).
func RowOf(r Result, floor, classic *Result) Row {
	s := r.Summarize()
	row := Row{
		Name:         r.Name,
		Trials:       max(len(r.Trials), 1),
		Ops:          r.Ops,
		MedianNS:     float64(s.Median.Nanoseconds()),
		P99NS:        float64(s.P99.Nanoseconds()),
		P999NS:       float64(s.P999.Nanoseconds()),
		MinNS:        float64(s.Min.Nanoseconds()),
		P25NS:        float64(s.P25.Nanoseconds()),
		P75NS:        float64(s.P75.Nanoseconds()),
		P90NS:        float64(s.P90.Nanoseconds()),
		ReqPerSec:    s.ReqPerSec,
		AllocsPerReq: r.AllocsPerReq,
	}
	row.Spread, row.RateSpread = r.Spread()
	if r.Stages != nil {
		row.Stages = r.Stages.rows()
	}
	if floor != nil {
		if b := floor.Summarize().Median; b > 0 {
			row.Floor = floor.Name
			row.VsFloor = float64(s.Median) / float64(b)
		}
	}
	if classic != nil {
		if b := classic.Summarize().ReqPerSec; b > 0 {
			row.Classic = classic.Name
			row.VsClassic = s.ReqPerSec / b
		}
	}
	return row
}

// Row returns the row called name, or nil.
func (rep *Report) Row(name string) *Row {
	for i := range rep.Rows {
		if rep.Rows[i].Name == name {
			return &rep.Rows[i]
		}
	}
	return nil
}

// WriteTable prints the report as an aligned table, followed by the
// targets.
func (rep *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tops\tmedian\tp99\tp999\treq/s\tallocs/req\tspread\tvs floor\tvs sim\tvs classic\t")
	for _, r := range rep.Rows {
		allocs := "-"
		if r.AllocsPerReq >= 0 {
			allocs = fmt.Sprintf("%.2f", r.AllocsPerReq)
		}
		spread, floor, sim, classic := "-", "-", "-", "-"
		if r.Trials > 1 {
			spread = fmt.Sprintf("±%.0f%%", 50*r.Spread)
		}
		if r.Floor != "" {
			floor = fmt.Sprintf("%.2fx", r.VsFloor)
		}
		if r.Classic != "" {
			classic = fmt.Sprintf("%.2fx", r.VsClassic)
		}
		if r.Sim != "" {
			sim = fmt.Sprintf("%.2fx", r.VsSim)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Name, r.Ops,
			fmtNS(r.MedianNS), fmtNS(r.P99NS), fmtNS(r.P999NS), fmtRate(r.ReqPerSec), allocs, spread, floor, sim, classic)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := rep.writeDist(w); err != nil {
		return err
	}
	if err := rep.writeStages(w); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n"+
		"vs floor:   median latency over the floor's (lower is better): polled rows against\n"+
		"            floor/cache-line, blocking rows against floor/eventfd.\n"+
		"vs sim:     median latency over the simulator's own round trip in the same mode\n"+
		"            (sim/pio/*/null answers without dispatching): what the server adds.\n"+
		"vs classic: request rate over the classic loop's, same workload and vCPU client\n"+
		"            (higher is better).\n"+
		"spread:     half the range of the %d trials' medians, relative to their median.\n"+
		"allocs/req: heap allocations of the whole process (simulator included) per request.\n", rep.Trials)
	if len(rep.Targets) > 0 {
		fmt.Fprintln(w, "\ntargets (goals, not gates):")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, t := range rep.Targets {
			met := "MISSED"
			if t.Met {
				met = "met"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%.2f%s\t%s\n", t.Goal, t.Row, t.Value, t.Unit, met)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "\n%s, %s", rep.Machine, rep.When.UTC().Format(time.RFC3339))
	if rep.Load != "" {
		fmt.Fprintf(w, ", load average %s", rep.Load)
	}
	fmt.Fprintln(w)
	return nil
}

// writeDist prints the full distribution of the rows marked Dist, each
// percentile also as a ratio to the same percentile of the row's floor and
// classic loop when they were measured.
func (rep *Report) writeDist(w io.Writer) error {
	any := false
	for _, r := range rep.Rows {
		any = any || r.Dist
	}
	if !any {
		return nil
	}
	fmt.Fprintln(w, "\ndistribution (latency; then over the floor's and the classic loop's same percentile):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tmin\tp25\tmedian\tp75\tp90\tp99\t")
	pct := func(r *Row) []float64 { return []float64{r.MinNS, r.P25NS, r.MedianNS, r.P75NS, r.P90NS, r.P99NS} }
	for i := range rep.Rows {
		r := &rep.Rows[i]
		if !r.Dist {
			continue
		}
		v := pct(r)
		fmt.Fprintf(tw, "%s\t", r.Name)
		for _, x := range v {
			fmt.Fprintf(tw, "%s\t", fmtNS(x))
		}
		fmt.Fprintln(tw)
		for _, base := range []string{r.Floor, r.Classic} {
			b := rep.Row(base)
			if b == nil {
				continue
			}
			fmt.Fprintf(tw, "  vs %s\t", base)
			for j, x := range pct(b) {
				if x > 0 {
					fmt.Fprintf(tw, "%.2fx\t", v[j]/x)
				} else {
					fmt.Fprint(tw, "-\t")
				}
			}
			fmt.Fprintln(tw)
		}
	}
	return tw.Flush()
}

// WriteJSON writes the report as indented JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

func fmtRate(r float64) string {
	switch {
	case r >= 1e6:
		return fmt.Sprintf("%.2fM", r/1e6)
	case r >= 1e3:
		return fmt.Sprintf("%.1fk", r/1e3)
	}
	return fmt.Sprintf("%.0f", r)
}

func fmtNS(ns float64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.2fms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.2fµs", ns/1e3)
	}
	return fmt.Sprintf("%.0fns", ns)
}

// Panel is one histogram of a picture: a title and the results drawn in it.
type Panel struct {
	Title   string
	Results []Result
}

// WriteSVG draws the latency distributions of the panels' results as
// log-scale histograms, one panel above the other on a shared x axis: one
// polyline per result, x = latency (log10 ns), y = share of the result's
// samples per bin (each panel scaled to its highest bin).
func WriteSVG(w io.Writer, panels ...Panel) error {
	const (
		width       = 1000
		panelHeight = 300
		left, right = 60, 320
		top, gap    = 30, 40
		bottom      = 50
		bins        = 60
	)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range panels {
		for _, r := range p.Results {
			for _, d := range r.Samples {
				v := math.Log10(math.Max(float64(d.Nanoseconds()), 1))
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if math.IsInf(lo, 0) {
		lo, hi = 0, 1
	}
	lo, hi = math.Floor(lo), math.Ceil(hi)
	if hi <= lo {
		hi = lo + 1
	}
	height := top + len(panels)*(panelHeight+gap) - gap + bottom
	pw := float64(width - left - right)
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	colors := []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}
	for pi, p := range panels {
		y0 := top + pi*(panelHeight+gap) // top of the plot area
		y1 := y0 + panelHeight           // its x axis
		hists := make([][]float64, len(p.Results))
		maxY := 0.0
		for i, r := range p.Results {
			h := make([]float64, bins)
			for _, d := range r.Samples {
				v := math.Log10(math.Max(float64(d.Nanoseconds()), 1))
				h[min(max(int((v-lo)/(hi-lo)*bins), 0), bins-1)]++
			}
			for b := range h {
				if n := len(r.Samples); n > 0 {
					h[b] /= float64(n)
				}
				maxY = math.Max(maxY, h[b])
			}
			hists[i] = h
		}
		if maxY == 0 {
			maxY = 1
		}
		fmt.Fprintf(&sb, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", left, y0-8, xmlEscape(p.Title))
		fmt.Fprintf(&sb, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", left, y1, width-right, y1)
		fmt.Fprintf(&sb, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", left, y0, left, y1)
		for d := lo; d <= hi; d++ {
			x := float64(left) + (d-lo)/(hi-lo)*pw
			fmt.Fprintf(&sb, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ccc"/>`+"\n", x, y0, x, y1)
			fmt.Fprintf(&sb, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, y1+16, fmtDecade(d))
		}
		fmt.Fprintf(&sb, `<text x="%d" y="%d" text-anchor="middle" transform="rotate(-90 %d %d)">share of samples</text>`+"\n",
			20, y0+panelHeight/2, 20, y0+panelHeight/2)
		for i, h := range hists {
			c := colors[i%len(colors)]
			var pts strings.Builder
			for b, y := range h {
				x := float64(left) + (float64(b)+0.5)/bins*pw
				fmt.Fprintf(&pts, "%.1f,%.1f ", x, float64(y1)-y/maxY*panelHeight)
			}
			fmt.Fprintf(&sb, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", c, strings.TrimSpace(pts.String()))
			fmt.Fprintf(&sb, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/>`+"\n", width-right+10, y0+18*i, c)
			fmt.Fprintf(&sb, `<text x="%d" y="%d">%s (median %s)</text>`+"\n", width-right+28, y0+18*i+11,
				xmlEscape(p.Results[i].Name), fmtNS(float64(p.Results[i].Summarize().Median.Nanoseconds())))
		}
	}
	fmt.Fprintf(&sb, `<text x="%d" y="%d" text-anchor="middle">latency per operation (log scale)</text>`+"\n", left+int(pw/2), height-12)
	sb.WriteString("</svg>\n")
	_, err := io.WriteString(w, sb.String())
	return err
}

// fmtDecade names the power of ten 10^d nanoseconds: 1ns, 10ns, ..., 1s.
func fmtDecade(d float64) string {
	units := []string{"ns", "µs", "ms", "s"}
	i := min(int(d)/3, len(units)-1)
	return fmt.Sprintf("%.0f%s", math.Pow(10, d-float64(3*i)), units[i])
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
