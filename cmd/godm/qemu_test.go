package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"godm/devices"
	"godm/hyp/domctl"
	"godm/hyp/hcall"
	"godm/hyp/kernel"
	"godm/hyp/privcmd"
	"godm/hyp/xensim"
	"godm/hyp/xensim/xenstored"
	"godm/internal/dmcontract"
	"godm/internal/sandbox"
	"godm/internal/testfake"
	"godm/memory/layout"
	"godm/netback/userproc"
	"godm/passthrough"
	"golang.org/x/sys/unix"
)

// qmpClient speaks to a monitor as libxl_qmp.c does: greeting, then
// qmp_capabilities, then one command at a time, with events on the side.
type qmpClient struct {
	t      *testing.T
	c      net.Conn
	r      *bufio.Reader
	id     int
	events []string
	greet  map[string]any
}

func qmpDial(t *testing.T, path string) *qmpClient {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("connect %s: %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	q := &qmpClient{t: t, c: c, r: bufio.NewReader(c)}
	q.greet = q.read()
	if r, e := q.do("qmp_capabilities", nil); r == nil || e != "" {
		t.Fatalf("qmp_capabilities: %v %s", r, e)
	}
	return q
}

func (q *qmpClient) read() map[string]any {
	q.t.Helper()
	line, err := q.r.ReadString('\n')
	if err != nil {
		q.t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		q.t.Fatalf("%q: %v", line, err)
	}
	return m
}

func (q *qmpClient) do(cmd string, args map[string]any) (any, string) {
	q.t.Helper()
	q.id++
	m := map[string]any{"execute": cmd, "id": q.id}
	if args != nil {
		m["arguments"] = args
	}
	b, _ := json.Marshal(m)
	if _, err := q.c.Write(append(b, '\r', '\n')); err != nil {
		q.t.Fatal(err)
	}
	for {
		r := q.read()
		if ev, ok := r["event"].(string); ok {
			q.events = append(q.events, ev)
			continue
		}
		if e, ok := r["error"].(map[string]any); ok {
			return nil, fmt.Sprint(e["class"], ": ", e["desc"])
		}
		return r["return"], ""
	}
}

func (q *qmpClient) status() string {
	q.t.Helper()
	r, e := q.do("query-status", nil)
	if e != "" {
		q.t.Fatalf("query-status: %s", e)
	}
	return r.(map[string]any)["status"].(string)
}

// syncBuf is a log written by the device model and read by the test.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// dmRig is a simulated Xen host with a domain and xenstored, on which
// godm runs as libxl would start it.
type dmRig struct {
	sim  *xensim.Sim
	dom  *xensim.Domain
	xs   *xenstored.Server
	env  map[string]string
	dir  string
	log  syncBuf
	done chan error
	stop context.CancelFunc

	once   sync.Once
	result error
	// sandboxed records the sandbox.Config godm asked for (the test
	// process itself is not deprivileged).
	sandboxed atomic.Value
}

// wait returns godm's result once it has ended.
func (r *dmRig) wait() error {
	r.once.Do(func() { r.result = <-r.done })
	return r.result
}

const rigMiB = 56

func newDMRig(t *testing.T) *dmRig {
	t.Helper()
	r := &dmRig{dir: t.TempDir(), done: make(chan error, 1)}
	ram, err := layout.New(rigMiB<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	xen := testfake.NewXen(t, xensim.Config{}, xensim.DomainConfig{VCPUs: 2, RAM: xensim.LayoutRAM(ram)})
	r.sim, r.dom = xen.Sim, xen.Dom
	r.xs = xenstored.New(xenstored.Config{})
	t.Cleanup(func() { r.xs.Close() })
	if err := r.xs.IntroduceDomain(r.dom.ID()); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(r.dir, "xenstored")
	if err := r.xs.Listen(sock); err != nil {
		t.Fatal(err)
	}
	r.env = map[string]string{"XENSTORED_PATH": sock, "XEN_DOMAIN_ID": fmt.Sprint(int(r.dom.ID())),
		userproc.EnvBinary: usernetBinary(t)}
	return r
}

var (
	usernetOnce sync.Once
	usernetPath string
	usernetErr  error
)

// usernetBinary builds cmd/godm-usernet, the child godm starts for
// -netdev user, once per test run.
func usernetBinary(t *testing.T) string {
	t.Helper()
	usernetOnce.Do(func() {
		dir, err := os.MkdirTemp("", "godm-usernet-")
		if err != nil {
			usernetErr = err
			return
		}
		usernetPath = filepath.Join(dir, userproc.Binary)
		if out, err := exec.Command("go", "build", "-o", usernetPath, "godm/cmd/godm-usernet").CombinedOutput(); err != nil {
			usernetErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	if usernetErr != nil {
		t.Fatalf("building %s: %v", userproc.Binary, usernetErr)
	}
	return usernetPath
}

// start runs godm with argv (the qemu-xen command line) in the test's
// process, the way libxl execs it; ending ctx is libxl's SIGHUP.
func (r *dmRig) start(t *testing.T, argv string, drop func(chroot, user string) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	env := qemuEnv{Kernel: r.sim.Kernel(0), Getenv: func(k string) string { return r.env[k] }, DropPrivileges: drop,
		Sandbox: func(c sandbox.Config) (sandbox.Report, error) {
			r.sandboxed.Store(c)
			return sandbox.Report{UID: -1, GID: -1}, nil
		}}
	args := strings.Fields(argv)
	go func() { r.done <- cmdQEMU(ctx, args, &r.log, env) }()
	t.Cleanup(func() {
		cancel()
		r.wait()
	})
}

// libxlArgv is Debian xl 4.17.7's argv (issue 12) with vga="none", for
// domain dom, sockets under dir.
func libxlArgv(dom int, dir string) string {
	return fmt.Sprintf("-xen-domid %[1]d -no-shutdown -chardev socket,id=libxl-cmd,path=%[2]s/qmp-libxl-%[1]d,server=on,wait=off "+
		"-mon chardev=libxl-cmd,mode=control -chardev socket,id=libxenstat-cmd,path=%[2]s/qmp-libxenstat-%[1]d,server=on,wait=off "+
		"-mon chardev=libxenstat-cmd,mode=control -nodefaults -no-user-config -name godmtest -vnc none "+
		"-display none -serial pty -boot order=cda -net none -machine xenfv,suppress-vmdesc=on -m %[3]d", dom, dir, rigMiB)
}

// preopen returns a raw descriptor of ln's socket for godm to take over,
// as libxl's pre-opened fd (no *os.File, whose finalizer would close the
// number godm then owns).
func preopen(t *testing.T, ln *net.UnixListener) int {
	t.Helper()
	rc, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.Dup(int(s)) }); err != nil || derr != nil {
		t.Fatal(err, derr)
	}
	return fd
}

func needPTY(t *testing.T) {
	if f, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0); err != nil {
		t.Skipf("no pseudo-terminals here (%v); -serial pty needs /dev/ptmx", err)
	} else {
		f.Close()
	}
}

// TestLibxlDefault runs libxl's sequence for a default HVM config
// without dm_restrict: wait for xenstore's device-model state, then
// QMP's post-configuration (query-chardev for serial/0/tty), pause and
// unpause, the libxenstat monitor at the same time, and SIGHUP.
func TestLibxlDefault(t *testing.T) {
	needPTY(t)
	r := newDMRig(t)
	dom := int(r.dom.ID())
	// Unsandboxed, as godm was before it deprivileged by default: xl
	// pci-attach needs it.
	r.start(t, libxlArgv(dom, r.dir)+" -godm-sandbox off", nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	statePath := fmt.Sprintf("/local/domain/0/device-model/%d/state", dom)
	waited := make(chan error, 1)
	go func() { waited <- r.xs.WaitValue(ctx, statePath, []byte("running")) }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("waiting for %s: %v (log: %s)", statePath, err, r.log.String())
		}
	case err := <-r.done:
		r.once.Do(func() { r.result = err })
		t.Fatalf("godm ended early: %v (log: %s)", err, r.log.String())
	}

	q := qmpDial(t, filepath.Join(r.dir, fmt.Sprintf("qmp-libxl-%d", dom)))
	v := q.greet["QMP"].(map[string]any)["version"].(map[string]any)["qemu"].(map[string]any)
	if v["major"] != 7.0 || v["minor"] != 2.0 {
		t.Errorf("greeting version %v, want 7.2 (libxl's feature gates)", v)
	}
	if s := q.status(); s != "running" {
		t.Errorf("query-status %q, want running", s)
	}
	ret, e := q.do("query-chardev", nil)
	if e != "" {
		t.Fatal(e)
	}
	var tty string
	for _, c := range ret.([]any) {
		c := c.(map[string]any)
		if c["label"] == "serial0" {
			tty, _ = strings.CutPrefix(c["filename"].(string), "pty:")
		}
	}
	if !strings.HasPrefix(tty, "/dev/pts/") {
		t.Errorf("query-chardev %v: no serial0 with pty:/dev/pts/N", ret)
	} else if _, err := os.Stat(tty); err != nil {
		t.Errorf("serial0's pty: %v", err)
	}

	// query-pci: QEMU-xen's layout for this argv (vga="none"): host
	// bridge 00.0, PIIX3 01.0, its IDE function 01.1 (always there on
	// xenfv, disks or not), PIIX4 PM 01.3, platform device 02.0.
	ret, e = q.do("query-pci", nil)
	if e != "" {
		t.Fatal(e)
	}
	var got []string
	for _, d := range ret.([]any)[0].(map[string]any)["devices"].([]any) {
		d := d.(map[string]any)
		id := d["id"].(map[string]any)
		got = append(got, fmt.Sprintf("%02x.%d %04x:%04x", int(d["slot"].(float64)), int(d["function"].(float64)),
			int(id["vendor"].(float64)), int(id["device"].(float64))))
	}
	if want := "00.0 8086:1237 01.0 8086:7000 01.1 8086:7010 01.3 8086:7113 02.0 5853:0001"; strings.Join(got, " ") != want {
		t.Errorf("query-pci: %q, want %q", strings.Join(got, " "), want)
	}
	// The guest sees the same: the platform device's vendor at 00:02.0.
	vid, err := r.dom.VCPU(0).PCIConfigRead(2<<3, 0, 2)
	if err != nil || vid != 0x5853 {
		t.Errorf("guest read of 00:02.0's vendor = %#x, %v", vid, err)
	}

	// libxenstat's monitor, while libxl's is connected.
	q2 := qmpDial(t, filepath.Join(r.dir, fmt.Sprintf("qmp-libxenstat-%d", dom)))
	if _, e := q.do("stop", nil); e != "" {
		t.Fatal(e)
	}
	if s := q2.status(); s != "paused" {
		t.Errorf("after stop: %q", s)
	}
	if _, e := q.do("cont", nil); e != "" {
		t.Fatal(e)
	}
	if s := q2.status(); s != "running" {
		t.Errorf("after cont: %q", s)
	}
	if got := strings.Join(q.events, " "); got != "STOP RESUME" {
		t.Errorf("events %q", got)
	}
	if _, e := q.do("device_del", map[string]any{"id": "nope"}); e != "DeviceNotFound: Device 'nope' not found" {
		t.Errorf("device_del: %q", e)
	}
	if _, e := q.do("device_add", map[string]any{"driver": "qxl-vga"}); e != "GenericError: 'qxl-vga' is not a valid device model name" {
		t.Errorf("device_add qxl-vga: %q", e)
	}
	if _, e := q.do("device_add", map[string]any{"driver": "cirrus-vga"}); e != "GenericError: Device 'cirrus-vga' can not be hotplugged on this machine" {
		t.Errorf("device_add cirrus-vga: %q", e)
	}

	// log-dirty switches the machine's dirty log (sized by -m).
	for _, on := range []bool{true, false} {
		if _, e := q.do("xen-set-global-dirty-log", map[string]any{"enable": on}); e != "" {
			t.Errorf("xen-set-global-dirty-log %v: %q", on, e)
		}
	}

	// xl pci-attach reaches the passthrough Manager: a function the host
	// does not have is refused with its reason, and nothing is plugged.
	_, e = q.do("device_add", map[string]any{"driver": "xen-pci-passthrough", "id": "pci-pt-07_00.0", "hostaddr": "0000:07:00.0"})
	t.Logf("device_add xen-pci-passthrough: %s", e)
	if !strings.HasPrefix(e, "GenericError: ") || !strings.Contains(e, "0000:07:00.0") {
		t.Errorf("device_add xen-pci-passthrough of a missing function: %q", e)
	}
	if _, e := q.do("device_del", map[string]any{"id": "pci-pt-07_00.0"}); !strings.HasPrefix(e, "DeviceNotFound") {
		t.Errorf("device_del after a failed add: %q", e)
	}

	// libxl's destroy: SIGHUP.
	r.stop()
	if err := r.wait(); err != nil {
		t.Errorf("godm after SIGHUP: %v", err)
	}
	if !strings.Contains(r.log.String(), "sandbox off (-godm-sandbox off)") {
		t.Errorf("no warning for -godm-sandbox off in the log: %s", r.log.String())
	}
	if !strings.Contains(r.log.String(), "godm: signalled; exiting") {
		t.Errorf("log after SIGHUP: %s", r.log.String())
	}
	for _, p := range []string{"qmp-libxl", "qmp-libxenstat"} {
		if _, err := os.Stat(filepath.Join(r.dir, fmt.Sprintf("%s-%d", p, dom))); !os.IsNotExist(err) {
			t.Errorf("%s socket left behind: %v", p, err)
		}
	}
}

// TestLibxlRestricted is dm_restrict=1: the pre-opened QMP socket and -S,
// where libxl requires query-status to answer prelaunch; the devices wait
// for cont; no xenstore state is written; privileges are dropped.
func TestLibxlRestricted(t *testing.T) {
	r := newDMRig(t)
	dom := int(r.dom.ID())
	qpath := filepath.Join(r.dir, "preopened")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: qpath, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fd := preopen(t, ln)
	argv := strings.Replace(libxlArgv(dom, r.dir),
		fmt.Sprintf("-chardev socket,id=libxl-cmd,path=%s/qmp-libxl-%d,server=on,wait=off", r.dir, dom),
		fmt.Sprintf("-chardev socket,id=libxl-cmd,fd=%d,server=on,wait=off -S", fd), 1)
	argv = strings.Replace(argv, "-serial pty", "-serial null", 1)
	argv += fmt.Sprintf(" -xen-domid-restrict -chroot %s/root -runas 131079:0", r.dir)
	var dropped atomic.Value
	r.start(t, argv, func(chroot, user string) error {
		dropped.Store(chroot + " " + user)
		return nil
	})
	q := qmpDial(t, qpath)
	if s := q.status(); s != "prelaunch" {
		t.Fatalf("query-status %q, want prelaunch (libxl rejects anything else with -S)", s)
	}
	want := sandbox.Config{Mode: sandbox.On, Dom: dom, Chroot: r.dir + "/root", User: "131079:0"}
	if got := r.sandboxed.Load(); got != want {
		t.Errorf("sandboxed with %+v, want %+v", got, want)
	}
	if got := dropped.Load(); got != nil {
		t.Errorf("QEMU's drop called too (%v): the sandbox does it", got)
	}
	// A guest access before cont waits for it.
	var contSent atomic.Bool
	read := make(chan bool, 1)
	issuing := make(chan struct{})
	go func() {
		close(issuing)
		vid, err := r.dom.VCPU(0).PCIConfigRead(2<<3, 0, 2)
		read <- err == nil && vid == 0x5853 && contSent.Load()
	}()
	<-issuing
	// A few round trips while the access is pending: were the devices
	// served, it would complete meanwhile, before contSent is set.
	ret, e := q.do("query-chardev", nil)
	if e != "" || len(ret.([]any)) != 3 {
		t.Errorf("query-chardev %v %s", ret, e)
	}
	for range 3 {
		if s := q.status(); s != "prelaunch" {
			t.Errorf("query-status %q before cont", s)
		}
	}
	contSent.Store(true)
	if _, e := q.do("cont", nil); e != "" {
		t.Fatal(e)
	}
	if ok := <-read; !ok {
		t.Error("the guest's config read was served before cont (or wrong)")
	}
	if s := q.status(); s != "running" {
		t.Errorf("after cont: %q", s)
	}
	// Restricted: state goes through QMP only.
	if v, err := r.xs.Read(fmt.Sprintf("/local/domain/0/device-model/%d/state", dom)); err == nil {
		t.Errorf("xenstore state written under -xen-domid-restrict: %q", v)
	}
	if _, e := q.do("quit", nil); e != "" {
		t.Fatal(e)
	}
	if err := r.wait(); err != nil {
		t.Errorf("godm after quit: %v", err)
	}
}

// TestLibxlProbe is libxl's command-line probe (XEN-FACTS §2.2).
func TestLibxlProbe(t *testing.T) {
	r := &dmRig{dir: t.TempDir(), done: make(chan error, 1), env: map[string]string{}}
	qpath := filepath.Join(r.dir, "probe")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: qpath, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fd := preopen(t, ln)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	argv := fmt.Sprintf("-S -no-user-config -nodefaults -nographic -machine none,accel=xen -chardev socket,id=libxl-cmd,fd=%d,server=on,wait=off -mon chardev=libxl-cmd,mode=control", fd)
	// No Xen at all: the probe needs none.
	env := qemuEnv{Kernel: kernel.Host{DevDir: "/nonexistent"}, Getenv: func(string) string { return "" }, DropPrivileges: dropPrivileges}
	go func() { r.done <- cmdQEMU(ctx, strings.Fields(argv), &r.log, env) }()
	q := qmpDial(t, qpath)
	ret, e := q.do("query-command-line-options", nil)
	if e != "" {
		t.Fatal(e)
	}
	if b, _ := json.Marshal(ret); !strings.Contains(string(b), `{"option":"run-with","parameters":[{"name":"chroot","type":"string"},{"name":"user","type":"string"}]}`) {
		t.Errorf("query-command-line-options: %s", b)
	}
	if _, e := q.do("quit", nil); e != "" {
		t.Fatal(e)
	}
	if err := <-r.done; err != nil {
		t.Errorf("probe: %v", err)
	}
}

// TestLibxlRefused: a config godm does not serve fails at start with one
// line naming the xl.cfg key, before any Xen is needed.
func TestLibxlRefused(t *testing.T) {
	argv := libxlArgv(7, t.TempDir()) + " -device qxl-vga,vram_size_mb=64,ram_size_mb=64"
	var out, errw bytes.Buffer
	err := run(strings.Fields(argv), &out, &errw)
	if err == nil || err.Error() != `-device qxl-vga,vram_size_mb=64,ram_size_mb=64: godm emulates only the standard VGA and the Cirrus: set vga="stdvga" or "cirrus" (or vga="none") in the domain's config` {
		t.Errorf("godm %s = %v", argv, err)
	}
}

// TestLibxlDomainDies: the domain is destroyed under godm (xl destroy, or
// the guest powered off); godm notices (the @releaseDomain watch, then
// the dying flag) and exits cleanly.
func TestLibxlDomainDies(t *testing.T) {
	r := newDMRig(t)
	dom := int(r.dom.ID())
	r.start(t, strings.Replace(libxlArgv(dom, r.dir), "-serial pty", "-serial null", 1), nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.xs.WaitValue(ctx, fmt.Sprintf("/local/domain/0/device-model/%d/state", dom), []byte("running")); err != nil {
		t.Fatal(err)
	}
	if err := r.dom.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := r.xs.ReleaseDomain(r.dom.ID()); err != nil {
		t.Fatal(err)
	}
	if err := r.wait(); err != nil {
		t.Fatalf("godm after the domain died: %v", err)
	}
	if !strings.Contains(r.log.String(), "was destroyed; exiting") {
		t.Errorf("log: %s", r.log.String())
	}
}

// TestDeviceHelp: -device help and -device DRIVER,help print what QEMU's
// do (the driver list by category; one driver's properties) and exit
// without touching Xen; an unknown driver is one error line.
func TestDeviceHelp(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want []string
		err  string
	}{
		{"help", []string{"Controller/Bridge/Hub devices:", `name "i440FX", bus PCI`, `name "isa-serial", bus ISA`, `name "xen-pci-passthrough", bus PCI`}, ""},
		{"?", []string{`name "piix4-pm", bus PCI`}, ""},
		{"isa-serial,help", []string{"isa-serial options:", "  chardev=<str>", "  index=<uint32>"}, ""},
		{"nosuch,help", nil, "'nosuch' is not a valid device model name"},
	} {
		var out, errw bytes.Buffer
		err := run([]string{"-device", tc.arg}, &out, &errw)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("-device %s: err %v, want %q", tc.arg, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("-device %s: %v", tc.arg, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("-device %s: output lacks %q:\n%s", tc.arg, w, out.String())
			}
		}
	}
}

// waitReady waits for godm's xenstore readiness, as libxl does without
// dm_restrict.
func (r *dmRig) waitReady(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	statePath := fmt.Sprintf("/local/domain/0/device-model/%d/state", int(r.dom.ID()))
	waited := make(chan error, 1)
	go func() { waited <- r.xs.WaitValue(ctx, statePath, []byte("running")) }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("waiting for %s: %v (log: %s)", statePath, err, r.log.String())
		}
	case err := <-r.done:
		r.once.Do(func() { r.result = err })
		t.Fatalf("godm ended early: %v (log: %s)", err, r.log.String())
	}
}

// TestLibxlVCPUSet is xl vcpu-set 2 on a domain created with vcpus=1,
// maxvcpus=2 (libxl: -smp 1,maxcpus=2): libxl's QMP sequence
// (libxl_domain.c) makes vCPU 1 present in the PIIX4 processor bitmap the
// guest's DSDT reads, with the CPU hotplug GPE and SCI.
func TestLibxlVCPUSet(t *testing.T) {
	r := newDMRig(t)
	dom := int(r.dom.ID())
	argv := strings.Replace(libxlArgv(dom, r.dir), "-serial pty", "-serial null -smp 1,maxcpus=2", 1)
	r.env[MetricsEnv] = "unix:" + r.dir + "/metrics-%d"
	r.start(t, argv, nil)
	r.waitReady(t)
	cpu := r.dom.VCPU(0)
	in := func(port uint16, size int) uint64 {
		t.Helper()
		v, err := cpu.In(port, size)
		if err != nil {
			t.Fatalf("in %#x: %v", port, err)
		}
		return v
	}
	// hvmloader's MADT enables vCPU 0 only (avail_vcpus): PRST agrees.
	if v := in(0xaf00, 1); v != 0x01 {
		t.Fatalf("PRST before vcpu-set = %#x, want 0x01", v)
	}
	// The guest's ACPI enables GPE0 bit 2 (the DSDT's _E02).
	if err := cpu.Out(0xafe2, 1, 0x04); err != nil {
		t.Fatal(err)
	}
	q := qmpDial(t, filepath.Join(r.dir, fmt.Sprintf("qmp-libxl-%d", dom)))
	ret, e := q.do("query-cpus-fast", nil)
	if l, _ := ret.([]any); e != "" || len(l) != 1 {
		t.Fatalf("query-cpus-fast = %v %s", ret, e)
	}
	ret, e = q.do("query-hotpluggable-cpus", nil)
	if e != "" {
		t.Fatal(e)
	}
	drv := ret.([]any)[0].(map[string]any)["type"].(string)
	if _, e := q.do("device_add", map[string]any{"id": "cpu-1", "driver": drv, "socket-id": 1, "core-id": 0, "thread-id": 0}); e != "" {
		t.Fatalf("device_add cpu-1: %s", e)
	}
	if v := in(0xaf00, 1); v != 0x03 {
		t.Errorf("PRST after vcpu-set = %#x, want 0x03", v)
	}
	if v := in(0xafe0, 1); v&0x04 == 0 {
		t.Errorf("GPE0 status = %#x: no CPU hotplug event", v)
	}
	if !r.dom.ISAIRQLevel(9) {
		t.Error("SCI (ISA IRQ 9) not raised")
	}
	if err := cpu.Out(0xafe0, 1, 0x04); err != nil { // the guest acknowledges
		t.Fatal(err)
	}
	if r.dom.ISAIRQLevel(9) {
		t.Error("SCI still raised after the guest cleared the event")
	}
	ret, _ = q.do("query-cpus-fast", nil)
	if l, _ := ret.([]any); len(l) != 2 || l[1].(map[string]any)["qom-path"] != "/machine/peripheral/cpu-1" {
		t.Errorf("query-cpus-fast after vcpu-set = %v", ret)
	}
	// A third vCPU has no slot.
	if _, e := q.do("device_add", map[string]any{"id": "cpu-2", "driver": drv, "socket-id": 2, "core-id": 0, "thread-id": 0}); e != "GenericError: Invalid CPU socket-id: 2 must be in range 0:1" {
		t.Errorf("device_add cpu-2: %q", e)
	}

	// The counters of what the guest did: 5 port accesses above, through
	// the ioreq slot, to the piix4-pm function; on QMP and on the opt-in
	// endpoint (GODM_METRICS, the domain id substituted).
	ret, e = q.do("x-godm-query-stats", nil)
	if e != "" {
		t.Fatal(e)
	}
	pio := -1.0
	for _, f := range ret.(map[string]any)["metrics"].([]any) {
		f := f.(map[string]any)
		if f["name"] != "godm_ioreq_requests_total" {
			continue
		}
		for _, s := range f["samples"].([]any) {
			s := s.(map[string]any)
			if l := s["labels"].(map[string]any); l["kind"] == "pio" && l["path"] == "sync" {
				pio = s["value"].(float64)
			}
		}
	}
	if pio < 5 {
		t.Errorf("x-godm-query-stats: pio sync requests %v, want at least the test's 5", pio)
	}
	// The stage histograms through HMP (xl qemu-monitor-command DOM "info
	// ioreq"): the first request is always sampled.
	ret, e = q.do("human-monitor-command", map[string]any{"command-line": "info ioreq"})
	if h, _ := ret.(string); e != "" || !strings.Contains(h, "ioreq-stage path=all stage=service n=") ||
		!strings.Contains(h, "stage=notify n=") {
		t.Errorf("info ioreq = %q %s", ret, e)
	}
	c, err := net.Dial("unix", fmt.Sprintf("%s/metrics-%d", r.dir, dom))
	if err != nil {
		t.Fatalf("metrics endpoint: %v (log: %s)", err, r.log.String())
	}
	defer c.Close()
	io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: godm\r\n\r\n")
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	body := string(b)
	for _, want := range []string{"HTTP/1.1 200 OK", "# TYPE godm_ioreq_latency_seconds histogram", `godm_ioreq_stage_seconds_count{path="block",stage="wake-to-run"} `,
		`godm_device_events_total{device=`, `godm_evtchn_events_total{event="notify"}`, `godm_ioreq_requests_total{kind="pio",path="sync"} `} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics endpoint: no %q in\n%s", want, body)
		}
	}
}

// docExample returns the xl.cfg lines of the example marked name in
// docs/xl.md, as key → value (lists keep their brackets).
func docExample(t *testing.T, name string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "xl.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- example: "+name+" ")
	if !ok {
		t.Fatalf("docs/xl.md has no example %q", name)
	}
	_, rest, _ = strings.Cut(rest, "```\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("example %q: no closing fence", name)
	}
	cfg := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("example %q: %q is not key = value", name, line)
		}
		cfg[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
	}
	return cfg
}

// libxlArgvFor is the qemu-xen command line libxl 4.17 writes for cfg
// (tools/libs/light/libxl_dm.c libxl__build_device_model_args_new), for
// the keys the docs' examples use: the measured default (libxlArgv,
// vga="none", vnc=0) with -name, -m (memory in MiB, no video RAM without
// VGA), -smp when maxvcpus > 1 ("avail,maxcpus=max") and -serial. pci=[...]
// adds nothing: libxl plugs those functions through QMP once the device
// model is ready (libxl_pci.c).
func libxlArgvFor(t *testing.T, cfg map[string]string, dom int, dir string) string {
	t.Helper()
	argv := libxlArgv(dom, dir)
	for k, v := range cfg {
		switch k {
		case "type", "device_model_override", "pci":
		case "vga", "vnc":
			if v != "none" && v != "0" {
				t.Fatalf("%s = %q: libxlArgv is vga=\"none\", vnc=0", k, v)
			}
		case "name":
			argv = strings.Replace(argv, "-name godmtest", "-name "+v, 1)
		case "memory":
			argv = strings.Replace(argv, fmt.Sprintf("-m %d", rigMiB), "-m "+v, 1)
		case "serial":
			argv = strings.Replace(argv, "-serial pty", "-serial "+v, 1)
		case "device_model_args_hvm":
			// libxl appends the list's strings to the argv.
			for _, a := range strings.Split(strings.Trim(v, "[] "), ",") {
				argv += " " + strings.Trim(strings.TrimSpace(a), `"`)
			}
		case "vcpus", "maxvcpus":
			if cfg["maxvcpus"] != "" && cfg["maxvcpus"] != "1" && k == "maxvcpus" {
				argv += fmt.Sprintf(" -smp %s,maxcpus=%s", cmp.Or(cfg["vcpus"], cfg["maxvcpus"]), cfg["maxvcpus"])
			}
		default:
			t.Fatalf("the example sets %q: teach libxlArgvFor how libxl writes it", k)
		}
	}
	return argv
}

// libxlPCIAdd is the device_add libxl sends for one pci=[...] entry
// "SSSS:BB:DD.F[,vslot=N][,permissive=1]" (libxl_pci.c
// pci_add_qmp_device_add; the qdev id is PCI_PT_QDEV_ID).
func libxlPCIAdd(t *testing.T, spec string) (map[string]any, devices.SBDF) {
	t.Helper()
	parts := strings.Split(spec, ",")
	host, err := passthrough.ParseSBDF(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	args := map[string]any{"driver": "xen-pci-passthrough",
		"id":       fmt.Sprintf("pci-pt-%02x_%02x.%x", host.Bus(), host.Dev(), host.Fn()),
		"hostaddr": fmt.Sprintf("%04x:%02x:%02x.%x", host.Seg(), host.Bus(), host.Dev(), host.Fn())}
	for _, kv := range parts[1:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "vslot":
			n, err := strconv.ParseUint(v, 0, 8)
			if err != nil {
				t.Fatal(err)
			}
			args["addr"] = fmt.Sprintf("%x.%x", n, 0)
		case "permissive":
			if v == "1" {
				args["permissive"] = true
			}
		default:
			t.Fatalf("pci option %q: teach libxlPCIAdd", k)
		}
	}
	return args, host
}

// sysfsWith writes a fake sysfs holding the sample virtio-net function of
// passthrough/testdata at host address addr, bound to pciback.
func sysfsWith(t *testing.T, addr devices.SBDF) string {
	t.Helper()
	src := filepath.Join("..", "..", "passthrough", "testdata", "devices", "0000_00_03.0")
	root := t.TempDir()
	dir := filepath.Join(root, "bus", "pci", "devices", fmt.Sprintf("%04x:%02x:%02x.%x", addr.Seg(), addr.Bus(), addr.Dev(), addr.Fn()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config", "resource", "vendor", "device", "class", "irq"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	drv := filepath.Join(root, "bus", "pci", "drivers", "pciback")
	if err := os.MkdirAll(drv, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(drv, filepath.Join(dir, "driver")); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestDocsPassthroughExample: the passthrough example of docs/xl.md gives
// an argv godm serves, and libxl's pci-attach of its pci=[...] entry
// (device_add, then query-pci for the qdev id's slot and function) and
// pci-detach (device_del, then query-pci until it is gone) work on the
// simulated Xen with a fake sysfs holding the function.
func TestDocsPassthroughExample(t *testing.T) {
	cfg := docExample(t, "passthrough")
	r := newDMRig(t)
	dom := int(r.dom.ID())
	argv := libxlArgvFor(t, cfg, dom, r.dir)
	parsed, err := dmcontract.Parse(strings.Fields(argv), func(k string) string { return r.env[k] })
	if err != nil {
		t.Fatalf("godm refuses the example's argv: %v\n%s", err, argv)
	}
	if parsed.Name != cfg["name"] || parsed.MemMiB != 512 || parsed.VCPUs != 2 || parsed.OnlineVCPUs != 1 ||
		len(parsed.Serial) != 1 || !strings.HasPrefix(parsed.Serial[0], "file:") {
		t.Errorf("parsed %+v", parsed)
	}
	// The simulated domain has rigMiB of RAM and /var/log/xen is not ours.
	argv = strings.Replace(argv, "-m "+cfg["memory"], fmt.Sprintf("-m %d", rigMiB), 1)
	argv = strings.Replace(argv, "-serial "+cfg["serial"], "-serial file:"+filepath.Join(r.dir, "com1.log"), 1)

	entry := strings.Trim(strings.TrimSpace(strings.Trim(cfg["pci"], "[]")), `"`)
	add, host := libxlPCIAdd(t, entry)
	// libxl's part: the function assigned to the domain, its BAR's frames
	// granted (the sample's BAR 0 is 0x4000100000, 512 KiB).
	p, err := privcmd.Open(r.sim.Kernel(0))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dc, err := domctl.Open(hcall.New(p))
	if err != nil {
		t.Fatal(err)
	}
	if err := dc.AssignDevice(r.dom.ID(), uint32(host), 0); err != nil {
		t.Fatal(err)
	}
	if err := dc.IomemPermission(r.dom.ID(), 0x4000100, 0x80, true); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	env := qemuEnv{Kernel: r.sim.Kernel(0), Getenv: func(k string) string { return r.env[k] }, Sysfs: sysfsWith(t, host)}
	go func() { r.done <- cmdQEMU(ctx, strings.Fields(argv), &r.log, env) }()
	t.Cleanup(func() { cancel(); r.wait() })
	r.waitReady(t)
	q := qmpDial(t, filepath.Join(r.dir, fmt.Sprintf("qmp-libxl-%d", dom)))

	// xl pci-attach, as libxl_pci.c does it.
	if _, e := q.do("device_add", add); e != "" {
		t.Fatalf("device_add %v: %s (log: %s)", add, e, r.log.String())
	}
	findPT := func() map[string]any {
		ret, e := q.do("query-pci", nil)
		if e != "" {
			t.Fatal(e)
		}
		for _, d := range ret.([]any)[0].(map[string]any)["devices"].([]any) {
			if d := d.(map[string]any); d["qdev_id"] == add["id"] {
				return d
			}
		}
		return nil
	}
	d := findPT()
	if d == nil {
		t.Fatalf("query-pci has no %s (libxl: \"PCI device id ... wasn't found in QEMU's 'query-pci' response\")", add["id"])
	}
	if d["slot"] != 5.0 || d["function"] != 0.0 {
		t.Errorf("passed through at %v.%v, want vslot 5", d["slot"], d["function"])
	}
	if id := d["id"].(map[string]any); id["vendor"] != float64(0x1af4) || id["device"] != float64(0x1041) {
		t.Errorf("identity %v, want the host's virtio-net 1af4:1041", id)
	}
	if regs := d["regions"].([]any); len(regs) != 1 || regs[0].(map[string]any)["size"] != float64(512<<10) || regs[0].(map[string]any)["mem_type_64"] != true {
		t.Errorf("regions %v, want the host's 512 KiB 64-bit BAR 0", regs)
	}
	if v, err := r.dom.VCPU(0).PCIConfigRead(5<<3, 0, 4); err != nil || v != 0x10411af4 {
		t.Errorf("guest read of 00:05.0 = %#x, %v", v, err)
	}
	// xl pci-detach: device_del, then query-pci until it is gone.
	if _, e := q.do("device_del", map[string]any{"id": add["id"]}); e != "" {
		t.Fatalf("device_del: %s", e)
	}
	if d := findPT(); d != nil {
		t.Errorf("still listed after device_del: %v", d)
	}
	if !slices.Contains(q.events, "DEVICE_DELETED") {
		t.Errorf("events %v: no DEVICE_DELETED", q.events)
	}
}

// libxl's emulated NIC (vif=['mac=00:16:3e:00:00:01,model=rtl8139'],
// here on user-mode networking rather than the tap libxl writes, which
// needs CAP_NET_ADMIN): the NIC sits at 00:03.0 behind the platform
// device, as QEMU-xen places it, and answers the guest with its MAC.
func TestLibxlNIC(t *testing.T) {
	r, q := startLibxlNIC(t, "rtl8139")
	checkQueryPCI(t, q, "10ec:8139")
	v := r.dom.VCPU(0)
	if err := v.PCIConfigWrite(3<<3, 0x10, 4, 0xc100); err != nil {
		t.Fatal(err)
	}
	if err := v.PCIConfigWrite(3<<3, 0x04, 2, 1); err != nil {
		t.Fatal(err)
	}
	var mac []byte
	for i := range 6 {
		b, err := v.In(uint16(0xc100+i), 1)
		if err != nil {
			t.Fatal(err)
		}
		mac = append(mac, byte(b))
	}
	if fmt.Sprintf("% x", mac) != "00 16 3e 00 00 01" {
		t.Errorf("IDR0-5 = % x", mac)
	}
	// set_link on the netdev's name reaches its NIC: BMSR's link bit.
	for _, up := range []bool{false, true} {
		if _, e := q.do("set_link", map[string]any{"name": "net0", "up": up}); e != "" {
			t.Fatal(e)
		}
		bmsr, err := v.In(0xc100+0x64, 2)
		if err != nil || (bmsr&4 != 0) != up {
			t.Errorf("after set_link up=%v: BMSR %#x, %v", up, bmsr, err)
		}
	}
	if _, e := q.do("set_link", map[string]any{"name": "nope", "up": true}); e != "DeviceNotFound: Device 'nope' not found" {
		t.Errorf("set_link nope: %q", e)
	}
}

// startLibxlNIC starts godm on libxl's argv with one emulated NIC of
// model (vif=['mac=00:16:3e:00:00:01,model=...']) on user-mode networking
// and waits for it to run.
func startLibxlNIC(t *testing.T, model string) (*dmRig, *qmpClient) {
	needPTY(t)
	r := newDMRig(t)
	dom := int(r.dom.ID())
	argv := strings.Replace(libxlArgv(dom, r.dir), "-net none",
		"-device "+model+",id=nic0,netdev=net0,mac=00:16:3e:00:00:01 -netdev user,id=net0", 1)
	r.start(t, argv, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	waited := make(chan error, 1)
	go func() {
		waited <- r.xs.WaitValue(ctx, fmt.Sprintf("/local/domain/0/device-model/%d/state", dom), []byte("running"))
	}()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("waiting for running: %v (log: %s)", err, r.log.String())
		}
	case err := <-r.done:
		r.once.Do(func() { r.result = err })
		t.Fatalf("godm ended early: %v (log: %s)", err, r.log.String())
	}
	return r, qmpDial(t, filepath.Join(r.dir, fmt.Sprintf("qmp-libxl-%d", dom)))
}

// checkQueryPCI: the NIC (vendor:device nic) sits at 00:03.0 behind the
// platform device, as QEMU-xen places it.
func checkQueryPCI(t *testing.T, q *qmpClient, nic string) {
	t.Helper()
	ret, e := q.do("query-pci", nil)
	if e != "" {
		t.Fatal(e)
	}
	var got []string
	for _, d := range ret.([]any)[0].(map[string]any)["devices"].([]any) {
		d := d.(map[string]any)
		id := d["id"].(map[string]any)
		got = append(got, fmt.Sprintf("%02x.%d %04x:%04x", int(d["slot"].(float64)), int(d["function"].(float64)),
			int(id["vendor"].(float64)), int(id["device"].(float64))))
	}
	if want := "00.0 8086:1237 01.0 8086:7000 01.1 8086:7010 01.3 8086:7113 02.0 5853:0001 03.0 " + nic; strings.Join(got, " ") != want {
		t.Errorf("query-pci: %q, want %q", strings.Join(got, " "), want)
	}
}

// libxl's e1000 (vif=['mac=00:16:3e:00:00:01,model=e1000']): at 00:03.0,
// its receive address and EEPROM carry the MAC, set_link reaches STATUS.
func TestLibxlE1000(t *testing.T) {
	r, q := startLibxlNIC(t, "e1000")
	checkQueryPCI(t, q, "8086:100e")
	v := r.dom.VCPU(0)
	const bar = 0xf0000000
	if err := v.PCIConfigWrite(3<<3, 0x10, 4, bar); err != nil {
		t.Fatal(err)
	}
	if err := v.PCIConfigWrite(3<<3, 0x04, 2, 2); err != nil {
		t.Fatal(err)
	}
	lo, err1 := v.MMIORead(bar+0x5400, 4)
	hi, err2 := v.MMIORead(bar+0x5404, 4)
	if err1 != nil || err2 != nil || lo != 0x003e1600 || hi != 0x80000100 {
		t.Errorf("RAL0/RAH0 = %#x/%#x (%v %v)", lo, hi, err1, err2)
	}
	for _, up := range []bool{false, true} {
		if _, e := q.do("set_link", map[string]any{"name": "nic0", "up": up}); e != "" {
			t.Fatal(e)
		}
		status, err := v.MMIORead(bar+0x8, 4)
		// Up again restarts autonegotiation: the link returns 500 ms later.
		if err != nil || !up && status&2 != 0 {
			t.Errorf("after set_link up=%v: STATUS %#x, %v", up, status, err)
		}
	}
}

// libxl's virtio-net (vif=['mac=00:16:3e:00:00:01,model=virtio-net-pci']):
// at 00:03.0, its device configuration carries the MAC and set_link
// reaches the status field.
func TestLibxlVirtioNet(t *testing.T) {
	r, q := startLibxlNIC(t, "virtio-net-pci")
	checkQueryPCI(t, q, "1af4:1000")
	v := r.dom.VCPU(0)
	const io = 0xc000
	if err := v.PCIConfigWrite(3<<3, 0x10, 4, io); err != nil {
		t.Fatal(err)
	}
	if err := v.PCIConfigWrite(3<<3, 0x04, 2, 1); err != nil {
		t.Fatal(err)
	}
	var mac []byte
	for i := range uint16(6) {
		b, err := v.In(io+20+i, 1)
		if err != nil {
			t.Fatal(err)
		}
		mac = append(mac, byte(b))
	}
	if got := net.HardwareAddr(mac).String(); got != "00:16:3e:00:00:01" {
		t.Errorf("configuration MAC %s", got)
	}
	for _, up := range []bool{false, true} {
		if _, e := q.do("set_link", map[string]any{"name": "nic0", "up": up}); e != "" {
			t.Fatal(e)
		}
		status, err := v.In(io+26, 2)
		if err != nil || (status&1 != 0) != up {
			t.Errorf("after set_link up=%v: status %#x, %v", up, status, err)
		}
	}
}

// A netdev godm cannot open fails the start with one line naming it
// (checked when the back-end opens, after the machine's domain is known).
func TestLibxlBadNetdev(t *testing.T) {
	needPTY(t)
	for _, c := range []struct{ netdev, want string }{
		{"type=tap,id=net0,ifname=vif1.0-emu,br=xenbr0,script=/etc/xen/scripts/qemu-ifup,downscript=no", "script"},
		{"user,id=net0,bogus=1", "bogus"},
	} {
		r := newDMRig(t)
		argv := strings.Replace(libxlArgv(int(r.dom.ID()), r.dir), "-net none",
			"-device rtl8139,id=nic0,netdev=net0,mac=00:16:3e:00:00:01 -netdev "+c.netdev, 1)
		r.start(t, argv, nil)
		err := r.wait()
		t.Logf("-netdev %s: %v", c.netdev, err)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("-netdev %s: %v", c.netdev, err)
		}
	}
}

// TestLibxlMetricsRefused: a GODM_METRICS address off the host stops the
// start with one line naming it.
func TestLibxlMetricsRefused(t *testing.T) {
	r := newDMRig(t)
	r.env[MetricsEnv] = "0.0.0.0:9100"
	r.start(t, strings.Replace(libxlArgv(int(r.dom.ID()), r.dir), "-serial pty", "-serial null", 1), nil)
	err := r.wait()
	if err == nil || err.Error() != `GODM_METRICS=0.0.0.0:9100: metrics: "0.0.0.0:9100": only a loopback address or a unix socket is served` {
		t.Errorf("godm with GODM_METRICS off the host: %v", err)
	}
}

// TestMain runs the sandbox tests' child when asked to, and removes what
// the tests built (usernetBinary) once they ran.
func TestMain(m *testing.M) {
	sandboxChildMain()
	code := m.Run()
	if usernetPath != "" {
		os.RemoveAll(filepath.Dir(usernetPath))
	}
	os.Exit(code)
}
