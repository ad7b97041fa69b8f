package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"godm/hyp/kernel"
	"godm/hyp/xensim"
	"godm/hyp/xensim/xenstored"
	"godm/internal/sandbox"
	"godm/internal/testfake"
	"godm/memory/layout"
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
	r.env = map[string]string{"XENSTORED_PATH": sock, "XEN_DOMAIN_ID": fmt.Sprint(int(r.dom.ID()))}
	return r
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
	// bridge 00.0, PIIX3 01.0, PIIX4 PM 01.3, platform device 02.0.
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
	if want := "00.0 8086:1237 01.0 8086:7000 01.3 8086:7113 02.0 5853:0001"; strings.Join(got, " ") != want {
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
	if _, e := q.do("device_add", map[string]any{"driver": "cirrus-vga"}); e != "GenericError: 'cirrus-vga' is not a valid device model name" {
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
	argv := libxlArgv(7, t.TempDir()) + " -device cirrus-vga,vgamem_mb=8"
	var out, errw bytes.Buffer
	err := run(strings.Fields(argv), &out, &errw)
	if err == nil || err.Error() != `-device cirrus-vga,vgamem_mb=8: no display device yet: set vga="none" and vnc=0 in the domain's config` {
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
