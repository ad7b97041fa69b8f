package dmcontract

import (
	"bufio"
	"os"

	"encoding/json"
	"fmt"
	"golang.org/x/sys/unix"
	"net"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"godm/devices"
	"godm/devices/uart"
	"godm/devices/uart/pciserial"
	"godm/internal/metrics"
	"godm/internal/qmp"
	"godm/internal/unixsock"
	"godm/pci"
)

// fakeHost records what the commands did to the machine.
type fakeHost struct {
	mu    sync.Mutex
	calls []string
	funcs []PCIFunction
	noLog bool     // SetDirtyLog fails
	ids   []string // HasDevice

	cdLocked, cdOpen bool
	cdFile           string
	cdData           string // what the medium's file held when it was opened
}

func (h *fakeHost) rec(s string) { h.mu.Lock(); h.calls = append(h.calls, s); h.mu.Unlock() }
func (h *fakeHost) Pause()       { h.rec("pause") }
func (h *fakeHost) Resume()      { h.rec("resume") }
func (h *fakeHost) Reset()       { h.rec("reset") }
func (h *fakeHost) PCI() []PCIFunction {
	return h.funcs
}
func (h *fakeHost) DeviceAdd(args map[string]any) error {
	drv, _ := args["driver"].(string)
	h.rec("add " + drv)
	return qmp.Errorf("no passthrough here")
}
func (h *fakeHost) DeviceDel(id string) error {
	h.rec("del " + id)
	if id == "pci-pt-03_00.0" {
		return nil
	}
	return qmp.NewError(qmp.ClassDeviceNotFound, "Device '%s' not found", id)
}
func (h *fakeHost) HasDevice(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Contains(h.ids, id)
}
func (h *fakeHost) PlugCPU(slot int) error {
	h.rec(fmt.Sprint("cpu ", slot))
	return nil
}
func (h *fakeHost) Metrics() []metrics.Family {
	f := metrics.Family{Name: "godm_test_total", Type: metrics.Counter, Help: "test"}
	f.Add(3, "device", "serial0")
	return []metrics.Family{f}
}
func (h *fakeHost) SetDirtyLog(on bool) error {
	h.rec(fmt.Sprint("dirty-log ", on))
	if h.noLog {
		return qmp.Errorf("no log")
	}
	return nil
}
func (h *fakeHost) SetLink(name string, up bool) error {
	h.rec(fmt.Sprint("link ", name, " ", up))
	if name != "nic0" {
		return qmp.NewError(qmp.ClassDeviceNotFound, "Device '%s' not found", name)
	}
	return nil
}
func (h *fakeHost) Blocks() []BlockInfo {
	h.mu.Lock()
	defer h.mu.Unlock()
	cd := BlockInfo{Device: "ide-5632", QdevID: "ide-5632", Removable: true, Locked: h.cdLocked, TrayOpen: h.cdOpen}
	if h.cdFile != "" {
		cd.Inserted = &BlockMedium{File: h.cdFile, Format: "raw", ReadOnly: true, VirtualSize: 2 << 20, Cache: "writeback"}
	}
	return []BlockInfo{
		{Device: "ide0-hd0", QdevID: "ide-hd.0", Inserted: &BlockMedium{File: "/d.img", Format: "qcow2", VirtualSize: 1 << 30, Cache: "none"}},
		cd,
	}
}
func (h *fakeHost) Eject(id string, force bool) (bool, error) {
	h.rec(fmt.Sprint("eject ", id, " ", force))
	h.mu.Lock()
	defer h.mu.Unlock()
	if id != "ide-5632" {
		return false, fmt.Errorf("Device '%s' not found", id)
	}
	if h.cdLocked && !force {
		return false, fmt.Errorf("Device '%s' is locked and force was not specified, wait for tray to open and try again", id)
	}
	moved := !h.cdOpen
	h.cdOpen, h.cdFile = true, ""
	return moved, nil
}
func (h *fakeHost) ChangeMedium(id, file, format string) (bool, error) {
	h.rec(fmt.Sprint("change ", id, " ", file, " ", format))
	data, _ := os.ReadFile(file) // the real host opens the image here
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cdData = string(data)
	opened := !h.cdOpen
	h.cdOpen, h.cdFile = false, file
	return opened, nil
}
func (h *fakeHost) Calls() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.calls...)
}

// client is a QMP client as libxl's: read the greeting, negotiate, then
// one command at a time, events collected on the side.
type client struct {
	t      *testing.T
	c      net.Conn
	r      *bufio.Reader
	id     int
	events []string
}

func dial(t *testing.T, path string) *client {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	g := cl.read()
	if _, ok := g["QMP"]; !ok {
		t.Fatalf("greeting = %v", g)
	}
	if ret, _ := cl.do("qmp_capabilities", nil); ret == nil {
		t.Fatal("qmp_capabilities failed")
	}
	return cl
}

func (c *client) read() map[string]any {
	c.t.Helper()
	line, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		c.t.Fatalf("reply %q: %v", line, err)
	}
	return m
}

// do runs a command and returns its return value or its error.
func (c *client) do(cmd string, args map[string]any) (ret any, errClass string) {
	c.t.Helper()
	c.id++
	msg := map[string]any{"execute": cmd, "id": c.id}
	if args != nil {
		msg["arguments"] = args
	}
	b, _ := json.Marshal(msg)
	if _, err := c.c.Write(append(b, '\r', '\n')); err != nil {
		c.t.Fatal(err)
	}
	for {
		m := c.read()
		if ev, ok := m["event"].(string); ok {
			c.events = append(c.events, ev)
			continue
		}
		if id, _ := m["id"].(float64); int(id) != c.id {
			c.t.Fatalf("%s: reply id %v, want %d", cmd, m["id"], c.id)
		}
		if e, ok := m["error"].(map[string]any); ok {
			return nil, e["class"].(string) + ": " + e["desc"].(string)
		}
		return m["return"], ""
	}
}

func serve(t *testing.T, st *State) string {
	t.Helper()
	srv, err := qmp.NewServer(qmp.Config{Commands: st.Commands()})
	if err != nil {
		t.Fatal(err)
	}
	st.emit = func(ev string, data any) { srv.Emit(ev, data) }
	path := filepath.Join(t.TempDir(), "qmp")
	ln, err := unixsock.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve("libxl-cmd", ln); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return path
}

func TestPrelaunchContStop(t *testing.T) {
	h := &fakeHost{}
	quit := make(chan struct{})
	st := NewState(StateConfig{Prelaunch: true, Host: h, Quit: func() { close(quit) }, VCPUs: 2,
		Chardevs: []Chardev{{"libxl-cmd", "unix:/run/q,server=on"}, {"serial0", "pty:/dev/pts/9"}}})
	c := dial(t, serve(t, st))
	status := func(want string, running bool) {
		t.Helper()
		ret, e := c.do("query-status", nil)
		if want := map[string]any{"running": running, "singlestep": false, "status": want}; e != "" || !reflect.DeepEqual(ret, want) {
			t.Errorf("query-status = %v %s, want %v", ret, e, want)
		}
	}
	// libxl with a pre-opened fd requires prelaunch (XEN-FACTS §2.4).
	status("prelaunch", false)
	select {
	case <-st.Started():
		t.Fatal("started before cont")
	default:
	}
	// stop in prelaunch changes nothing (QEMU do_vm_stop).
	if _, e := c.do("stop", nil); e != "" {
		t.Fatal(e)
	}
	status("prelaunch", false)
	ret, e := c.do("query-chardev", nil)
	want := []any{
		map[string]any{"label": "libxl-cmd", "filename": "unix:/run/q,server=on", "frontend-open": true},
		map[string]any{"label": "serial0", "filename": "pty:/dev/pts/9", "frontend-open": true},
	}
	if e != "" || !reflect.DeepEqual(ret, want) {
		t.Errorf("query-chardev = %v %s", ret, e)
	}
	if _, e := c.do("cont", nil); e != "" {
		t.Fatal(e)
	}
	<-st.Started()
	status("running", true)
	if _, e := c.do("cont", nil); e != "" { // running: nothing happens
		t.Fatal(e)
	}
	if _, e := c.do("stop", nil); e != "" {
		t.Fatal(e)
	}
	status("paused", false)
	if _, e := c.do("cont", nil); e != "" {
		t.Fatal(e)
	}
	if _, e := c.do("system_reset", nil); e != "" {
		t.Fatal(e)
	}
	if _, e := c.do("cont", map[string]any{"x": 1}); !strings.Contains(e, "GenericError: Parameter 'x' is unexpected") {
		t.Errorf("cont with an argument: %q", e)
	}
	if got, want := h.Calls(), []string{"resume", "pause", "resume", "reset"}; !reflect.DeepEqual(got, want) {
		t.Errorf("host calls %v, want %v", got, want)
	}
	ret, _ = c.do("query-cpus-fast", nil)
	if l, _ := ret.([]any); len(l) != 2 || l[1].(map[string]any)["cpu-index"] != 1.0 {
		t.Errorf("query-cpus-fast = %v", ret)
	}
	for _, cmd := range []string{"query-cpus", "cpu-add", "change", "frobnicate"} {
		if _, e := c.do(cmd, nil); !strings.HasPrefix(e, "CommandNotFound") {
			t.Errorf("%s: %q, want CommandNotFound", cmd, e)
		}
	}
	// log-dirty reaches the machine's dirty log; a machine without one
	// refuses it.
	n := len(h.Calls())
	for _, on := range []bool{true, false} {
		if ret, e := c.do("xen-set-global-dirty-log", map[string]any{"enable": on}); e != "" || !reflect.DeepEqual(ret, map[string]any{}) {
			t.Errorf("dirty log %v: %v %q", on, ret, e)
		}
	}
	if got, want := h.Calls()[n:], []string{"dirty-log true", "dirty-log false"}; !reflect.DeepEqual(got, want) {
		t.Errorf("dirty log: host calls %v, want %v", got, want)
	}
	h.mu.Lock()
	h.noLog = true
	h.mu.Unlock()
	if _, e := c.do("xen-set-global-dirty-log", map[string]any{"enable": true}); e != "GenericError: no log" {
		t.Errorf("dirty log without a log: %q", e)
	}
	if _, e := c.do("xen-set-global-dirty-log", map[string]any{"enable": "yes"}); !strings.Contains(e, "Invalid parameter type for 'enable', expected: boolean") {
		t.Errorf("dirty log bad type: %q", e)
	}
	ret, _ = c.do("human-monitor-command", map[string]any{"command-line": "info status"})
	if ret != "VM status: running\r\n" {
		t.Errorf("info status = %q", ret)
	}
	ret, _ = c.do("human-monitor-command", map[string]any{"command-line": "info chardev"})
	if !strings.Contains(ret.(string), "serial0: filename=pty:/dev/pts/9") {
		t.Errorf("info chardev = %q", ret)
	}
	ret, _ = c.do("human-monitor-command", map[string]any{"command-line": "savevm x"})
	if ret != "unknown command: 'savevm'\r\n" {
		t.Errorf("hmp savevm = %q", ret)
	}
	ret, _ = c.do("query-version", nil)
	if v := ret.(map[string]any)["qemu"].(map[string]any); v["major"] != 7.0 || v["minor"] != 2.0 {
		t.Errorf("query-version = %v", ret)
	}
	if _, e := c.do("device_del", map[string]any{"id": "pci-pt-03_00.0"}); e != "" {
		t.Fatal(e)
	}
	if _, e := c.do("device_del", map[string]any{"id": "nope"}); e != "DeviceNotFound: Device 'nope' not found" {
		t.Errorf("device_del nope: %q", e)
	}
	if _, e := c.do("set_link", map[string]any{"name": "nic0", "up": false}); e != "" {
		t.Errorf("set_link nic0: %q", e)
	}
	if _, e := c.do("set_link", map[string]any{"name": "nope", "up": true}); e != "DeviceNotFound: Device 'nope' not found" {
		t.Errorf("set_link nope: %q", e)
	}
	if _, e := c.do("set_link", map[string]any{"name": "nic0"}); !strings.Contains(e, "up") {
		t.Errorf("set_link without up: %q", e)
	}
	if _, e := c.do("device_add", map[string]any{"driver": "xen-pci-passthrough", "id": "pci-pt-03_00.0", "hostaddr": "0000:03:00.0"}); e != "GenericError: no passthrough here" {
		t.Errorf("device_add: %q", e)
	}
	if _, e := c.do("quit", nil); e != "" {
		t.Fatal(e)
	}
	<-quit
	// Events in order: cont, stop, cont, reset, device_del, quit.
	if want := []string{"RESUME", "STOP", "RESUME", "RESET", "DEVICE_DELETED", "SHUTDOWN"}; !reflect.DeepEqual(c.events, want) {
		t.Errorf("events %v, want %v", c.events, want)
	}
}

func TestProbe(t *testing.T) {
	quit := make(chan struct{})
	for _, drop := range []bool{false, true} {
		st := NewState(StateConfig{Prelaunch: true, DropPrivileges: drop, Quit: func() {
			if drop {
				close(quit)
			}
		}})
		c := dial(t, serve(t, st))
		ret, e := c.do("query-command-line-options", nil)
		if e != "" {
			t.Fatal(e)
		}
		found := false
		for _, o := range ret.([]any) {
			o := o.(map[string]any)
			if o["option"] == "run-with" {
				found = true
				var names []string
				for _, p := range o["parameters"].([]any) {
					names = append(names, p.(map[string]any)["name"].(string))
				}
				if !reflect.DeepEqual(names, []string{"chroot", "user"}) {
					t.Errorf("run-with parameters %v", names)
				}
			}
		}
		if found != drop {
			t.Errorf("drop privileges %v: run-with reported %v", drop, found)
		}
		if _, e := c.do("query-command-line-options", map[string]any{"option": "spice"}); e != "GenericError: Invalid parameter 'option'" {
			t.Errorf("option spice: %q", e)
		}
		if _, e := c.do("query-pci", nil); !strings.Contains(e, "the machine is 'none'") {
			t.Errorf("query-pci on the probe: %q", e)
		}
		if drop {
			c.do("quit", nil)
			<-quit
		}
	}
}

func TestQueryPCI(t *testing.T) {
	bus, err := pci.NewBus(pci.BusConfig{Spaces: devices.NewBus()})
	if err != nil {
		t.Fatal(err)
	}
	d, err := pci.NewFunction(pci.Header{VendorID: 0x5853, DeviceID: 0x0001, Class: 0xff8000, SubsystemVendorID: 0x5853, SubsystemID: 1, InterruptPin: 1},
		pci.BAR{Kind: pci.BARIO, Size: 0x100}, pci.BAR{Kind: pci.BARMem32, Size: 0x1000000, Prefetchable: true}, pci.BAR{Kind: pci.BARMem64, Size: 0x4000})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SetROM(0x10000, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Add(d, 3, 0); err != nil {
		t.Fatal(err)
	}
	h := &fakeHost{funcs: []PCIFunction{{QdevID: "pci-pt-03_00.0", Dev: d}}}
	c := dial(t, serve(t, NewState(StateConfig{Host: h})))
	query := func() string {
		t.Helper()
		ret, e := c.do("query-pci", nil)
		if e != "" {
			t.Fatal(e)
		}
		b, _ := json.Marshal(ret)
		return string(b)
	}
	// Before the firmware places the BARs: address -1 (QEMU's unmapped).
	head := `[{"bus":0,"devices":[{"bus":0,"class_info":{"class":65408},"function":0,"id":{"device":1,"subsystem":1,"subsystem-vendor":22611,"vendor":22611},"irq":%d,"irq_pin":1,"qdev_id":"pci-pt-03_00.0","regions":[`
	tail := `],"slot":3}]}]`
	want := fmt.Sprintf(head, 0) +
		`{"address":-1,"bar":0,"size":256,"type":"io"},` +
		`{"address":-1,"bar":1,"mem_type_64":false,"prefetch":true,"size":16777216,"type":"memory"},` +
		`{"address":-1,"bar":2,"mem_type_64":true,"prefetch":false,"size":16384,"type":"memory"},` +
		`{"address":-1,"bar":6,"mem_type_64":false,"prefetch":false,"size":65536,"type":"memory"}` + tail
	if got := query(); got != want {
		t.Errorf("query-pci =\n%s\nwant\n%s", got, want)
	}
	// The guest's firmware places and enables them (the ROM stays off).
	for _, w := range []struct {
		off uint32
		v   uint32
	}{{0x10, 0xc001}, {0x14, 0xf0000000}, {0x18, 0xf1000000}, {0x1c, 0x1}, {0x30, 0xf2000000}, {0x3c, 5}, {0x04, 3}} {
		d.Write(devices.Access{Addr: uint64(w.off), Offset: uint64(w.off), Size: 4}, uint64(w.v))
	}
	want = fmt.Sprintf(head, 5) +
		`{"address":49152,"bar":0,"size":256,"type":"io"},` +
		`{"address":4026531840,"bar":1,"mem_type_64":false,"prefetch":true,"size":16777216,"type":"memory"},` +
		`{"address":8338276352,"bar":2,"mem_type_64":true,"prefetch":false,"size":16384,"type":"memory"},` +
		`{"address":-1,"bar":6,"mem_type_64":false,"prefetch":false,"size":65536,"type":"memory"}` + tail
	if got := query(); got != want {
		t.Errorf("query-pci after placement =\n%s\nwant\n%s", got, want)
	}
	ret, _ := c.do("human-monitor-command", map[string]any{"command-line": "info pci"})
	if want := "  Bus  0, device   3, function 0:\r\n    class ff80: PCI device 5853:0001\r\n      id \"pci-pt-03_00.0\"\r\n"; ret != want {
		t.Errorf("info pci = %q, want %q", ret, want)
	}
}

// TestQueryPCILikeQEMU compares query-pci's entry for the same device,
// QEMU's pci-serial (godm's devices/uart/pciserial), with QEMU 7.2's.
func TestQueryPCILikeQEMU(t *testing.T) {
	q := startQEMU(t, "-machine", "pc-i440fx-4.2", "-accel", "tcg", "-m", "64", "-device", "pci-serial,addr=03.0,id=ser")
	bus, err := pci.NewBus(pci.BusConfig{Spaces: devices.NewBus()})
	if err != nil {
		t.Fatal(err)
	}
	d, err := pciserial.New(uart.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := bus.Add(d.PCI, 3, 0); err != nil {
		t.Fatal(err)
	}
	got := pciInfo(PCIFunction{QdevID: "ser", Dev: d.PCI})
	b, _ := json.Marshal(got)
	var gotJSON any
	json.Unmarshal(b, &gotJSON)
	ret, e := q.do("query-pci", "")
	if e != "" {
		t.Fatal(e)
	}
	var want any
	for _, dev := range ret.([]any)[0].(map[string]any)["devices"].([]any) {
		if dev.(map[string]any)["slot"] == 3.0 {
			want = dev
		}
	}
	if !reflect.DeepEqual(gotJSON, want) {
		t.Errorf("query-pci for pci-serial:\ngodm %s\nQEMU %v", b, want)
	}
}

func TestStatsCommand(t *testing.T) {
	c := dial(t, serve(t, NewState(StateConfig{Host: &fakeHost{}})))
	ret, e := c.do(StatsCommand, nil)
	if e != "" {
		t.Fatal(e)
	}
	b, _ := json.Marshal(ret)
	want := `{"metrics":[{"help":"test","name":"godm_test_total","samples":[{"labels":{"device":"serial0"},"name":"godm_test_total","value":3}],"type":"counter"}]}`
	if string(b) != want {
		t.Errorf("%s = %s, want %s", StatsCommand, b, want)
	}
	if _, e := c.do(StatsCommand, map[string]any{"x": 1}); e != "GenericError: Parameter 'x' is unexpected" {
		t.Errorf("with an argument: %q", e)
	}
	// The probe has no machine to count.
	c = dial(t, serve(t, NewState(StateConfig{})))
	if _, e := c.do(StatsCommand, nil); !strings.Contains(e, "the machine is 'none'") {
		t.Errorf("on the probe: %q", e)
	}
}

// TestCDCommands is xl cd-eject and cd-insert as libxl_disk.c sends
// them: eject by the ide-cd id, blockdev-change-medium with a format,
// DEVICE_TRAY_MOVED for each tray movement, and the refusals.
func TestCDCommands(t *testing.T) {
	h := &fakeHost{cdFile: "/old.iso"}
	c := dial(t, serve(t, NewState(StateConfig{Host: h})))
	ret, e := c.do("query-block", nil)
	if e != "" {
		t.Fatal(e)
	}
	b, _ := json.Marshal(ret)
	if !strings.Contains(string(b), `"device":"ide-5632"`) || !strings.Contains(string(b), `"tray_open":false`) ||
		!strings.Contains(string(b), `"file":"/old.iso"`) || !strings.Contains(string(b), `"direct":true`) {
		t.Errorf("query-block = %s", b)
	}
	if _, e := c.do("eject", map[string]any{"id": "ide-5632"}); e != "" {
		t.Fatal(e)
	}
	if _, e := c.do("blockdev-change-medium", map[string]any{"id": "ide-5632", "filename": "/new.iso", "format": "raw"}); e != "" {
		t.Fatal(e)
	}
	if got := strings.Join(c.events, " "); got != "DEVICE_TRAY_MOVED DEVICE_TRAY_MOVED" {
		t.Errorf("events %q, want the tray opened by eject, closed by the change", got)
	}
	h.mu.Lock()
	h.cdLocked = true
	h.mu.Unlock()
	for _, tc := range []struct {
		cmd  string
		args map[string]any
		want string
	}{
		{"eject", map[string]any{"id": "ide-5632"}, "GenericError: Device 'ide-5632' is locked"},
		{"eject", map[string]any{}, "GenericError: Either 'device' or 'id' must be specified"},
		{"eject", map[string]any{"id": "x", "device": "y"}, "GenericError: Cannot specify both"},
		{"blockdev-change-medium", map[string]any{"id": "ide-5632", "filename": "/x.iso"}, "GenericError: format is required"},
		{"blockdev-change-medium", map[string]any{"id": "ide-5632", "filename": "/x.iso", "format": "raw", "read-only-mode": "read-write"}, "GenericError: a CD-ROM medium is read-only"},
	} {
		if _, e := c.do(tc.cmd, tc.args); !strings.HasPrefix(e, tc.want) {
			t.Errorf("%s %v: %q, want %q", tc.cmd, tc.args, e, tc.want)
		}
	}
	if _, e := c.do("eject", map[string]any{"id": "ide-5632", "force": true}); e != "" {
		t.Errorf("forced eject: %q", e)
	}
	want := []string{"eject ide-5632 false", "change ide-5632 /new.iso raw", "eject ide-5632 false", "eject ide-5632 true"}
	if got := h.Calls(); !reflect.DeepEqual(got, want) {
		t.Errorf("host calls %v, want %v", got, want)
	}
}

// TestFdsets is libxl's cd-insert: add-fd with the image's descriptor
// (SCM_RIGHTS), blockdev-change-medium on /dev/fdset/N (the host gets a
// path that opens the same file), query-fdsets, remove-fd.
func TestFdsets(t *testing.T) {
	h := &fakeHost{}
	c := dial(t, serve(t, NewState(StateConfig{Host: h})))
	img := filepath.Join(t.TempDir(), "cd.iso")
	if err := os.WriteFile(img, []byte("iso"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, e := c.do("add-fd", map[string]any{"opaque": "x"}); !strings.Contains(e, "No file descriptor supplied") {
		t.Errorf("add-fd without a descriptor: %q", e)
	}
	// The descriptor rides with the command's bytes, as libxl sends it.
	b, _ := json.Marshal(map[string]any{"execute": "add-fd", "arguments": map[string]any{"opaque": "/srv/cd.iso"}, "id": 99})
	if _, _, err := c.c.(*net.UnixConn).WriteMsgUnix(append(b, '\r', '\n'), unix.UnixRights(int(f.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	rep := c.read()
	ret, _ := rep["return"].(map[string]any)
	if ret == nil || ret["fdset-id"] != 0.0 {
		t.Fatalf("add-fd: %v", rep)
	}
	ret2, e := c.do("query-fdsets", nil)
	if l, _ := ret2.([]any); e != "" || len(l) != 1 {
		t.Errorf("query-fdsets: %v %q", ret2, e)
	}
	if _, e := c.do("blockdev-change-medium", map[string]any{"id": "ide-5632", "filename": "/dev/fdset/0", "format": "raw"}); e != "" {
		t.Fatal(e)
	}
	h.mu.Lock()
	got := h.cdData
	h.mu.Unlock()
	if got != "iso" {
		t.Errorf("the host's path does not open the passed file: read %q (calls %v)", got, h.Calls())
	}
	if _, e := c.do("blockdev-change-medium", map[string]any{"id": "ide-5632", "filename": "/dev/fdset/7", "format": "raw"}); !strings.Contains(e, "no fdset 7") {
		t.Errorf("unknown fdset: %q", e)
	}
	if _, e := c.do("remove-fd", map[string]any{"fdset-id": 0}); e != "" {
		t.Errorf("remove-fd: %q", e)
	}
	if _, e := c.do("remove-fd", map[string]any{"fdset-id": 0}); !strings.Contains(e, "File descriptor named 'fdset-id:0' not found") {
		t.Errorf("second remove-fd: %q", e)
	}
}
