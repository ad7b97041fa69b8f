package dmcontract

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"
)

// libxlVCPUSet is libxl's xl vcpu-set on a qemu-xen HVM domain
// (tools/libs/light/libxl_domain.c libxl_set_vcpuonline and its QMP
// callbacks), step by step over QMP: query-cpus-fast, each "cpu-index" a
// set bit of the current map; query-hotpluggable-cpus, the first
// element's "type" the driver; then device_add {id: "cpu-N", driver,
// socket-id: N, core-id: 0, thread-id: 0} for every wanted vCPU not
// present, in index order. It returns the device_adds sent.
func libxlVCPUSet(t *testing.T, c *client, want []int) []string {
	t.Helper()
	ret, e := c.do("query-cpus-fast", nil)
	if e != "" {
		t.Fatalf("query-cpus-fast: %s", e)
	}
	current := map[int]bool{}
	for _, cpu := range ret.([]any) {
		idx, ok := cpu.(map[string]any)["cpu-index"].(float64)
		if !ok {
			t.Fatalf("query-cpus-fast: no integer cpu-index in %v (libxl: \"Failed to retrieve CPU index.\")", cpu)
		}
		current[int(idx)] = true
	}
	ret, e = c.do("query-hotpluggable-cpus", nil)
	if e != "" {
		t.Fatalf("query-hotpluggable-cpus: %s", e)
	}
	list, _ := ret.([]any)
	if len(list) == 0 {
		t.Fatal("query-hotpluggable-cpus: empty (libxl: ERROR_QEMU_API)")
	}
	drv, ok := list[0].(map[string]any)["type"].(string)
	if !ok {
		t.Fatalf("query-hotpluggable-cpus: no type in %v", list[0])
	}
	var sent []string
	for _, i := range want {
		if current[i] {
			continue
		}
		id := fmt.Sprintf("cpu-%d", i)
		if _, e := c.do("device_add", map[string]any{"id": id, "driver": drv, "socket-id": i, "core-id": 0, "thread-id": 0}); e != "" {
			t.Fatalf("device_add %s: %s", id, e)
		}
		sent = append(sent, id)
	}
	return sent
}

func TestVCPUSet(t *testing.T) {
	h := &fakeHost{ids: []string{"pci-pt-03_00.0"}}
	st := NewState(StateConfig{Host: h, VCPUs: 2, MaxVCPUs: 4})
	c := dial(t, serve(t, st))
	// xl vcpu-set 3: CPUs 0-2 wanted, 0-1 present.
	if got := libxlVCPUSet(t, c, []int{0, 1, 2}); !reflect.DeepEqual(got, []string{"cpu-2"}) {
		t.Errorf("device_adds %v", got)
	}
	if got, want := h.Calls(), []string{"cpu 2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("host calls %v, want %v", got, want)
	}
	// Again with the same count: nothing to add.
	if got := libxlVCPUSet(t, c, []int{0, 1, 2}); len(got) != 0 {
		t.Errorf("second vcpu-set 3 sent %v", got)
	}
	if got := libxlVCPUSet(t, c, []int{0, 1, 2, 3}); !reflect.DeepEqual(got, []string{"cpu-3"}) {
		t.Errorf("device_adds %v", got)
	}
	if got, want := st.OnlineCPUs(), []int{0, 1, 2, 3}; !reflect.DeepEqual(got, want) {
		t.Errorf("online %v, want %v", got, want)
	}
	ret, _ := c.do("human-monitor-command", map[string]any{"command-line": "info cpus"})
	if want := "* CPU #0: thread_id=0\r\n  CPU #1: thread_id=0\r\n  CPU #2: thread_id=0\r\n  CPU #3: thread_id=0\r\n"; ret != want {
		t.Errorf("info cpus = %q", ret)
	}
	// A host without ioreq histograms (the fake's metrics have none).
	if ret, e := c.do("human-monitor-command", map[string]any{"command-line": " info  ioreq "}); ret != "no ioreq histograms\r\n" {
		t.Errorf("info ioreq = %q %s", ret, e)
	}
	// A hot-plugged vCPU cannot be unplugged (legacy PIIX4 hotplug), and
	// its id is taken for every other device.
	if _, e := c.do("device_del", map[string]any{"id": "cpu-2"}); e != "GenericError: acpi: device unplug request for not supported device type: qemu64-x86_64-cpu" {
		t.Errorf("device_del cpu-2: %q", e)
	}
	if _, e := c.do("device_add", map[string]any{"id": "cpu-2", "driver": "xen-pci-passthrough", "hostaddr": "0000:03:00.0"}); e != "GenericError: Duplicate device ID 'cpu-2'" {
		t.Errorf("device_add over cpu-2: %q", e)
	}
	if _, e := c.do("device_add", map[string]any{"id": "pci-pt-03_00.0", "driver": CPUType, "socket-id": 1, "core-id": 0, "thread-id": 0}); e != "GenericError: Duplicate device ID 'pci-pt-03_00.0'" {
		t.Errorf("cpu over a PCI device's id: %q", e)
	}
	if got, want := h.Calls(), []string{"cpu 2", "cpu 3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("host calls %v, want %v", got, want)
	}
}

// cpuScript is the sequence both godm and QEMU 7.2 run in
// TestCPUHotplugLikeQEMU: libxl's exact device_add, then hostile and
// mistaken variants.
var cpuScript = []struct {
	cmd  string
	args string
}{
	{"query-hotpluggable-cpus", ``},
	{"query-cpus-fast", ``},
	{"device_add", `{"id":"cpu-2","driver":"qemu64-x86_64-cpu","socket-id":2,"core-id":0,"thread-id":0}`},
	{"device_add", `{"id":"cpu-2b","driver":"qemu64-x86_64-cpu","socket-id":2,"core-id":0,"thread-id":0}`},
	{"device_add", `{"id":"cpu-2","driver":"qemu64-x86_64-cpu","socket-id":3,"core-id":0,"thread-id":0}`},
	{"device_add", `{"id":"cpu-9","driver":"qemu64-x86_64-cpu","socket-id":9,"core-id":0,"thread-id":0}`},
	{"device_add", `{"id":"cpu-x","driver":"qemu64-x86_64-cpu","core-id":0,"thread-id":0}`},
	{"device_add", `{"id":"cpu-y","driver":"qemu64-x86_64-cpu","socket-id":3,"core-id":1,"thread-id":0}`},
	{"device_add", `{"id":"cpu-y","driver":"qemu64-x86_64-cpu","socket-id":3,"core-id":0}`},
	{"device_add", `{"id":"cpu-y","driver":"qemu64-x86_64-cpu","socket-id":3,"thread-id":0}`},
	{"device_add", `{"id":"cpu-y","driver":"qemu64-x86_64-cpu","socket-id":3,"core-id":0,"thread-id":2}`},
	{"device_add", `{"id":"cpu-y","driver":"qemu64-x86_64-cpu","socket-id":3,"core-id":0,"thread-id":0,"die-id":1}`},
	{"device_add", `{"id":"cpu-z","driver":"max-x86_64-cpu","socket-id":3,"core-id":0,"thread-id":0}`},
	{"device_add", `{"id":"cpu-z","driver":"qemu64-x86_64-cpu","socket-id":3,"core-id":0,"thread-id":0,"foo":1}`},
	{"device_add", `{"id":"cpu-z","driver":"qemu64-x86_64-cpu","socket-id":"abc","core-id":0,"thread-id":0}`},
	{"device_add", `{"id":"cpu-z","driver":"qemu64-x86_64-cpu","socket-id":1.5,"core-id":0,"thread-id":0}`},
	{"device_add", `{"id":"cpu-z","driver":"qemu64-x86_64-cpu","socket-id":true,"core-id":0,"thread-id":0}`},
	{"device_add", `{"id":"cpu-z","driver":"qemu64-x86_64-cpu","socket-id":10000000000,"core-id":0,"thread-id":0}`},
	{"device_add", `{"id":"cpu-z","driver":"qemu64-x86_64-cpu","socket-id":-3,"core-id":0,"thread-id":0}`},
	{"device_add", `{"id":"9z","driver":"qemu64-x86_64-cpu","socket-id":3,"core-id":0,"thread-id":0}`},
	{"device_add", `{"id":"cpu-0","driver":"qemu64-x86_64-cpu","socket-id":0,"core-id":0,"thread-id":0}`},
	{"device_add", `{"driver":"qemu64-x86_64-cpu","socket-id":"1","core-id":0,"thread-id":0,"die-id":0,"node-id":0}`},
	{"device_del", `{"id":"cpu-2"}`},
	{"device_del", `{"id":"cpu-7"}`},
	{"query-hotpluggable-cpus", ``},
	{"query-cpus-fast", ``},
	{"human-monitor-command", `{"command-line":"info cpus"}`},
}

// TestCPUHotplugLikeQEMU runs cpuScript on QEMU 7.2 itself (an i440FX
// machine of xenfv's era, -smp 1,maxcpus=4 as libxl writes for vcpus=1,
// maxvcpus=4) and on godm, and compares every answer; only host thread
// ids differ (godm runs no vCPU threads).
func TestCPUHotplugLikeQEMU(t *testing.T) {
	q := startQEMU(t, "-machine", "pc-i440fx-4.2", "-accel", "tcg", "-smp", "1,maxcpus=4", "-m", "64")
	h := &fakeHost{}
	c := dial(t, serve(t, NewState(StateConfig{Host: h, VCPUs: 1, MaxVCPUs: 4})))
	for _, step := range cpuScript {
		var args map[string]any
		if step.args != "" {
			dec := json.NewDecoder(strings.NewReader(step.args))
			dec.UseNumber()
			if err := dec.Decode(&args); err != nil {
				t.Fatal(err)
			}
		}
		wantRet, wantErr := q.do(step.cmd, step.args)
		gotRet, gotErr := c.do(step.cmd, args)
		label := step.cmd + " " + step.args
		if gotErr != wantErr {
			t.Errorf("%s: godm %q, QEMU %q", label, gotErr, wantErr)
			continue
		}
		if g, w := maskThreads(gotRet), maskThreads(wantRet); !reflect.DeepEqual(g, w) {
			t.Errorf("%s:\ngodm %v\nQEMU %v", label, g, w)
		}
	}
	if got, want := h.Calls(), []string{"cpu 2", "cpu 1", "del cpu-7"}; !reflect.DeepEqual(got, want) {
		t.Errorf("host calls %v, want %v", got, want)
	}
}

// maskThreads zeroes host thread ids in query-cpus-fast and info cpus.
func maskThreads(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = maskThreads(e)
		}
		return out
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if k == "thread-id" {
				if _, isProps := x["socket-id"]; !isProps {
					e = 0.0
				}
			}
			out[k] = maskThreads(e)
		}
		return out
	case string:
		var b strings.Builder
		for _, line := range strings.SplitAfter(x, "\n") {
			if i := strings.Index(line, "thread_id="); i >= 0 {
				line = line[:i] + "thread_id=N\r\n"
			}
			b.WriteString(line)
		}
		return b.String()
	}
	return v
}

// qemuQMP is a QEMU process driven through QMP on its stdio.
type qemuQMP struct {
	t  *testing.T
	in io.Writer
	r  *bufio.Reader
}

// startQEMU runs qemu-system-x86_64 with args (-S, no devices, QMP on
// stdio) until the test ends.
func startQEMU(t *testing.T, args ...string) *qemuQMP {
	t.Helper()
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed (scripts/test-packages.txt): no QEMU to compare with")
	}
	cmd := exec.Command(bin, append([]string{"-nodefaults", "-display", "none", "-S", "-qmp", "stdio"}, args...)...)
	in, _ := cmd.StdinPipe()
	outp, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	q := &qemuQMP{t: t, in: in, r: bufio.NewReaderSize(outp, 1<<20)}
	q.read() // greeting
	if _, e := q.do("qmp_capabilities", ""); e != "" {
		t.Fatal(e)
	}
	return q
}

func (q *qemuQMP) read() map[string]any {
	for {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			q.t.Fatalf("qemu: %v", err)
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			q.t.Fatalf("qemu: %v", err)
		}
		if _, ev := m["event"]; !ev {
			return m
		}
	}
}

// do runs cmd with args (JSON text, "" for none) and returns the result or
// "Class: desc", as client.do does.
func (q *qemuQMP) do(cmd, args string) (any, string) {
	q.t.Helper()
	msg := `{"execute":"` + cmd + `"`
	if args != "" {
		msg += `,"arguments":` + args
	}
	io.WriteString(q.in, msg+"}\n")
	m := q.read()
	if e, ok := m["error"].(map[string]any); ok {
		return nil, e["class"].(string) + ": " + e["desc"].(string)
	}
	return m["return"], ""
}
