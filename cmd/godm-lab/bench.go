package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime/debug"
	"strings"

	"godm/bench"
)

// cmdBench runs godm's benchmarks on the simulated Xen (package bench): the
// ioreq round trip and throughput against the physical floors and a
// QEMU-style classic loop, measured side by side. The table goes to out,
// progress to w.
func cmdBench(ctx context.Context, args []string, out, w io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(w)
	short := fs.Bool("short", false, "CI-sized iteration counts (a smoke test: figures are not meaningful)")
	trials := fs.Int("trials", 0, fmt.Sprintf("trials per scenario (0: %d, 1 with -short)", bench.DefaultTrials))
	filter := fs.String("scenarios", "", "regular expression selecting scenarios (their baselines run too)")
	jsonFile := fs.String("json", "", "also write the report as JSON to this file")
	svgFile := fs.String("svg", "", "also write the latency histograms as SVG to this file")
	list := fs.Bool("list", false, "list the scenarios and exit")
	fs.Usage = func() {
		fmt.Fprintln(w, "usage: godm-lab bench [flags]\n\nMeasures godm's ioreq path on the simulated Xen against the machine's floors and a classic loop.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench: unexpected argument %q", fs.Arg(0))
	}
	if *list {
		var extra []string
		fs.Visit(func(f *flag.Flag) {
			if f.Name != "list" && f.Name != "scenarios" {
				extra = append(extra, "-"+f.Name)
			}
		})
		if len(extra) > 0 {
			return fmt.Errorf("bench: -list only lists the scenarios: %s does not apply", strings.Join(extra, ", "))
		}
	}
	if *trials < 0 {
		return fmt.Errorf("bench: -trials %d: want 0 or more", *trials)
	}
	o := bench.Options{Short: *short, Trials: *trials, Progress: w}
	if *filter != "" {
		re, err := regexp.Compile(*filter)
		if err != nil {
			return fmt.Errorf("bench: -scenarios: %w", err)
		}
		o.Filter = re
	}
	if *list {
		for _, s := range o.Selected() {
			fmt.Fprintf(out, "%-24s %s\n", s.Name, s.Doc)
		}
		return nil
	}
	load := loadAverage("/proc/loadavg")
	rep, plot, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	if after := loadAverage("/proc/loadavg"); load != "" && after != "" {
		rep.Load = load + " before, " + after + " after"
	}
	rep.Command = strings.TrimSpace("godm-lab bench " + strings.Join(args, " "))
	rep.Revision = revision()
	if cpu := cpuModel("/proc/cpuinfo"); cpu != "" {
		rep.Machine = cpu + ", " + rep.Machine
	}
	if err := rep.WriteTable(out); err != nil {
		return err
	}
	if *jsonFile != "" {
		if err := writeFile(*jsonFile, rep.WriteJSON); err != nil {
			return err
		}
	}
	if *svgFile != "" {
		if err := writeFile(*svgFile, func(f io.Writer) error { return bench.WriteSVG(f, plot...) }); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(name string, write func(io.Writer) error) error {
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("bench: writing %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// loadAverage returns the 1-minute load average of a loadavg file, or "".
func loadAverage(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// cpuModel returns the first "model name" of a cpuinfo file, or "".
func cpuModel(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// revision returns the VCS revision the binary was built from ("+dirty"
// when the tree had changes), or "".
func revision() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev == "" {
		return ""
	}
	return rev + dirty
}
