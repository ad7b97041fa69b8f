package xenbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// EnvDir names the directory of the box's assets (scripts/xenbox.sh
// prints it; scripts/test.sh exports it).
const EnvDir = "GODM_XENBOX_DIR"

// EnvDir420 names the asset directory of the Xen 4.20 box (Debian
// trixie's packages; scripts/xenbox.sh 4.20 prints it). TestRealXen runs
// the same scenarios with the same godm binary on every release set.
const EnvDir420 = "GODM_XENBOX_DIR_420"

// Assets are the unpacked Debian packages of the box (scripts/xenbox.sh).
type Assets struct{ Dir string }

// Release is the Xen release of the assets ("4.17", "4.20"): the
// "release" file scripts/xenbox.sh writes, else the one usr/lib/xen-X.Y
// of the root that holds xl.
func (a Assets) Release() (string, error) {
	if b, err := os.ReadFile(filepath.Join(a.Dir, "release")); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	m, _ := filepath.Glob(filepath.Join(a.Root(), "usr/lib/xen-*/bin/xl"))
	if len(m) != 1 {
		return "", fmt.Errorf("xenbox: %d Xen tool directories with xl in %s (run scripts/xenbox.sh)", len(m), a.Root())
	}
	return strings.TrimPrefix(filepath.Base(filepath.Dir(filepath.Dir(m[0]))), "xen-"), nil
}

// XenBin is where Debian's Xen tools of the assets' release live
// (usr/lib/xen-X.Y/bin, relative to the root).
func (a Assets) XenBin() (string, error) {
	r, err := a.Release()
	if err != nil {
		return "", err
	}
	return "usr/lib/xen-" + r + "/bin", nil
}

// HasQEMUXen reports whether the assets carry QEMU's own Xen device
// model (qemu-system-xen, at QEMUXenPath).
func (a Assets) HasQEMUXen() bool { return fileExists(filepath.Join(a.Root(), QEMUXenPath)) }

// XenELF is the hypervisor as an ELF32 (QEMU's multiboot loader).
func (a Assets) XenELF() string { return filepath.Join(a.Dir, "xen.elf") }

// Vmlinux is the dom0 kernel's uncompressed ELF image.
func (a Assets) Vmlinux() string { return filepath.Join(a.Dir, "vmlinux") }

// Root is the tree the packages were unpacked into.
func (a Assets) Root() string { return filepath.Join(a.Dir, "root") }

// Modules holds the dom0 kernel's Xen modules.
func (a Assets) Modules() string { return filepath.Join(a.Dir, "modules") }

// Check reports the first asset that is missing.
func (a Assets) Check() error {
	bin, err := a.XenBin()
	if err != nil {
		return err
	}
	for _, p := range []string{a.XenELF(), a.Vmlinux(), a.Root(), a.Modules(),
		filepath.Join(a.Root(), bin, "xl"), filepath.Join(a.Root(), "bin/busybox")} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("xenbox: asset missing (run scripts/xenbox.sh): %w", err)
		}
	}
	return nil
}

// Config is one boot of the box.
type Config struct {
	Assets    Assets
	Initramfs string // the dom0 root file system (cpio)
	MemMB     int    // the box's RAM (default 2048)
	CPUs      int    // its CPUs (default 2)
	QEMU      string // default qemu-system-x86_64
	// Log receives every console line with its time since QEMU started.
	Log io.Writer
	// Stall is how long the console may stay silent once the toolstack
	// is up before the box asks Xen what its CPUs are doing (default
	// 60 s; negative: never).
	Stall time.Duration
	// Wedge is how long the console may stay silent after Xen's debug
	// keys were pressed before the box is declared wedged: QEMU's
	// monitor then says what its CPUs are doing and the boot ends with
	// an error instead of running to ctx's end (default 90 s; negative:
	// never). A hypervisor that answers its keys is not wedged.
	Wedge time.Duration
	// Monitor is a Unix socket path for QEMU's human monitor ("" in
	// Args: none; Boot makes one for its wedge report).
	Monitor string
	// Machine is QEMU's machine type (default "pc").
	Machine string
	// Extra are QEMU arguments appended to the box's (devices for dom0,
	// e.g. "-device", "edu").
	Extra []string
	// XenArgs are appended to Xen's command line (e.g. "iommu=on").
	XenArgs string
}

// stallKeys switch the box's serial input from dom0 to Xen (three
// Ctrl-A), press Xen's debug keys and switch back (xen/drivers/char/
// console.c: switch_code 'A'; common/keyhandler.c: 'd' registers and
// stacks of every CPU, 'q' every domain's vCPUs with their pending
// events, 'r' the scheduler's run queues).
const stallKeys = "\x01\x01\x01dqr\x01\x01\x01"

// maxStallDumps bounds how often a silent box is asked.
const maxStallDumps = 2

// Line is one console line (the Xen console, dom0's console on it, the
// device models' relayed output) with its time since QEMU started.
type Line struct {
	T    time.Duration
	Text string
}

// Result is a scenario's outcome as dom0's /init reported it
// ("XENBOX-RESULT name=N status=pass|fail key=value ..."), with the
// times (since QEMU started) of its begin and result lines.
type Result struct {
	Name       string
	Status     string
	Fields     map[string]string
	Begin, End time.Duration
}

// Passed reports whether dom0 saw the scenario pass.
func (r Result) Passed() bool { return r.Status == "pass" }

// Outcome is what one boot produced.
type Outcome struct {
	Lines   []Line
	Results []Result
	Up      time.Duration // the toolstack came up (XENBOX-UP); 0: never
	Done    bool          // /init finished its scenarios (XENBOX-DONE)
	// Wedged: the console stayed silent even after Xen's debug keys
	// (Config.Wedge); Diag then holds what QEMU's monitor said of the
	// box's CPUs.
	Wedged bool
	Diag   string
	Total  time.Duration
}

// Result returns the named scenario's result.
func (o *Outcome) Result(name string) (Result, bool) {
	for _, r := range o.Results {
		if r.Name == name {
			return r, true
		}
	}
	return Result{}, false
}

// LinesWith returns the text of the lines that start with prefix, with
// the prefix removed.
func (o *Outcome) LinesWith(prefix string) []string {
	var out []string
	for _, l := range o.Lines {
		if s, ok := strings.CutPrefix(l.Text, prefix); ok {
			out = append(out, s)
		}
	}
	return out
}

// Markers dom0's /init prints.
const (
	markUp     = "XENBOX-UP"
	markBegin  = "XENBOX-BEGIN "
	markResult = "XENBOX-RESULT "
	markDone   = "XENBOX-DONE"
)

// maxLines bounds what a boot keeps of the console.
const maxLines = 500000

// Args returns QEMU's command line for the box (REAL-XEN: multiboot Xen,
// the dom0 kernel and initramfs as modules, an SVM CPU with nested
// paging, which TCG emulates).
func (c Config) Args() []string {
	mem := c.MemMB
	if mem == 0 {
		mem = 2048
	}
	machine := c.Machine
	if machine == "" {
		machine = "pc"
	}
	xen := "console=com1 com1=115200,8n1 dom0_mem=1024M,max:1024M loglvl=all guest_loglvl=all noreboot"
	if c.XenArgs != "" {
		xen += " " + c.XenArgs
	}
	args := []string{"-machine", machine, "-accel", "tcg", "-cpu", "qemu64,+svm,+npt",
		"-m", fmt.Sprint(mem), "-smp", fmt.Sprint(c.cpus()),
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-monitor", c.monitorArg(),
		"-kernel", c.Assets.XenELF(),
		"-append", xen,
		// Multiboot modules are comma-separated; each one's command
		// line follows its file name.
		"-initrd", c.Assets.Vmlinux() + " console=hvc0 earlyprintk=xen rdinit=/init loglevel=6," + c.Initramfs,
	}
	return append(args, c.Extra...)
}

func (c Config) monitorArg() string {
	if c.Monitor == "" {
		return "none"
	}
	return "unix:" + c.Monitor + ",server=on,wait=off"
}

// Boot runs the box until dom0's /init reports it is done, ctx ends or
// QEMU exits. QEMU is killed on every path. The outcome holds what was
// seen even when an error is returned.
func Boot(ctx context.Context, c Config) (*Outcome, error) {
	if err := c.Assets.Check(); err != nil {
		return nil, err
	}
	if strings.ContainsAny(c.Initramfs+c.Assets.Vmlinux(), ", ") {
		return nil, errors.New("xenbox: asset paths must not contain commas or spaces (QEMU's -initrd list)")
	}
	q := c.QEMU
	if q == "" {
		q = "qemu-system-x86_64"
	}
	stall, wedge := c.Stall, c.Wedge
	if stall == 0 {
		stall = 60 * time.Second
	}
	if wedge == 0 {
		wedge = 90 * time.Second
	}
	if stall > 0 && wedge > 0 && c.Monitor == "" {
		d, err := os.MkdirTemp("", "xenbox-hmp")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		c.Monitor = filepath.Join(d, "hmp.sock")
	}
	if c.Log != nil {
		c.Log = &syncWriter{w: c.Log}
	}
	cmd := exec.Command(q, c.Args()...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	// Killed with this process even when it dies without returning here
	// (a test binary's timeout panic).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &limitedWriter{w: &stderr, n: 64 << 10}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("xenbox: %w", err)
	}
	var once sync.Once
	kill := func() { once.Do(func() { cmd.Process.Kill() }) }
	defer func() { kill(); cmd.Wait() }()
	stop := context.AfterFunc(ctx, kill)
	defer stop()
	var last atomic.Int64 // console time of the last line, ns since start; 0 until the toolstack is up
	var wedged atomic.Bool
	var diag string
	if stall > 0 {
		done := make(chan struct{})
		watched := make(chan struct{})
		defer func() { close(done); <-watched }()
		go func() {
			defer close(watched)
			if watchStall(stdin, &last, start, stall, wedge, done) {
				diag = monitorDump(c.Monitor, c.cpus()) + threadStates(cmd.Process.Pid, true)
				if c.Log != nil {
					for _, l := range strings.Split(strings.TrimRight(diag, "\n"), "\n") {
						fmt.Fprintf(c.Log, "[%8.3f] [hmp] %s\n", time.Since(start).Seconds(), l)
					}
				}
				wedged.Store(true)
				kill()
			}
		}()
	}

	o := &Outcome{}
	open := map[string]time.Duration{}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		t := time.Since(start)
		text := strings.TrimRight(strings.ReplaceAll(sc.Text(), "\r", ""), " ")
		if len(o.Lines) < maxLines {
			o.Lines = append(o.Lines, Line{T: t, Text: text})
		}
		if c.Log != nil {
			fmt.Fprintf(c.Log, "[%8.3f] %s\n", t.Seconds(), text)
		}
		// Markers may follow other output on the same line (the Xen
		// console interleaves); look for them anywhere.
		switch {
		case strings.Contains(text, markUp) && o.Up == 0:
			o.Up = t
			last.Store(int64(t))
		case strings.Contains(text, markBegin):
			f := fields(text[strings.Index(text, markBegin)+len(markBegin):])
			open[f["name"]] = t
		case strings.Contains(text, markResult):
			f := fields(text[strings.Index(text, markResult)+len(markResult):])
			r := Result{Name: f["name"], Status: f["status"], Fields: f, Begin: open[f["name"]], End: t}
			o.Results = append(o.Results, r)
		case strings.Contains(text, markDone):
			o.Done = true
		}
		if o.Up != 0 {
			last.Store(int64(t))
		}
		if o.Done {
			break
		}
	}
	o.Total = time.Since(start)
	if o.Done {
		return o, nil
	}
	kill()
	werr := cmd.Wait()
	if wedged.Load() {
		o.Wedged = true
		// watchStall's goroutine wrote diag before it killed QEMU,
		// which ended the scan above.
		o.Diag = diag
		return o, fmt.Errorf("xenbox: the box is wedged: its console stayed silent for %v and %v more after Xen's debug keys (QEMU's monitor on its CPUs follows in the log)", stall, wedge)
	}
	if ctx.Err() != nil {
		return o, fmt.Errorf("xenbox: the box did not finish in time: %w", ctx.Err())
	}
	return o, fmt.Errorf("xenbox: QEMU exited before the scenarios finished (%v): %s", werr, lastLines(stderr.String(), 5))
}

// watchStall presses Xen's debug keys when the console has been silent
// for stall since the toolstack came up (a box that stops making
// progress then says where its CPUs are), at most maxStallDumps times.
// It returns true when the console stayed silent for wedge after the
// keys too (neither dom0 nor Xen answers: the box is wedged), false
// when done closes.
func watchStall(w io.WriteCloser, last *atomic.Int64, start time.Time, stall, wedge time.Duration, done <-chan struct{}) bool {
	defer w.Close()
	step := min(stall, wedge) / 4
	if wedge <= 0 {
		step = stall / 4
	}
	tick := time.NewTicker(step)
	defer tick.Stop()
	dumps := 0
	var dumped int64          // the silent line the keys were pressed after
	var pressed time.Duration // when, since start
	for {
		select {
		case <-done:
			return false
		case <-tick.C:
		}
		l := last.Load()
		now := time.Since(start)
		if l != 0 && l == dumped && wedge > 0 && now-pressed >= wedge {
			return true
		}
		if dumps >= maxStallDumps || l == 0 || l == dumped || now-time.Duration(l) < stall {
			continue
		}
		dumped, pressed = l, now
		dumps++
		if _, err := io.WriteString(w, stallKeys); err != nil {
			pressed = 1<<63 - 1 // no keys, no wedge verdict
		}
	}
}

// monitorDump asks QEMU's human monitor at path what the box's cpus
// CPUs are doing: every CPU's registers and the instructions at its
// program counter (a guest in Xen's L2 shows its own state). Errors
// become part of the text.
func monitorDump(path string, cpus int) string {
	var b strings.Builder
	conn, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return fmt.Sprintf("monitor: %v\n", err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	// Each command's answer ends at the next prompt.
	const prompt = "(qemu) "
	readPrompt := func() (string, error) {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		var sb strings.Builder
		for !strings.HasSuffix(sb.String(), prompt) {
			c, err := r.ReadByte()
			if err != nil {
				return sb.String(), err
			}
			if sb.Len() < 1<<20 {
				sb.WriteByte(c)
			}
		}
		return strings.TrimSuffix(sb.String(), prompt), nil
	}
	if _, err := readPrompt(); err != nil {
		return fmt.Sprintf("monitor: no prompt: %v\n", err)
	}
	cmds := []string{"info cpus", "info registers -a"}
	for i := range cpus {
		cmds = append(cmds, fmt.Sprintf("cpu %d", i), "x/8i $pc")
	}
	for _, cmd := range cmds {
		fmt.Fprintf(&b, "%s%s\n", prompt, cmd)
		conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
			fmt.Fprintf(&b, "monitor: %v\n", err)
			break
		}
		out, err := readPrompt()
		// The monitor echoes the command line with terminal escapes;
		// keep the answer's lines.
		if _, rest, ok := strings.Cut(out, "\n"); ok {
			out = rest
		}
		b.WriteString(strings.ReplaceAll(out, "\r", ""))
		if err != nil {
			fmt.Fprintf(&b, "monitor: %v\n", err)
			break
		}
	}
	return b.String()
}

// threadStates says what each of QEMU's threads is doing as the host
// sees it (proc(5): state R running, S sleeping; wchan), and their
// stacks when gdb is installed: a QEMU whose monitor does not answer is
// itself stuck, not Xen.
func threadStates(pid int, stacks bool) string {
	var b strings.Builder
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	for _, t := range tasks {
		comm, _ := os.ReadFile(filepath.Join(t, "comm"))
		stat, _ := os.ReadFile(filepath.Join(t, "stat"))
		wchan, _ := os.ReadFile(filepath.Join(t, "wchan"))
		// stat: "tid (comm) S ...": the state follows the last ')'.
		st := "?"
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
			st = string(stat[i+2])
		}
		fmt.Fprintf(&b, "thread %s %s state %s wchan %s\n", filepath.Base(t), strings.TrimSpace(string(comm)), st, wchan)
	}
	if gdb, err := exec.LookPath("gdb"); err == nil && stacks {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, _ := exec.CommandContext(ctx, gdb, "-p", fmt.Sprint(pid), "-batch", "-nx", "-ex", "thread apply all bt 12").CombinedOutput()
		if len(out) > 64<<10 {
			out = out[:64<<10]
		}
		b.Write(out)
	}
	return b.String()
}

func (c Config) cpus() int {
	if c.CPUs == 0 {
		return 2
	}
	return c.CPUs
}

// syncWriter serialises the console's and the wedge report's writes to
// the log.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// fields parses "key=value key=value" (values without spaces).
func fields(s string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Fields(s) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return len(p), nil
	}
	q := p
	if len(q) > l.n {
		q = q[:l.n]
	}
	l.n -= len(q)
	l.w.Write(q)
	return len(p), nil
}
