package xenbox

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The benchmark row "godm vs QEMU on real Xen": a firmware that times
// round trips through Xen to the device model with rdtsc, run with godm
// and with qemu-system-xen in turn in the same boot.

// EnvBench turns TestRealXen's benchmark scenario on (it adds a few
// minutes to the boot, so CI does not run it).
const EnvBench = "GODM_XENBOX_BENCH"

// BenchFWPath is the timing firmware inside dom0.
const BenchFWPath = "/xenbox/fw/bench.elf"

// BenchKind is one timed access of the benchmark firmware.
type BenchKind struct {
	Name string
	What string // for the report
	C    string // the C statement timed (may set v, checked against Want)
	Want int64  // the value v must read; -1: not checked
	DM   bool   // the device model answers it (false: Xen itself, or nothing)
}

// platBAR1 is where the firmware puts the platform device's MMIO BAR
// (00:02.0 BAR1, 16 MiB) in the PCI hole, above the guest's 32 MiB.
const platBAR1 = 0xf0000000

// BenchKinds are the accesses timed, in order.
var BenchKinds = []BenchKind{
	{"tsc", "two rdtsc, nothing between (the timing's own cost)", "", -1, false},
	{"xen", "`inb 0x61` (Xen answers it itself: hvm/i8254.c, the PIT's speaker port)", "v = in(0x61, 1); ", -1, false},
	{"lsr", "COM1 LSR read (`inb 0x3fd`)", "v = in(0x3fd, 1); ", 0x60, true},
	{"scr", "COM1 SCR write (`outb 0x3ff`)", "out(0x3ff, 1, 0x5a); ", -1, true},
	{"cfg", "`0xcf8` write + `0xcfc` read (i440FX ID)", "out(0xcf8, 4, 0x80000000); v = in(0xcfc, 4); ", 0x12378086, true},
	{"cfcw", "`inw 0xcfc` (address latched: i440FX vendor)", "v = in(0xcfc, 2); ", 0x8086, true},
	{"mmio", "32-bit MMIO read of the platform device's BAR1 (both answer 0)", "v = *(volatile u32 *)0xf0000000; ", 0, true},
}

// BenchSamples is how many times the firmware times each kind.
const BenchSamples = 200

// benchHold is how many Xen-answered port reads the firmware makes after
// "BENCH END" before it powers off (a few seconds in the box).
const benchHold = 100000

// BenchFirmwareSource is the timing firmware: for each BenchKind, a
// warm-up, then BenchSamples samples of rdtsc; access; rdtsc, sorted, and
// one line "BENCH <kind> <n> <min> <p25> <p50> <p75> <p90> <p99> <max>
// <bad>" in TSC ticks (bad: reads that were not the expected value), then
// "BENCH END" and a power-off. Before timing it points the platform
// device's BAR1 at platBAR1 and turns memory decoding on, so that both
// device models claim the range from Xen.
func BenchFirmwareSource() string {
	var b strings.Builder
	b.WriteString(fwPrelude)
	fmt.Fprintf(&b, `
#define N %d
static u32 s[N];
static inline u32 tsc(void) { u32 lo, hi; __asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi) :: "memory"); return lo; }
static void sort(u32 *a, int n) {
	for (int i = 1; i < n; i++) { u32 x = a[i]; int j = i; while (j > 0 && a[j-1] > x) { a[j] = a[j-1]; j--; } a[j] = x; }
}
static void report(const char *name, u32 bad) {
	sort(s, N);
	puts_("BENCH "); puts_(name); putc_(' '); putdec(N);
	static const int pct[] = {0, 25, 50, 75, 90, 99, 100};
	for (int k = 0; k < 7; k++) { int i = pct[k] * (N - 1) / 100; putc_(' '); putdec(s[i]); }
	putc_(' '); putdec(bad); puts_("\n");
}
void fwmain(void) {
	u32 v = 0;
	puts_("\nBENCH START\n");
	/* 00:%02x.0 BAR1 at %#x, memory decoding on. */
	out(0xcf8, 4, 0x80000000 | (%d << 11) | 0x14); out(0xcfc, 4, %#x);
	out(0xcf8, 4, 0x80000000 | (%d << 11) | 0x04); out(0xcfc, 2, 0x0002);
`, BenchSamples, 2, platBAR1, 2, platBAR1, 2)
	for _, k := range BenchKinds {
		check := "0"
		if k.Want >= 0 {
			check = fmt.Sprintf("(v != %#xu)", k.Want)
		}
		fmt.Fprintf(&b, "\t{ u32 bad = 0; out(0xcf8, 4, 0x80000000);\n")
		fmt.Fprintf(&b, "\t  for (int i = 0; i < 50; i++) { %s}\n", k.C)
		fmt.Fprintf(&b, "\t  for (int i = 0; i < N; i++) { u32 t0 = tsc(); %su32 t1 = tsc(); s[i] = t1 - t0; bad += %s; }\n", k.C, check)
		fmt.Fprintf(&b, "\t  report(%q, bad); }\n", k.Name)
	}
	b.WriteString("\t(void)v;\n\tputs_(\"BENCH END\\n\");\n")
	// Stay up a few seconds doing only what Xen answers itself (the PIT's
	// port), so that dom0 can pause the guest and read the device model's
	// stage histograms before it powers off (BenchScenario).
	fmt.Fprintf(&b, "\tfor (int i = 0; i < %d; i++) (void)in(0x61, 1);\n", benchHold)
	// Power off as the probe firmware does: PIIX4 PM's I/O space at
	// Xen's PM1a block first (what hvmloader writes: PMBA 0xb001,
	// PMREGMISC 1). QEMU's PIIX4 decodes PM1a control only then
	// (hw/acpi/piix4.c pm_io_space_update); without it QEMU's guest halted
	// with its power-off write dropped and the run waited out its
	// 300-s limit, which read as a box that hung.
	fmt.Fprintf(&b, "\tout(0xcf8, 4, 0x80000000 | (1 << 11) | (3 << 8) | 0x40); out(0xcfc, 4, 0xb001);\n")
	fmt.Fprintf(&b, "\tout(0xcf8, 4, 0x80000000 | (1 << 11) | (3 << 8) | 0x80); out(0xcfc, 1, 0x01);\n")
	fmt.Fprintf(&b, "\tout(%d, 2, %d);\n\tfor (;;) __asm__ volatile(\"sti; hlt\");\n}\n", pm1aCnt, slpEn)
	b.WriteString(fwStart)
	return b.String()
}

// BuildBenchFirmware compiles BenchFirmwareSource into dir/name.elf.
func BuildBenchFirmware(dir, name string) (string, error) {
	return compileFirmware(dir, name, BenchFirmwareSource())
}

// BenchScenario runs the timing firmware pairs times with godm and with
// qemu-system-xen, alternating, each guest created alone from the same
// domain config but for device_model_override (both launched by libxl
// itself, vga="none", COM1 to a file, xl create -p then unpause). For
// every run it prints "BENCH-DM dm=<godm|qemu> pair=<i> domid=<d>
// first_line_ms=<xl create to the firmware's first COM1 line> rss_kb=
// hwm_kb= anon_kb= file_kb= threads=" (the device model's /proc/<pid>/status once the
// firmware has started). Once the firmware prints "BENCH END" dom0 pauses
// the guest, reads godm's stage histograms of the sampled requests (HMP
// "info ioreq" through xl qemu-monitor-command; QEMU's runs are paused
// and resumed alike) as "BENCH-STAGES dm=godm pair=<i> domid=<d> <line>"
// lines, and lets it power off. Each COM1 file is relayed afterwards prefixed
// "<dm>-dm[<domid>] " (xenbox-dm for godm, qemu-dm for QEMU).
//
// Each of spins adds a godm run to every pair, after the default one,
// with device_model_args_hvm = [ "-godm-spin", SPIN ] (dm=godm-spin-SPIN):
// "off" is godm's blocking mode.
func BenchScenario(pairs int, spins ...string) Scenario {
	cfg := func(name, dm, extra string) string {
		return fmt.Sprintf("cat > /tmp/%s.cfg <<'EOF'\n%sEOF\n", name, LibxlConfig(name, BenchFWPath, "vga = \"none\"\nserial = \"file:/tmp/"+name+".serial\"\n"+extra))
	}
	qemu := cfg("bq", QEMUXenPath, "device_model_args = [ \"-L\", \"/usr/share/seabios\" ]\n")
	qemu = strings.Replace(qemu, GodmPath, QEMUXenPath, 1)
	variants := ""
	runs := "\trun godm bg $n xenbox-dm || exit 1\n"
	for i, sp := range spins {
		name := fmt.Sprintf("bs%d", i)
		variants += cfg(name, GodmPath, fmt.Sprintf("device_model_args_hvm = [ \"-godm-spin\", \"%s\" ]\n", sp))
		runs += fmt.Sprintf("\trun godm-spin-%s %s $n xenbox-dm || exit 1\n", sp, name)
	}
	runs += "\trun qemu bq $n qemu-dm || exit 1\n"
	return Scenario{Name: "bench", Script: cfg("bg", GodmPath, "") + variants + qemu + `
ms() { awk '{printf "%d", $1*1000}' /proc/uptime; }
st() { awk -v k="$2" '$1==k":" {print $2}' /proc/$1/status; }
# diag NAME OUTFILE: what there is to see when a run fails.
diag() {
	xl list
	sed 's/^/serial: /' $2 2>/dev/null | tail -20
	sed 's/^/dm-log: /' /var/log/xen/qemu-dm-$1.log 2>/dev/null | tail -20
}
# quiet DOMID SECONDS: wait for the domain's end on a xenstore watch of
# its directory (libxl removes it), not by polling: dom0's two vCPUs are
# the ones that run the device model while the firmware times
# (REAL-XEN.md). Each watch fires once when set, hence -n 2.
quiet() {
	end=$(($(ms)+$2*1000))
	while xl list $1 >/dev/null 2>&1; do
		[ $(ms) -gt $end ] && return 1
		timeout 10 xenstore-watch -n 2 /local/domain/$1 >/dev/null 2>&1
	done
	return 0
}
# run DM NAME PAIR PREFIX
run() {
	out=/tmp/$2.serial
	rm -f $out
	t0=$(ms)
	xl create -p /tmp/$2.cfg >/tmp/$2.create 2>&1 || { cat /tmp/$2.create; diag $2 $out; return 1; }
	d=$(xl domid $2)
	# libxl records the pid of the device model it spawned.
	pid=$(xenstore-read /local/domain/$d/image/device-model-pid)
	[ -n "$pid" ] || { echo "no $1 process found"; diag $2 $out; xl destroy $d; return 1; }
	xl unpause $d || { diag $2 $out; xl destroy $d; return 1; }
	# Poll gently: dom0's two vCPUs are also the device model's.
	while ! grep -q "BENCH START" $out 2>/dev/null; do
		[ $(($(ms)-t0)) -gt 120000 ] && { echo "no output from the $1 guest in 120 s"; diag $2 $out; xl destroy $d; return 1; }
		sleep 0.05
	done
	t1=$(ms)
	echo "BENCH-DM dm=$1 pair=$3 domid=$d first_line_ms=$((t1-t0)) rss_kb=$(st $pid VmRSS) hwm_kb=$(st $pid VmHWM) anon_kb=$(st $pid RssAnon) file_kb=$(($(st $pid RssFile)+$(st $pid RssShmem))) threads=$(st $pid Threads)"
	# The end of the timing, polled gently (the same for both device
	# models); then, the guest paused in its post-timing hold, godm's
	# stage histograms.
	while ! grep -q "BENCH END" $out 2>/dev/null && [ $(($(ms)-t1)) -lt 300000 ]; do sleep 0.5; done
	if xl pause $d 2>/dev/null; then
		if [ $1 != qemu ]; then
			xl qemu-monitor-command $2 "info ioreq" 2>&1 | tr -d '\r' | sed "s/^/BENCH-STAGES dm=$1 pair=$3 domid=$d /"
		fi
		xl unpause $d
	fi
	quiet $d 300 || { echo "the $1 guest did not power off in 300 s"; diag $2 $out; xl destroy $d; return 1; }
	i=0
	while [ -d /proc/$pid ]; do
		i=$((i+1)); [ $i -gt 100 ] && { echo "$1 still runs after its guest ended"; return 1; }; sleep 0.1
	done
	sed "s/^/$4[$d] /" $out
	return 0
}
n=1
while [ $n -le ` + strconv.Itoa(pairs) + ` ]; do
` + runs + `	n=$((n+1))
done
exit 0`}
}

// BenchRun is what one run of the timing firmware reported.
type BenchRun struct {
	DM    string
	Pair  int
	Dom   string
	Facts map[string]int64          // first_line_ms, rss_kb, hwm_kb, anon_kb, file_kb, threads
	Kinds map[string]BenchQuantiles // by BenchKind name
	End   bool
	// Stages are godm's "info ioreq" lines read after the timing (the
	// whole run's sampled requests, boot included).
	Stages []string
}

// BenchQuantiles are a kind's sample count, min, p25, p50, p75, p90,
// p99 and max in TSC ticks, and the count of wrong reads.
type BenchQuantiles struct {
	N   int64
	Q   [7]int64
	Bad int64
}

var (
	benchDMLine = regexp.MustCompile(`\[bench\] BENCH-DM dm=([\w.-]+) pair=(\d+) domid=(\d+) (.*)$`)
	benchStages = regexp.MustCompile(`\[bench\] BENCH-STAGES dm=([\w.-]+) pair=\d+ domid=(\d+) (.*)$`)
	benchLine   = regexp.MustCompile(`(xenbox-dm|qemu-dm)\[(\d+)\] BENCH (\S+)((?: \d+)*)\s*$`)
)

// ParseBench collects the runs from the console lines, in order.
func ParseBench(lines []Line) ([]*BenchRun, error) {
	var runs []*BenchRun
	byDom := map[string]*BenchRun{}
	for _, l := range lines {
		if m := benchDMLine.FindStringSubmatch(l.Text); m != nil {
			r := &BenchRun{DM: m[1], Dom: m[3], Facts: map[string]int64{}, Kinds: map[string]BenchQuantiles{}}
			r.Pair, _ = strconv.Atoi(m[2])
			for _, kv := range strings.Fields(m[4]) {
				k, v, ok := strings.Cut(kv, "=")
				n, err := strconv.ParseInt(v, 10, 64)
				if !ok || err != nil {
					return nil, fmt.Errorf("bench: bad fact %q in %q", kv, l.Text)
				}
				r.Facts[k] = n
			}
			runs = append(runs, r)
			byDom[r.Dom] = r
		}
	}
	for _, l := range lines {
		if m := benchStages.FindStringSubmatch(l.Text); m != nil {
			if r := byDom[m[2]]; r != nil && r.DM == m[1] {
				r.Stages = append(r.Stages, strings.TrimSpace(m[3]))
			}
			continue
		}
		m := benchLine.FindStringSubmatch(strings.TrimSpace(l.Text))
		if m == nil {
			continue
		}
		r := byDom[m[2]]
		if r == nil || (m[1] == "qemu-dm") != (r.DM == "qemu") {
			continue
		}
		if m[3] == "END" {
			r.End = true
			continue
		}
		if m[3] == "START" {
			continue
		}
		f := strings.Fields(m[4])
		if len(f) != 9 {
			return nil, fmt.Errorf("bench: %d numbers in %q, want 9", len(f), l.Text)
		}
		var q BenchQuantiles
		var err error
		vals := make([]int64, 9)
		for i, s := range f {
			if vals[i], err = strconv.ParseInt(s, 10, 64); err != nil {
				return nil, fmt.Errorf("bench: %q: %v", l.Text, err)
			}
		}
		q.N, q.Bad = vals[0], vals[8]
		copy(q.Q[:], vals[1:8])
		r.Kinds[m[3]] = q
	}
	return runs, nil
}

// medianF is the median of xs (the mean of the middle two for an even
// count).
func medianF(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// BenchTable is the report: for each kind, godm's min, p25, p50, p75 and
// p90 as ratios to QEMU's in the same pair (median over pairs), QEMU's
// median in ticks, then the per-run facts as godm/QEMU ratios. Each godm
// variant (BenchScenario's spins) gets the same tables under a heading
// of its own, against the QEMU run of its pair.
func BenchTable(runs []*BenchRun) string {
	var b strings.Builder
	for i, dm := range benchGodms(runs) {
		if dm != "godm" || i > 0 {
			fmt.Fprintf(&b, "\n%s against QEMU:\n\n", dm)
		}
		benchTableOf(&b, runs, dm)
	}
	return b.String()
}

// benchGodms are the godm variants of runs, the default one first.
func benchGodms(runs []*BenchRun) []string {
	var dms []string
	for _, r := range runs {
		if r.DM != "qemu" && !slices.Contains(dms, r.DM) {
			dms = append(dms, r.DM)
		}
	}
	slices.SortStableFunc(dms, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == "godm":
			return -1
		case b == "godm":
			return 1
		}
		return strings.Compare(a, b)
	})
	return dms
}

func benchTableOf(b *strings.Builder, runs []*BenchRun, dm string) {
	type pair struct{ g, q *BenchRun }
	pairs := map[int]*pair{}
	var order []int
	for _, r := range runs {
		if r.DM != dm && r.DM != "qemu" {
			continue
		}
		p := pairs[r.Pair]
		if p == nil {
			p = &pair{}
			pairs[r.Pair] = p
			order = append(order, r.Pair)
		}
		if r.DM == dm {
			p.g = r
		} else {
			p.q = r
		}
	}
	fmt.Fprintf(b, "| round trip | min | p25 | median | p75 | p90 | QEMU median (ticks) | godm median (ticks) |\n|---|---|---|---|---|---|---|---|\n")
	for _, k := range BenchKinds {
		var rat [5][]float64
		var qm, gm []float64
		for _, n := range order {
			p := pairs[n]
			if p.g == nil || p.q == nil {
				continue
			}
			g, q := p.g.Kinds[k.Name], p.q.Kinds[k.Name]
			for i := range 5 {
				if q.Q[i] > 0 {
					rat[i] = append(rat[i], float64(g.Q[i])/float64(q.Q[i]))
				}
			}
			qm, gm = append(qm, float64(q.Q[2])), append(gm, float64(g.Q[2]))
		}
		fmt.Fprintf(b, "| %s |", k.What)
		for i := range 5 {
			fmt.Fprintf(b, " %.2f |", medianF(rat[i]))
		}
		fmt.Fprintf(b, " %.0f | %.0f |\n", medianF(qm), medianF(gm))
	}
	facts := []struct{ key, what string }{
		{"first_line_ms", "`xl create` → first COM1 line (ms)"},
		{"rss_kb", "device model RSS (kB)"},
		{"hwm_kb", "device model peak RSS (kB)"},
		{"anon_kb", "of the RSS: anonymous (kB)"},
		{"file_kb", "of the RSS: the binary and its libraries mapped (RssFile + RssShmem: the box's dom0 runs from its initramfs) (kB)"},
		{"threads", "device model threads"},
	}
	fmt.Fprintf(b, "\n| per run (median of pairs) | godm | QEMU | godm/QEMU |\n|---|---|---|---|\n")
	for _, f := range facts {
		var gv, qv, rv []float64
		for _, n := range order {
			p := pairs[n]
			if p.g == nil || p.q == nil {
				continue
			}
			g, q := float64(p.g.Facts[f.key]), float64(p.q.Facts[f.key])
			gv, qv = append(gv, g), append(qv, q)
			if q > 0 {
				rv = append(rv, g/q)
			}
		}
		fmt.Fprintf(b, "| %s | %.0f | %.0f | %.2f |\n", f.what, medianF(gv), medianF(qv), medianF(rv))
	}
}
