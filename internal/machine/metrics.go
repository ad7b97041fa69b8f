package machine

import (
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode"

	"godm/devices/i8042"
	"godm/devices/piix3"
	"godm/devices/piix4pm"
	"godm/devices/uart"
	"godm/devices/xenplatform"
	"godm/internal/board"
	"godm/internal/metrics"
	"godm/ioreq"
	"godm/pci"
)

// Metrics gathers the machine's counters into metric families (QMP's
// x-godm-query-stats and the Prometheus endpoint), off the request path:
// the ioreq workers' counters by request kind, their latency histogram,
// event-channel activity, the address spaces' misses, the map cache, and
// every device's own counters (its Stats method's uint64 fields, and its
// PCI function's). Cardinality is bounded by the kinds (6), the histogram
// buckets (32) and the devices on the board, each with a fixed set of
// counters.
func (m *Machine) Metrics() []metrics.Family {
	var c ioreq.Counters
	m.Server.Stats(&c)
	req := metrics.Family{Name: "godm_ioreq_requests_total", Type: metrics.Counter,
		Help: "Requests served, by kind (pio, mmio, pci-config, timeoffset, invalidate, other) and path (sync: the ioreq slot; buffered: the buffered ring)."}
	for k := ioreq.Kind(0); k < ioreq.NumKinds; k++ {
		req.Add(float64(c.Sync[k]), "kind", k.String(), "path", "sync")
		req.Add(float64(c.Buffered[k]), "kind", k.String(), "path", "buffered")
	}
	bad := metrics.Family{Name: "godm_ioreq_errors_total", Type: metrics.Counter,
		Help: "Requests refused or not completed, by reason."}
	for _, e := range []struct {
		why string
		n   uint64
	}{{"bad-size", c.BadSize}, {"bad-count", c.BadCount}, {"bad-type", c.BadType}, {"bad-pci-register", c.BadPCIReg},
		{"memory-fault", c.MemFaults}, {"lost-response", c.LostResponses},
		{"buffered-incomplete", c.BufferedIncomplete}, {"buffered-overrun", c.BufferedOverrun}} {
		bad.Add(float64(e.n), "reason", e.why)
	}
	reps := metrics.Family{Name: "godm_ioreq_repetitions_total", Type: metrics.Counter,
		Help: "Individual repetitions of rep (count > 1) requests."}
	reps.Add(float64(c.Reps))
	lat := metrics.Family{Name: "godm_ioreq_latency_seconds", Type: metrics.Histogram,
		Help: "Service time of the sampled synchronous requests, from claim to response."}
	bounds := make([]float64, ioreq.LatencyBuckets)
	for i := range bounds {
		bounds[i] = float64(uint64(1)<<(i+1)) / 1e9 // bucket i is [2^i, 2^(i+1)) ns
	}
	bounds[len(bounds)-1] = math.Inf(1) // the last bucket counts everything longer
	lat.AddHistogram(bounds, c.Latency[:], float64(c.LatencySum)/1e9)
	stages := metrics.Family{Name: "godm_ioreq_stage_seconds", Type: metrics.Histogram,
		Help: "Where the sampled synchronous requests' time went in the worker, by path (spin: found awake; block: after an epoll wait) and stage (wake-to-run: epoll_wait's return to the goroutine running, the Go scheduler's share; run-to-claim; handle; respond: the response written into the slot; notify: the event-channel notify until it returned; total: their sum)."}
	for p := ioreq.Path(0); p < ioreq.NumPaths; p++ {
		for st := ioreq.Stage(0); st < ioreq.NumStages; st++ {
			stages.AddHistogram(bounds, c.Stages[p][st][:], float64(c.StageSum[p][st])/1e9, "path", p.String(), "stage", st.String())
		}
	}
	split := metrics.Family{Name: "godm_ioreq_stage_split_seconds_total", Type: metrics.Counter,
		Help: "The time of the sampled requests whose total fell in one bucket of godm_ioreq_stage_seconds{stage=\"total\"} (total_le: its upper bound), by path and stage: where the slow requests' time went. Empty buckets are left out."}
	splitN := metrics.Family{Name: "godm_ioreq_stage_split_requests_total", Type: metrics.Counter,
		Help: "The sampled requests counted in godm_ioreq_stage_split_seconds_total, by path and total bucket."}
	for p := ioreq.Path(0); p < ioreq.NumPaths; p++ {
		for b, n := range c.Stages[p][ioreq.StageTotal] {
			if n == 0 {
				continue
			}
			le := strconv.FormatFloat(bounds[b], 'g', -1, 64)
			if math.IsInf(bounds[b], 1) {
				le = "+Inf"
			}
			splitN.Add(float64(n), "path", p.String(), "total_le", le)
			for st := ioreq.Stage(0); st < ioreq.NumStages; st++ {
				split.Add(float64(c.Split[p][b][st])/1e9, "path", p.String(), "total_le", le, "stage", st.String())
			}
		}
	}
	ev := metrics.Family{Name: "godm_evtchn_events_total", Type: metrics.Counter,
		Help: "Event-channel activity of the ioreq workers: notifications sent to vCPUs (one per completed synchronous request), wake-ups, failed notifications and failed reads or unmasks."}
	var sync uint64
	for _, n := range c.Sync {
		sync += n
	}
	ev.Add(float64(sync-min(sync, c.LostResponses+c.NotifyErrors)), "event", "notify")
	ev.Add(float64(c.Wakeups), "event", "wakeup")
	ev.Add(float64(c.NotifyErrors), "event", "notify-error")
	ev.Add(float64(c.EventErrors), "event", "event-error")
	miss := metrics.Family{Name: "godm_bus_misses_total", Type: metrics.Counter,
		Help: "Accesses that matched no device, by address space and direction."}
	for _, sp := range []struct {
		name string
		st   func() (r, w uint64)
	}{
		{"pio", func() (uint64, uint64) { s := m.Spaces.PIO.Stats(); return s.ReadMisses, s.WriteMisses }},
		{"mmio", func() (uint64, uint64) { s := m.Spaces.MMIO.Stats(); return s.ReadMisses, s.WriteMisses }},
		{"pci-config", func() (uint64, uint64) { s := m.Spaces.PCI.Stats(); return s.ReadMisses, s.WriteMisses }},
	} {
		r, w := sp.st()
		miss.Add(float64(r), "space", sp.name, "op", "read")
		miss.Add(float64(w), "space", sp.name, "op", "write")
	}
	mc := metrics.Family{Name: "godm_mapcache_events_total", Type: metrics.Counter,
		Help: "Guest-memory map cache activity (maps, map errors, evictions, private buckets, invalidations, unmap errors)."}
	live := metrics.Family{Name: "godm_mapcache_live_buckets", Type: metrics.Gauge, Help: "Guest-memory buckets mapped now."}
	if m.Memory != nil {
		s := m.Memory.Stats()
		for _, e := range []struct {
			ev string
			n  uint64
		}{{"map", s.Maps}, {"map-error", s.MapErrors}, {"eviction", s.Evictions}, {"private", s.Private},
			{"invalidation", s.Invalidations}, {"unmap-error", s.UnmapErrors}} {
			mc.Add(float64(e.n), "event", e.ev)
		}
		live.Add(float64(s.Live))
	}
	dev := metrics.Family{Name: "godm_device_events_total", Type: metrics.Counter,
		Help: "Each device's own counters (its Stats), by device id, driver and counter."}
	for _, p := range m.Board.Devices() {
		srcs := []any{p.Dev}
		if p.PCI != nil {
			srcs = append(srcs, p.PCI)
		}
		if pt, ok := p.Dev.(*board.Passthrough); ok && pt.View != nil {
			srcs = append(srcs, pt.View)
		}
		for _, src := range srcs {
			for _, f := range statFields(src) {
				dev.Add(float64(f.n), "device", p.ID, "driver", p.Driver, "counter", f.name)
			}
		}
	}
	return []metrics.Family{req, bad, reps, lat, stages, split, splitN, ev, miss, mc, live, dev}
}

type statField struct {
	name string
	n    uint64
}

// statsOf returns v's counters struct: its Stats() for the device types
// of the board (an explicit list rather than a reflective method lookup,
// which would make the linker keep every exported method of the binary:
// 92 KB measured), or StatsValue() for those that cannot be named here
// (a passed-through function: package passthrough's tests build
// machines).
func statsOf(v any) (any, bool) {
	switch d := v.(type) {
	case interface{ Stats() uart.Stats }:
		return d.Stats(), true
	case interface{ Stats() piix3.Stats }:
		return d.Stats(), true
	case interface{ Stats() piix4pm.Stats }:
		return d.Stats(), true
	case interface{ Stats() xenplatform.Stats }:
		return d.Stats(), true
	case interface{ Stats() i8042.Stats }:
		return d.Stats(), true
	case interface{ Stats() pci.Stats }:
		return d.Stats(), true
	case interface{ StatsValue() any }:
		return d.StatsValue(), true
	}
	return nil, false
}

// statFields returns the unsigned integer fields of v's counters
// (statsOf; nested structs flattened) with names in snake case
// ("TxDropped" → "tx_dropped").
func statFields(v any) []statField {
	st, ok := statsOf(v)
	if !ok {
		return nil
	}
	sv := reflect.ValueOf(st)
	if sv.Kind() != reflect.Struct {
		return nil
	}
	var out []statField
	var walk func(prefix string, s reflect.Value)
	walk = func(prefix string, s reflect.Value) {
		t := s.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name := prefix + snake(f.Name)
			switch fv := s.Field(i); fv.Kind() {
			case reflect.Uint64, reflect.Uint32, reflect.Uint, reflect.Uint16, reflect.Uint8:
				out = append(out, statField{name, fv.Uint()})
			case reflect.Struct:
				walk(name+"_", fv)
			}
		}
	}
	walk("", sv)
	return out
}

// snake turns a Go field name into snake case: "MMIOAccesses" →
// "mmio_accesses", "TxDropped" → "tx_dropped".
func snake(s string) string {
	var b strings.Builder
	r := []rune(s)
	for i, c := range r {
		if unicode.IsUpper(c) && i > 0 && (unicode.IsLower(r[i-1]) || (i+1 < len(r) && unicode.IsLower(r[i+1]))) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}
