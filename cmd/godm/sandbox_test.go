package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"godm/hyp/xensim"
	"godm/hyp/xensim/xenstored"
	"godm/internal/sandbox"

	"golang.org/x/sys/unix"
)

// The sandbox tests run godm as a real child process: this test binary,
// re-executed with sandboxChildEnv set, simulates Xen in its own process
// (xensim is in-process) and runs godm serve on it with the real
// sandbox.Apply. A harness goroutine in the child plays the guest on
// the parent's command, through the simulated vCPU, after the drop; so
// the guest's accesses, godm's answers and the serial output all happen
// under the seccomp filter, as on a real host.
const (
	sandboxChildEnv = "GODM_TEST_SANDBOX_CHILD"
	sandboxDirEnv   = "GODM_TEST_SANDBOX_DIR"
)

// sandboxChildMain runs the test binary as the sandboxed child when the
// environment asks for it (TestMain calls it first).
func sandboxChildMain() {
	if mode := os.Getenv(sandboxChildEnv); mode != "" {
		os.Exit(sandboxChild(mode))
	}
}

// sandboxChild is the child's main; how is "serve" (godm serve, serial
// on stdout) or "qemu" (libxl's argv without dm_restrict, sockets and
// xenstored in the directory sandboxDirEnv names), then the sandbox
// mode: "serve on", "qemu log". Commands on fd 3 (the guest's COM1 reads
// stdin), once it printed READY:
// "work" (a PCI configuration read of 00:00.0 and "hi\n" to COM1; prints
// "PCI xxxxxxxx" then "WORKED"), "forbidden" (execve, outside the
// allow-list), "quit". SIGTERM ends godm as libxl's would; so does QMP's
// quit.
func sandboxChild(how string) int {
	fail := func(f string, a ...any) int { fmt.Fprintf(os.Stderr, "child: "+f+"\n", a...); return 1 }
	kind, mode, _ := strings.Cut(how, " ")
	cmdFile := os.NewFile(3, "commands") // before the sandbox: NewFile calls fcntl
	sim := xensim.New(xensim.Config{})
	defer sim.Close()
	dom, err := sim.CreateDomain(xensim.DomainConfig{VCPUs: 1, RAM: []xensim.Region{{GPA: 0, Size: 16 << 20}}})
	if err != nil {
		return fail("%v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ready := make(chan struct{})
	done := make(chan error, 1)
	switch kind {
	case "serve":
		args := []string{"-domid", strconv.Itoa(int(dom.ID())), "-vcpus", "1", "-mem", "16", "-serial", "stdio", "-sandbox", mode}
		go func() {
			done <- cmdServe(ctx, args, os.Stderr, serveEnv{Kernel: sim.Kernel(0), Sandbox: sandbox.Apply,
				Ready: func() { close(ready) }})
		}()
	case "qemu":
		dir := os.Getenv(sandboxDirEnv)
		xs := xenstored.New(xenstored.Config{})
		defer xs.Close()
		if err := xs.IntroduceDomain(dom.ID()); err != nil {
			return fail("%v", err)
		}
		sock := filepath.Join(dir, "xenstored")
		if err := xs.Listen(sock); err != nil {
			return fail("%v", err)
		}
		env := map[string]string{"XENSTORED_PATH": sock, "XEN_DOMAIN_ID": fmt.Sprint(int(dom.ID()))}
		// COM2 a file: truncated once the machine starts, after the drop
		// (xl.cfg serial = [ "pty", "file:..." ]).
		argv := strings.Fields(strings.Replace(libxlArgv(int(dom.ID()), dir), "-serial pty",
			"-serial pty -serial file:"+filepath.Join(dir, "com2.log"), 1) + " -godm-sandbox " + mode)
		go func() {
			done <- cmdQEMU(ctx, argv, os.Stderr, qemuEnv{Kernel: sim.Kernel(0), Getenv: func(k string) string { return env[k] },
				DropPrivileges: dropPrivileges, Sandbox: sandbox.Apply})
		}()
		go func() {
			p := fmt.Sprintf("/local/domain/0/device-model/%d/state", dom.ID())
			if xs.WaitValue(ctx, p, []byte("running")) == nil {
				close(ready)
			}
		}()
	default:
		return fail("unknown child %q", how)
	}
	select {
	case <-ready:
	case err := <-done:
		return fail("godm: %v", err)
	}
	fmt.Fprintln(os.Stderr, "READY", os.Getpid())
	cmds := make(chan string)
	go func() {
		sc := bufio.NewScanner(cmdFile)
		for sc.Scan() {
			cmds <- sc.Text()
		}
		close(cmds)
	}()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fail("serve: %v", err)
			}
			fmt.Fprintln(os.Stderr, "SERVED")
			return 0
		case c, ok := <-cmds:
			switch {
			case !ok || c == "quit":
				stop()
				if err := <-done; err != nil {
					return fail("serve: %v", err)
				}
				fmt.Fprintln(os.Stderr, "SERVED")
				return 0
			case c == "work":
				v, err := dom.VCPU(0).PCIConfigRead(0, 0, 4)
				if err != nil {
					return fail("config read: %v", err)
				}
				fmt.Fprintf(os.Stderr, "PCI %08x\n", v)
				for _, b := range []byte("hi\n") {
					if err := dom.VCPU(0).Out(0x3f8, 1, uint64(b)); err != nil {
						return fail("COM1: %v", err)
					}
				}
				fmt.Fprintln(os.Stderr, "WORKED")
			case c == "forbidden":
				_, _, errno := unix.RawSyscall(unix.SYS_EXECVE, 0, 0, 0)
				return fail("execve survived the filter: %v", errno)
			}
		}
	}
}

// sandboxedChild starts the child in mode and waits for READY.
type sandboxedChild struct {
	cmd    *exec.Cmd
	pid    int // the child's (not strace's)
	in     io.WriteCloser
	lines  chan string // the harness's lines and godm's log (stderr)
	serial syncBuf     // the guest's COM1 under godm serve (stdout)
	log    syncBuf     // every line of stderr
}

// sandboxTraceEnv names a directory: each child then runs in log mode
// under strace -f, its trace in <dir>/<test>.st; that is how the
// allow-list is measured (internal/sandbox/allowed_amd64.go).
const sandboxTraceEnv = "GODM_TEST_SANDBOX_STRACE"

func startSandboxedChild(t *testing.T, how, dir string) *sandboxedChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if tr := os.Getenv(sandboxTraceEnv); tr != "" {
		how = strings.Replace(how, " on", " log", 1)
		st := filepath.Join(tr, strings.ReplaceAll(t.Name(), "/", "_")+".st")
		cmd = exec.Command("strace", "-f", "-qq", "-o", st, os.Args[0], "-test.run=^$")
	}
	cmd.Env = append(os.Environ(), sandboxChildEnv+"="+how, sandboxDirEnv+"="+dir)
	c := &sandboxedChild{cmd: cmd, lines: make(chan string, 64)}
	cmd.Stdout = &c.serial
	// Commands go on fd 3: godm's -serial stdio reads stdin.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.ExtraFiles = []*os.File{pr}
	c.in = pw
	t.Cleanup(func() { pw.Close() })
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			fmt.Fprintln(&c.log, sc.Text())
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	r := c.expect(t, "READY ")
	c.pid, _ = strconv.Atoi(strings.TrimPrefix(r, "READY "))
	return c
}

// expect reads the child's lines until one starts with prefix, and
// returns it.
func (c *sandboxedChild) expect(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(2 * time.Minute)
	var seen []string
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				c.cmd.Wait()
				t.Fatalf("child ended before %q (%v); output %q; log:\n%s", prefix, c.cmd.ProcessState, seen, &c.log)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
			seen = append(seen, l)
		case <-timeout:
			t.Fatalf("no %q from the child in 2 minutes; output %q; log:\n%s", prefix, seen, &c.log)
		}
	}
}

func (c *sandboxedChild) send(t *testing.T, cmd string) {
	t.Helper()
	if _, err := io.WriteString(c.in, cmd+"\n"); err != nil {
		t.Fatal(err)
	}
}

// procField returns the value of a "Name:\tvalue" line of a /proc file.
func procField(t *testing.T, path, name string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	t.Fatalf("%s: no %s line in\n%s", path, name, b)
	return ""
}

// procLimit returns the soft and hard values of a /proc/<pid>/limits row.
func procLimit(t *testing.T, pid int, name string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name); ok {
			f := strings.Fields(v)
			if len(f) >= 2 {
				return f[0] + " " + f[1]
			}
		}
	}
	t.Fatalf("no %q in /proc/%d/limits:\n%s", name, pid, b)
	return ""
}

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the sandbox switches users and chroots, which needs root (CI runs as root)")
	}
}

// TestSandboxedServe: godm serve, deprivileged by default, as a child
// process: /proc shows the filter, no_new_privs, the domain's own user,
// an empty root and the limits; the guest is still served; a call
// outside the allow-list kills the process with SIGSYS.
func TestSandboxedServe(t *testing.T) {
	needRoot(t)
	c := startSandboxedChild(t, "serve on", "")
	pid := c.pid
	status := fmt.Sprintf("/proc/%d/status", pid)
	if got := procField(t, status, "Seccomp"); got != "2" {
		t.Errorf("Seccomp: %s, want 2 (filter)", got)
	}
	if got := procField(t, status, "NoNewPrivs"); got != "1" {
		t.Errorf("NoNewPrivs: %s, want 1", got)
	}
	// The domain's own user: libxl's range when the host has it.
	uid, gid := sandbox.DefaultUIDBase+1, sandbox.DefaultUIDBase+1 // xensim's first domain is 1
	if u, err := user.Lookup("xen-qemuuser-range-base"); err == nil {
		b, _ := strconv.Atoi(u.Uid)
		uid = b + 1
		gid, _ = strconv.Atoi(u.Gid)
	}
	if got, want := procField(t, status, "Uid"), strings.Repeat(fmt.Sprint(uid)+" ", 4); got != want[:len(want)-1] {
		t.Errorf("Uid: %s, want %d everywhere", got, uid)
	}
	if got, want := procField(t, status, "Gid"), strings.Repeat(fmt.Sprint(gid)+" ", 4); got != want[:len(want)-1] {
		t.Errorf("Gid: %s, want %d everywhere", got, gid)
	}
	if got := procField(t, status, "Groups"); got != "" {
		t.Errorf("Groups: %q, want none", got)
	}
	root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(root, "godm-root-") || !strings.HasSuffix(root, " (deleted)") {
		t.Errorf("root directory %q, want a removed godm-root-* directory", root)
	}
	// A removed directory lists nothing (getdents: ENOENT).
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/root/", pid)); !errors.Is(err, unix.ENOENT) || len(ents) != 0 {
		t.Errorf("root directory holds %v (%v), want nothing (removed)", ents, err)
	}
	for _, l := range []struct{ name, want string }{
		{"Max core file size", "0 0"},
		{"Max file size", "0 0"},
		{"Max open files", fmt.Sprintf("%d %d", sandbox.MaxFiles, sandbox.MaxFiles)},
		{"Max processes", fmt.Sprintf("%d %d", sandbox.MaxThreads, sandbox.MaxThreads)},
	} {
		if got := procLimit(t, pid, l.name); got != l.want {
			t.Errorf("%s: %s, want %s", l.name, got, l.want)
		}
	}

	// The guest still runs: the host bridge answers, COM1 prints.
	c.send(t, "work")
	if got := c.expect(t, "PCI "); got != "PCI 12378086" {
		t.Errorf("00:00.0 vendor/device read %q, want i440FX's 12378086", got)
	}
	c.expect(t, "WORKED")
	// The UART hands its bytes to the back-end asynchronously.
	for deadline := time.Now().Add(2 * time.Minute); c.serial.String() != "hi\n"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("COM1 output %q, want %q", c.serial.String(), "hi\n")
		}
	}

	c.send(t, "forbidden")
	err = c.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child after a forbidden call: %v, want killed by SIGSYS", err)
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
		t.Errorf("child after a forbidden call: %v, want killed by SIGSYS; log:\n%s", ws, &c.log)
	}
}

// TestSandboxedServeEnds: the sandboxed godm still ends cleanly on
// SIGTERM (signal delivery, unmapping, closing, exit are all allowed).
func TestSandboxedServeEnds(t *testing.T) {
	needRoot(t)
	c := startSandboxedChild(t, "serve on", "")
	c.send(t, "work")
	c.expect(t, "WORKED")
	if err := syscall.Kill(c.pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	c.expect(t, "SERVED")
	if err := c.cmd.Wait(); err != nil {
		t.Errorf("child after SIGTERM: %v; log:\n%s", err, &c.log)
	}
}

// TestSandboxedLibxl: libxl's argv without dm_restrict, sandboxed by
// default: readiness still reaches xenstore, QMP still answers libxl's
// commands after the drop, passthrough hot-plug is refused with the
// opt-out named, and QMP's quit ends the process cleanly.
func TestSandboxedLibxl(t *testing.T) {
	needRoot(t)
	needPTY(t)
	dir := t.TempDir()
	c := startSandboxedChild(t, "qemu on", dir)
	pid := c.pid
	status := fmt.Sprintf("/proc/%d/status", pid)
	if got := procField(t, status, "Seccomp"); got != "2" {
		t.Errorf("Seccomp: %s, want 2 (filter)", got)
	}
	if got := procField(t, status, "NoNewPrivs"); got != "1" {
		t.Errorf("NoNewPrivs: %s, want 1", got)
	}
	if got := procField(t, status, "Uid"); strings.HasPrefix(got, "0 ") {
		t.Errorf("Uid: %s, want the domain's own user", got)
	}
	q := qmpDial(t, filepath.Join(dir, "qmp-libxl-1"))
	if s := q.status(); s != "running" {
		t.Errorf("query-status %q", s)
	}
	if ret, e := q.do("query-chardev", nil); e != "" || !strings.Contains(fmt.Sprint(ret), "pty:/dev/pts/") {
		t.Errorf("query-chardev %v %s", ret, e)
	}
	if ret, e := q.do("query-pci", nil); e != "" || !strings.Contains(fmt.Sprint(ret), "4663") { // 0x1237
		t.Errorf("query-pci %v %s", ret, e)
	}
	for _, cmd := range []string{"stop", "cont"} {
		if _, e := q.do(cmd, nil); e != "" {
			t.Errorf("%s: %s", cmd, e)
		}
	}
	_, e := q.do("device_add", map[string]any{"driver": "xen-pci-passthrough", "id": "pt", "hostaddr": "0000:07:00.0"})
	if !strings.Contains(e, "-godm-sandbox off") {
		t.Errorf("device_add xen-pci-passthrough under the sandbox: %q, want the opt-out named", e)
	}
	c.send(t, "work")
	if got := c.expect(t, "PCI "); got != "PCI 12378086" {
		t.Errorf("00:00.0 vendor/device read %q, want i440FX's 12378086", got)
	}
	c.expect(t, "WORKED")
	if _, e := q.do("quit", nil); e != "" {
		t.Fatal(e)
	}
	c.expect(t, "SERVED")
	if err := c.cmd.Wait(); err != nil {
		t.Errorf("child after quit: %v; log:\n%s", err, &c.log)
	}
}
