package xenbox

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"godm/devices/chardev"
	"godm/hyp/dm"
	"godm/hyp/xensim"
	"godm/internal/machine"
	"godm/internal/qtest/simtarget"
	"godm/internal/testfake"
	"godm/passthrough"
	"godm/passthrough/pttest"
)

// ptSampleFiles are the simulated function's files the box's dom0 gets
// in PTDevDir (pttest's sample tree at PTHostBDF), archive path -> host
// path.
func ptSampleFiles(t *testing.T) map[string]string {
	t.Helper()
	if PTHostBDF != pttest.SampleAddr {
		t.Fatalf("PTHostBDF %s is not pttest's sample %s", PTHostBDF, pttest.SampleAddr)
	}
	dir := filepath.Join(pttest.SampleSysfs(t), "bus", "pci", "devices", pttest.SampleAddr)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		if e.Type().IsRegular() {
			out[PTDevDir+"/"+e.Name()] = filepath.Join(dir, e.Name())
		}
	}
	if len(out) < 6 {
		t.Fatalf("only %d sample files in %s", len(out), dir)
	}
	return out
}

// ptSimAnswers runs PTProbes on xensim the way the box runs them: godm's
// machine serves the domain, a standalone server passes the sample
// function through at PTSlot (not assigned: the same gate as in the
// box), the probes up to the wait run, the standalone server stops, the
// rest run. It returns each read's value and the two servers' ids.
func ptSimAnswers(t *testing.T, probes []Probe) (map[int]uint64, [2]dm.ServerID) {
	t.Helper()
	xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(1, 32<<20))
	sim, dom := xen.Sim, xen.Dom
	be := chardev.NewNull()
	defer be.Close()
	m, err := machine.New(sim.Kernel(0), machine.Spec{Dom: dom.ID(), Serial: []chardev.Backend{be}, DeathPoll: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- m.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("machine Serve: %v", err)
		}
	}()
	host, err := passthrough.ParseSBDF(PTHostBDF)
	if err != nil {
		t.Fatal(err)
	}
	ptCtx, stop := context.WithCancel(context.Background())
	defer stop()
	ready := make(chan dm.ServerID, 1)
	done := make(chan error, 1)
	go func() {
		done <- passthrough.Standalone(ptCtx, sim.Kernel(0), passthrough.StandaloneConfig{Dom: dom.ID(), Host: host, Slot: PTSlot,
			HostOptions: passthrough.HostOptions{SysfsRoot: pttest.SampleSysfs(t)},
			Ready:       func(_ *passthrough.Device, id dm.ServerID) { ready <- id }})
	}()
	ids := [2]dm.ServerID{m.Server.ID()}
	select {
	case ids[1] = <-ready:
	case err := <-done:
		t.Fatalf("Standalone: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("Standalone did not become ready")
	}
	tgt := simtarget.New(sim, dom, dom.VCPU(0))
	out := map[int]uint64{}
	for i, p := range probes {
		if IsPTWait(p) {
			stop()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Standalone ended with %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Standalone did not stop")
			}
			continue
		}
		res, err := tgt.Run(p.Step)
		if err != nil {
			t.Fatalf("xensim probe %d: %v", i, err)
		}
		if !p.Step.Write {
			out[i] = res.Value
		}
	}
	return out, ids
}

// TestPTProbesOnXensim runs the passthrough scenario's accesses on
// xensim (the expected answers of the box) and checks the fixed facts
// among them: both servers' functions while both run, the empty slot
// after the standalone one stopped, the main one still answering.
func TestPTProbesOnXensim(t *testing.T) {
	probes := PTProbes()
	waits := 0
	for _, p := range probes {
		if IsPTWait(p) {
			waits++
		}
	}
	if waits != 1 {
		t.Fatalf("%d wait markers, want 1", waits)
	}
	got, ids := ptSimAnswers(t, probes)
	if ids[0] == ids[1] {
		t.Errorf("both servers have id %d", ids[0])
	}
	n := 0
	for i, p := range probes {
		if p.Known == nil {
			continue
		}
		n++
		if got[i] != *p.Known {
			t.Errorf("probe %d (%s): %#x, want %#x (%s)", i, p.Step, got[i], *p.Known, p.Why)
		}
	}
	if n < 12 {
		t.Errorf("only %d probes with fixed answers", n)
	}
}

// TestPTFirmware builds the passthrough firmware and checks that its
// op table holds every probe with the wait marker as the only size-0
// entry, and that it waits for PTGo.
func TestPTFirmware(t *testing.T) {
	probes := PTProbes()
	src := PTFirmwareSource(probes)
	if !strings.Contains(src, "#define NOPS "+strconv.Itoa(len(probes))+"\n") {
		t.Errorf("the firmware's NOPS is not %d", len(probes))
	}
	if strings.Count(src, "{0x0, 0, 0, 0, 0x0},") != 1 {
		t.Errorf("want exactly one wait entry ({0x0, 0, 0, 0, 0x0}) in the op table")
	}
	if !strings.Contains(src, "== "+strconv.Itoa(PTGo)+") return 1;") {
		t.Errorf("the firmware does not wait for %q", PTGo)
	}
	for _, s := range []string{`puts_("FW WAIT\n")`, `puts_("FW NOGO\n")`, `puts_("FW END ")`} {
		if !strings.Contains(src, s) {
			t.Errorf("the firmware lacks %s", s)
		}
		if strings.ContainsRune(s, PTGo) {
			t.Errorf("the firmware prints the go byte in %s", s)
		}
	}
	p, err := BuildPTFirmware(t.TempDir(), "pt")
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS32 || f.Machine != elf.EM_386 || f.Type != elf.ET_EXEC {
		t.Errorf("class %v machine %v type %v, want a 32-bit x86 executable", f.Class, f.Machine, f.Type)
	}
}

// TestPassthroughScenarioScript checks the script's parts: godm as
// libxl's device model, the standalone server on the simulated function
// at PTSlot, its SIGTERM stop before the go byte, and the facts the
// harness checks.
func TestPassthroughScenarioScript(t *testing.T) {
	sc := PassthroughScenario()
	if sc.Name != "passthrough" {
		t.Errorf("name %q", sc.Name)
	}
	s := sc.Script
	for _, want := range []string{
		`device_model_override = "` + GodmPath + `"`,
		`firmware_override = "` + PTFWPath + `"`,
		`serial = "pty"`,
		GodmPath + " passthrough -domid $d -bdf " + PTHostBDF + " -guest-slot " + strconv.Itoa(PTSlot) + " -sysfs $S -no-assign-check -v",
		"cp " + PTDevDir + "/* $D/",
		"XENBOX-FACT main_server=", "XENBOX-FACT pt_server=", "XENBOX-FACT pt_exit=", "XENBOX-FACT pt_unassigned=",
		"printf '" + string(PTGo) + "' > $tty",
		`sed "s/^/pt-com1[$d] /"`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q", want)
		}
	}
	// Order: the standalone server is stopped before the guest is let
	// go on, and the main godm must outlive it.
	order := []string{"xl create -p", "passed through to", "xl unpause", "FW WAIT", "kill -TERM", "PT-EXIT", "kill -0 $main", "printf '!'", "gone $d"}
	at := 0
	for _, w := range order {
		i := strings.Index(s[at:], w)
		if i < 0 {
			t.Fatalf("script lacks %q after position %d", w, at)
		}
		at += i
	}
}

// TestPTCheck runs the harness's check of the passthrough scenario on a
// made-up console: answers equal to xensim's pass; a wrong read, a
// missing END, a shared server id or a failed exit fail it.
func TestPTCheck(t *testing.T) {
	probes := PTProbes()
	want, _ := ptSimAnswers(t, probes)
	console := func(change func(i int, v uint64) uint64, end bool) []Line {
		var l []Line
		reads := 0
		for i, p := range probes {
			if p.Step.Write || IsPTWait(p) {
				continue
			}
			reads++
			l = append(l, Line{Text: "[passthrough] pt-com1[7] FW " + strconv.Itoa(i) + " " + strconv.FormatUint(change(i, want[i]), 16)})
		}
		if end {
			l = append(l, Line{Text: "[passthrough] pt-com1[7] FW END " + strconv.Itoa(reads)})
		}
		return l
	}
	same := func(_ int, v uint64) uint64 { return v }
	good := map[string]string{"domid": "7", "main_server": "0", "pt_server": "1", "pt_exit": "0", "pt_unassigned": "1"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range good {
			m[a] = b
		}
		m[k] = v
		return m
	}
	for _, c := range []struct {
		name   string
		lines  []Line
		fields map[string]string
		ok     bool
	}{
		{"good", console(same, true), good, true},
		{"wrong read", console(func(i int, v uint64) uint64 {
			if i == 1 {
				return v ^ 1
			}
			return v
		}, true), good, false},
		{"no END", console(same, false), good, false},
		{"one server", console(same, true), with("pt_server", "0"), false},
		{"exit 1", console(same, true), with("pt_exit", "1"), false},
		{"mapped", console(same, true), with("pt_unassigned", "0"), false},
	} {
		errs := ptProblems(&Outcome{Lines: c.lines}, Result{Fields: c.fields}, probes, want)
		if (len(errs) == 0) != c.ok {
			t.Errorf("%s: problems %q", c.name, errs)
		}
	}
}

var opsLine = regexp.MustCompile(`(p[ta]-com1)\[(\d+)\] FW ((?:\S+ \S+ ?)+)$`)

// opsAnswers collects what an ops firmware relayed as "<prefix>[dom] FW
// ..." lines: each read by index, and the count of its END line (-1:
// none).
func opsAnswers(o *Outcome, prefix, dom string) (map[int]uint64, int, []string) {
	var bad []string
	got := map[int]uint64{}
	end := -1
	for _, l := range o.Lines {
		m := opsLine.FindStringSubmatch(strings.TrimSpace(l.Text))
		if m == nil || m[1] != prefix || m[2] != dom {
			continue
		}
		f := strings.Fields(m[3])
		if f[0] == "END" {
			end, _ = strconv.Atoi(f[1])
			continue
		}
		for j := 0; j+1 < len(f); j += 2 {
			i, err1 := strconv.Atoi(f[j])
			v, err2 := strconv.ParseUint(f[j+1], 16, 32)
			if err1 != nil || err2 != nil {
				bad = append(bad, fmt.Sprintf("firmware line %q: bad pair %q %q", l.Text, f[j], f[j+1]))
				continue
			}
			got[i] = v
		}
	}
	return got, end, bad
}

// ptProblems checks the passthrough scenario's outcome: every read the
// firmware relayed (pt-com1[<domid>]) equals xensim's answer (want) and
// the fixed facts, its END line counts them all, the two servers had
// different ids, the standalone server exited 0 on SIGTERM and refused
// to map the function Xen had not assigned.
func ptProblems(o *Outcome, r Result, probes []Probe, want map[int]uint64) []string {
	got, end, bad := opsAnswers(o, "pt-com1", r.Fields["domid"])
	reads := 0
	for i, p := range probes {
		if p.Step.Write || IsPTWait(p) {
			continue
		}
		reads++
		g, ok := got[i]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("probe %d (%s): no answer from the firmware", i, p.Step))
		case g != want[i]:
			bad = append(bad, fmt.Sprintf("probe %d (%s): real Xen %#x, xensim %#x", i, p.Step, g, want[i]))
		case p.Known != nil && g != *p.Known:
			bad = append(bad, fmt.Sprintf("probe %d (%s): %#x, want %#x (%s)", i, p.Step, g, *p.Known, p.Why))
		}
	}
	if end != reads {
		bad = append(bad, fmt.Sprintf("firmware END line says %d reads (-1: none seen), the probe list has %d", end, reads))
	}
	ms, ps := r.Fields["main_server"], r.Fields["pt_server"]
	if ms == "" || ps == "" || ms == ps {
		bad = append(bad, fmt.Sprintf("ioreq servers: main %q, standalone %q: want two different ids on the domain", ms, ps))
	}
	if r.Fields["pt_exit"] != "0" {
		bad = append(bad, fmt.Sprintf("the standalone server exited with %q on SIGTERM, want 0", r.Fields["pt_exit"]))
	}
	// The guest enabled memory decoding on a function Xen has not
	// assigned (the domain has no IOMMU context): nothing may be mapped.
	if n, _ := strconv.Atoi(r.Fields["pt_unassigned"]); n < 1 {
		bad = append(bad, fmt.Sprintf("the standalone server did not refuse the unassigned function (%q refusals)", r.Fields["pt_unassigned"]))
	}
	return bad
}

// checkPassthrough is TestRealXen's check of the passthrough scenario.
func checkPassthrough(t *testing.T, o *Outcome, r Result, probes []Probe) {
	want, _ := ptSimAnswers(t, probes)
	for _, b := range ptProblems(o, r, probes, want) {
		t.Error(b)
	}
	t.Logf("ioreq servers on dom%s: main %s, standalone %s; standalone exit %s, refusals of the unassigned function %s",
		r.Fields["domid"], r.Fields["main_server"], r.Fields["pt_server"], r.Fields["pt_exit"], r.Fields["pt_unassigned"])
}

// paProblems checks the pci-attach scenario's outcome: every read of
// the firmware (pa-com1[<domid>]) with its fixed answer where it has
// one, the END line, and dom0's facts: the function bound to pciback,
// the attach refused under godm's sandbox with its line,
// listed by xl pci-list and HMP info pci at PTSlot after the attach,
// gone after the detach, and no IOMMU page fault in Xen's log.
func paProblems(o *Outcome, r Result, ops []FWOp) []string {
	got, end, bad := opsAnswers(o, "pa-com1", r.Fields["domid"])
	reads := 0
	for i, op := range ops {
		if op.Write || op.Kind == FWWait {
			continue
		}
		reads++
		g, ok := got[i]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("op %d: no answer from the firmware", i))
		case op.Known != nil && g != *op.Known:
			bad = append(bad, fmt.Sprintf("op %d: %#x, want %#x (%s)", i, g, *op.Known, op.Why))
		}
	}
	if end != reads {
		bad = append(bad, fmt.Sprintf("firmware END line says %d reads (-1: none seen), the op list has %d", end, reads))
	}
	for k, v := range map[string]string{"stub": "pciback", "sandbox_refusal": "1", "attached": "1", "hmp": "1234:11e8", "detached": "yes", "io_page_faults": "0"} {
		if r.Fields[k] != v {
			bad = append(bad, fmt.Sprintf("%s = %q, want %q", k, r.Fields[k], v))
		}
	}
	return bad
}

// checkPCIAttach is TestRealXen's check of the pci-attach scenario.
func checkPCIAttach(t *testing.T, o *Outcome, r Result) {
	for _, b := range paProblems(o, r, PAOps()) {
		t.Error(b)
	}
	t.Logf("xl pci-attach of %s (bound to %s) at slot %d, then pci-detach: %v", r.Fields["bdf"], r.Fields["stub"], PTSlot, r.Fields)
}

// TestIOMMUConfig: the IOMMU box is the box's command line on q35 with
// QEMU's AMD IOMMU, an edu function and Xen's IOMMU on; the default box
// is unchanged (pc, no extra devices).
func TestIOMMUConfig(t *testing.T) {
	base := Config{Assets: Assets{Dir: "/a"}, Initramfs: "/i.cpio"}
	def := strings.Join(base.Args(), " ")
	if !strings.Contains(def, "-machine pc ") || strings.Contains(def, "iommu") || strings.Contains(def, "edu") {
		t.Errorf("default box: %s", def)
	}
	c := IOMMUConfig(base)
	args := c.Args()
	got := strings.Join(args, " ")
	for _, want := range []string{"-machine q35 ", " -device amd-iommu -device edu", "noreboot iommu=on"} {
		if !strings.Contains(got, want) {
			t.Errorf("IOMMU box lacks %q: %s", want, got)
		}
	}
	// The Xen command line is one argument, after -append.
	for i, a := range args {
		if a == "-append" && (i+1 >= len(args) || !strings.HasSuffix(args[i+1], " iommu=on")) {
			t.Errorf("-append %q", args[i+1])
		}
	}
	if len(base.Extra) != 0 || base.Machine != "" || base.XenArgs != "" {
		t.Errorf("IOMMUConfig changed its argument: %+v", base)
	}
}

// TestPAFirmware builds the pci-attach firmware and checks its op table:
// MMIO ops at the BAR, one wait, facts on both sides of it.
func TestPAFirmware(t *testing.T) {
	ops := PAOps()
	src := OpsFirmwareSource(ops)
	if !strings.Contains(src, "#define NOPS "+strconv.Itoa(len(ops))+"\n") {
		t.Errorf("the firmware's NOPS is not %d", len(ops))
	}
	if n := strings.Count(src, fmt.Sprintf("{%#x, %d, 4, 0, 0x0},", PABAR, FWMMIO)); n != 2 {
		t.Errorf("%d MMIO reads of BAR0's first register, want 2 (before and after the detach)", n)
	}
	wait, before, after := -1, 0, 0
	for i, o := range ops {
		switch {
		case o.Kind == FWWait:
			if wait >= 0 {
				t.Fatal("two waits")
			}
			wait = i
		case o.Known != nil && wait < 0:
			before++
		case o.Known != nil:
			after++
		}
	}
	if wait < 0 || before < 4 || after < 3 {
		t.Errorf("wait at %d, %d facts before, %d after", wait, before, after)
	}
	p, err := BuildPAFirmware(t.TempDir(), "pa")
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// TestPCIAttachScenarioScript checks the pci-attach script: the function
// bound to pciback, a guest with an IOMMU context and godm as its device
// model, xl pci-attach at PTSlot before the guest runs, pci-detach
// before the go byte, and the facts paProblems checks.
func TestPCIAttachScenarioScript(t *testing.T) {
	s := PCIAttachScenario().Script
	for _, want := range []string{
		`device_model_override = "` + GodmPath + `"`, `passthrough = "enabled"`, `"-godm-sandbox", "off"`,
		"xl pci-assignable-add $bdf", "xl pci-assignable-remove $bdf",
		"XENBOX-FACT stub=", "XENBOX-FACT sandbox_refusal=", "XENBOX-FACT attached=", "XENBOX-FACT hmp=", "XENBOX-FACT detached=", "XENBOX-FACT io_page_faults=",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q", want)
		}
	}
	order := []string{"xl pci-attach pas $bdf@", "xl destroy pas", "xl create -p /tmp/pa.cfg", "xl pci-attach pa $bdf@" + strconv.Itoa(PTSlot), "xl unpause", "FW WAIT", "xl pci-detach pa $bdf", "printf '!'", "gone $d"}
	at := 0
	for _, w := range order {
		i := strings.Index(s[at:], w)
		if i < 0 {
			t.Fatalf("script lacks %q after position %d", w, at)
		}
		at += i
	}
}

// TestPACheck: paProblems passes a console with every fact right and
// fails a wrong MMIO read, a missing END or a wrong dom0 fact.
func TestPACheck(t *testing.T) {
	ops := PAOps()
	console := func(bad int, end bool) []Line {
		var l []Line
		reads := 0
		for i, o := range ops {
			if o.Write || o.Kind == FWWait {
				continue
			}
			reads++
			v := uint64(0x1234)
			if o.Known != nil {
				v = *o.Known
			}
			if i == bad {
				v ^= 0x100
			}
			l = append(l, Line{Text: "[pci-attach] pa-com1[3] FW " + strconv.Itoa(i) + " " + strconv.FormatUint(v, 16)})
		}
		if end {
			l = append(l, Line{Text: "[pci-attach] pa-com1[3] FW END " + strconv.Itoa(reads)})
		}
		return l
	}
	good := map[string]string{"domid": "3", "stub": "pciback", "sandbox_refusal": "1", "attached": "1", "hmp": "1234:11e8", "detached": "yes", "io_page_faults": "0"}
	mmioRead := -1
	for i, o := range ops {
		if o.Kind == FWMMIO && !o.Write && o.Known != nil {
			mmioRead = i
			break
		}
	}
	if errs := paProblems(&Outcome{Lines: console(-1, true)}, Result{Fields: good}, ops); len(errs) != 0 {
		t.Errorf("good console: %q", errs)
	}
	if errs := paProblems(&Outcome{Lines: console(mmioRead, true)}, Result{Fields: good}, ops); len(errs) != 1 {
		t.Errorf("a wrong MMIO read: %q", errs)
	}
	if errs := paProblems(&Outcome{Lines: console(-1, false)}, Result{Fields: good}, ops); len(errs) != 1 {
		t.Errorf("no END: %q", errs)
	}
	for _, k := range []string{"stub", "sandbox_refusal", "attached", "hmp", "detached", "io_page_faults"} {
		f := map[string]string{}
		for a, b := range good {
			f[a] = b
		}
		f[k] = "2"
		if errs := paProblems(&Outcome{Lines: console(-1, true)}, Result{Fields: f}, ops); len(errs) != 1 {
			t.Errorf("%s wrong: %q", k, errs)
		}
	}
}
