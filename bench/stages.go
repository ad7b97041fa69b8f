package bench

import (
	"fmt"
	"io"
	"text/tabwriter"

	"godm/ioreq"
)

// Stages is what godm's ioreq workers recorded of the sampled requests of
// a scenario's measured part (ioreq.Counters' stage histograms; one request
// in ioreq.DefaultLatencyEvery): where the worker's share of a round trip
// went, by path (spin, block).
type Stages struct {
	Hist  [ioreq.NumPaths][ioreq.NumStages][ioreq.LatencyBuckets]uint64
	Sum   [ioreq.NumPaths][ioreq.NumStages]uint64
	Split [ioreq.NumPaths][ioreq.LatencyBuckets][ioreq.NumStages]uint64
}

func stagesOf(c *ioreq.Counters) *Stages {
	return &Stages{Hist: c.Stages, Sum: c.StageSum, Split: c.Split}
}

// since returns s minus before (counters only grow).
func (s *Stages) since(before *Stages) *Stages {
	d := *s
	for p := range d.Hist {
		for st := range d.Hist[p] {
			for b := range d.Hist[p][st] {
				d.Hist[p][st][b] -= before.Hist[p][st][b]
			}
			d.Sum[p][st] -= before.Sum[p][st]
		}
		for b := range d.Split[p] {
			for st := range d.Split[p][b] {
				d.Split[p][b][st] -= before.Split[p][b][st]
			}
		}
	}
	return &d
}

func (s *Stages) add(o *Stages) {
	for p := range s.Hist {
		for st := range s.Hist[p] {
			for b := range s.Hist[p][st] {
				s.Hist[p][st][b] += o.Hist[p][st][b]
			}
			s.Sum[p][st] += o.Sum[p][st]
		}
		for b := range s.Split[p] {
			for st := range s.Split[p][b] {
				s.Split[p][b][st] += o.Split[p][b][st]
			}
		}
	}
}

// StageRow is one path's stages in a report row: the sampled requests
// (N), each stage's mean, and the same for the slow requests: those in the
// top total buckets holding at least a tenth of N (SlowN; the buckets are
// powers of two, so a bucket is taken whole).
type StageRow struct {
	Path       string                   `json:"path"`
	N          uint64                   `json:"n"`
	MeanNS     [ioreq.NumStages]float64 `json:"mean_ns"`
	SlowN      uint64                   `json:"slow_n"`
	SlowMeanNS [ioreq.NumStages]float64 `json:"slow_mean_ns"`
	// SlowFromNS is the lower bound of the slow requests' totals.
	SlowFromNS float64 `json:"slow_from_ns"`
}

// stageRows summarises s by path (paths with no request left out).
func (s *Stages) rows() []StageRow {
	var out []StageRow
	for p := range ioreq.NumPaths {
		var n uint64
		for _, v := range s.Hist[p][ioreq.StageTotal] {
			n += v
		}
		if n == 0 {
			continue
		}
		r := StageRow{Path: p.String(), N: n}
		for st := range ioreq.NumStages {
			r.MeanNS[st] = float64(s.Sum[p][st]) / float64(n)
		}
		var slow [ioreq.NumStages]uint64
		for b := ioreq.LatencyBuckets - 1; b >= 0 && r.SlowN*10 < n; b-- {
			k := s.Hist[p][ioreq.StageTotal][b]
			if k == 0 {
				continue
			}
			r.SlowN += k
			r.SlowFromNS = float64(uint64(1) << b)
			for st := range ioreq.NumStages {
				slow[st] += s.Split[p][b][st]
			}
		}
		for st := range ioreq.NumStages {
			r.SlowMeanNS[st] = float64(slow[st]) / float64(r.SlowN)
		}
		out = append(out, r)
	}
	return out
}

// writeStages prints the stage table of the rows that have one.
func (rep *Report) writeStages(w io.Writer) error {
	any := false
	for _, r := range rep.Rows {
		any = any || len(r.Stages) > 0
	}
	if !any {
		return nil
	}
	fmt.Fprintln(w, "\nworker stages of the sampled requests (mean per request; slow: the top total buckets, >= 10% of them):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "scenario\tpath\tn\t")
	for st := range ioreq.NumStages {
		fmt.Fprintf(tw, "%s\t", st)
	}
	fmt.Fprintln(tw)
	for _, r := range rep.Rows {
		for _, s := range r.Stages {
			for k, v := range [][ioreq.NumStages]float64{s.MeanNS, s.SlowMeanNS} {
				name, path, n := r.Name, s.Path, fmt.Sprint(s.N)
				if k == 1 {
					name, path, n = "", "  slow (>= "+fmtNS(s.SlowFromNS)+")", fmt.Sprint(s.SlowN)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t", name, path, n)
				for _, x := range v {
					fmt.Fprintf(tw, "%s\t", fmtNS(x))
				}
				fmt.Fprintln(tw)
			}
		}
	}
	return tw.Flush()
}
