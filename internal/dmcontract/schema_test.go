package dmcontract

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"godm/devices"
	"godm/internal/qmp"
	"godm/pci"
)

// qemuSchema asks QEMU itself (qemu-system-x86_64 -machine none, QMP on
// stdio) for its query-qmp-schema: the reference the reply shapes are
// checked against. Type names other than commands' are masked by QEMU
// (numbers); member names are real.
func qemuSchema(t *testing.T) map[string]map[string]any {
	t.Helper()
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed (scripts/test-packages.txt): no QAPI schema to check against")
	}
	cmd := exec.Command(bin, "-machine", "none", "-nodefaults", "-display", "none", "-S", "-qmp", "stdio")
	in, _ := cmd.StdinPipe()
	outp, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	r := bufio.NewReaderSize(outp, 1<<20)
	read := func() map[string]any {
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				t.Fatalf("qemu: %v", err)
			}
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatalf("qemu: %v", err)
			}
			if _, ev := m["event"]; !ev {
				return m
			}
		}
	}
	read() // greeting
	io.WriteString(in, `{"execute":"qmp_capabilities"}`+"\n")
	read()
	io.WriteString(in, `{"execute":"query-qmp-schema"}`+"\n")
	m := read()
	list, ok := m["return"].([]any)
	if !ok {
		t.Fatalf("query-qmp-schema: %v", m)
	}
	io.WriteString(in, `{"execute":"quit"}`+"\n")
	s := map[string]map[string]any{}
	for _, e := range list {
		e := e.(map[string]any)
		s[e["name"].(string)] = e
	}
	return s
}

// conform checks v (decoded JSON) against the schema type named typ.
func conform(s map[string]map[string]any, typ string, v any, path string) error {
	ti, ok := s[typ]
	if !ok {
		return fmt.Errorf("%s: type %q not in the schema", path, typ)
	}
	switch ti["meta-type"] {
	case "builtin":
		jt := ti["json-type"].(string)
		ok := false
		switch jt {
		case "string":
			_, ok = v.(string)
		case "int", "number":
			_, ok = v.(float64)
		case "boolean":
			_, ok = v.(bool)
		case "null":
			ok = v == nil
		case "value":
			ok = true
		case "object":
			_, ok = v.(map[string]any)
		}
		if !ok {
			return fmt.Errorf("%s: %v is not a %s", path, v, jt)
		}
	case "enum":
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: %v is not an enum string", path, v)
		}
		for _, x := range ti["values"].([]any) {
			if x == str {
				return nil
			}
		}
		return fmt.Errorf("%s: %q is not one of %v", path, str, ti["values"])
	case "array":
		l, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: %v is not an array", path, v)
		}
		for i, x := range l {
			if err := conform(s, ti["element-type"].(string), x, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case "alternate":
		for _, m := range ti["members"].([]any) {
			if conform(s, m.(map[string]any)["type"].(string), v, path) == nil {
				return nil
			}
		}
		return fmt.Errorf("%s: %v matches no branch", path, v)
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %v is not an object", path, v)
		}
		members := map[string]map[string]any{}
		for _, m := range ti["members"].([]any) {
			m := m.(map[string]any)
			members[m["name"].(string)] = m
		}
		if tag, ok := ti["tag"].(string); ok {
			for _, vr := range ti["variants"].([]any) {
				vr := vr.(map[string]any)
				if vr["case"] == obj[tag] {
					for _, m := range s[vr["type"].(string)]["members"].([]any) {
						m := m.(map[string]any)
						members[m["name"].(string)] = m
					}
				}
			}
		}
		for k, x := range obj {
			m, ok := members[k]
			if !ok {
				return fmt.Errorf("%s: member %q is not in QEMU's schema", path, k)
			}
			if err := conform(s, m["type"].(string), x, path+"."+k); err != nil {
				return err
			}
		}
		for name, m := range members {
			if _, optional := m["default"]; !optional {
				if _, ok := obj[name]; !ok {
					return fmt.Errorf("%s: required member %q is missing", path, name)
				}
			}
		}
	default:
		return fmt.Errorf("%s: meta-type %v not handled", path, ti["meta-type"])
	}
	return nil
}

// TestRepliesConformToQEMUSchema checks every reply godm's commands give
// against the return type QEMU 7.2 declares for the same command, and
// that each command exists in QEMU under that name.
func TestRepliesConformToQEMUSchema(t *testing.T) {
	s := qemuSchema(t)
	bus, err := pci.NewBus(pci.BusConfig{Spaces: devices.NewBus()})
	if err != nil {
		t.Fatal(err)
	}
	d, err := pci.New(pci.Header{VendorID: 0x5853, DeviceID: 1, Class: 0xff8000, InterruptPin: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Add(d, 2, 0); err != nil {
		t.Fatal(err)
	}
	h := &saverHost{fakeHost: fakeHost{funcs: []PCIFunction{{Dev: d}, {QdevID: "pci-pt-03_00.0", Dev: d}}, cdFile: "/srv/old.iso"}, state: "state"}
	statePath := filepath.Join(t.TempDir(), "qemu-save")
	st := NewState(StateConfig{Prelaunch: true, Host: h, VCPUs: 2, MaxVCPUs: 3, DropPrivileges: true,
		Chardevs: []Chardev{{"libxl-cmd", "unix:/run/q,server=on"}, {"serial0", "pty:/dev/pts/3"}}})
	var events []map[string]any
	st.emit = func(ev string, data any) {
		if ev == "DEVICE_TRAY_MOVED" {
			b, _ := json.Marshal(data)
			var v map[string]any
			json.Unmarshal(b, &v)
			events = append(events, v)
		}
	}
	defer func() {
		if len(events) != 2 {
			t.Errorf("%d DEVICE_TRAY_MOVED events, want 2", len(events))
		}
		for _, v := range events {
			if err := conform(s, s["DEVICE_TRAY_MOVED"]["arg-type"].(string), v, "DEVICE_TRAY_MOVED"); err != nil {
				t.Error(err)
			}
		}
	}()
	cmds := st.Commands()
	calls := []struct {
		cmd  string
		args map[string]any
	}{
		{"query-status", nil}, {"query-version", nil}, {"query-chardev", nil}, {"query-pci", nil},
		{"query-cpus-fast", nil}, {"query-hotpluggable-cpus", nil}, {"query-fdsets", nil}, {"query-command-line-options", nil},
		{"query-command-line-options", map[string]any{"option": "run-with"}}, {"query-vnc", nil},
		{"human-monitor-command", map[string]any{"command-line": "info status"}},
		{"cont", nil}, {"query-status", nil}, {"stop", nil}, {"query-status", nil},
		{"xen-save-devices-state", map[string]any{"filename": statePath, "live": true}},
		{"xen-load-devices-state", map[string]any{"filename": statePath}}, {"system_reset", nil},
		{"device_del", map[string]any{"id": "pci-pt-03_00.0"}},
		{"xen-set-global-dirty-log", map[string]any{"enable": true}},
		{"set_link", map[string]any{"name": "nic0", "up": false}},
		{"query-block", nil}, {"eject", map[string]any{"id": "ide-5632"}}, {"query-block", nil},
		{"blockdev-change-medium", map[string]any{"id": "ide-5632", "filename": "/srv/x.iso", "format": "raw"}},
		{"query-fdsets", nil},
	}
	seen := map[string]bool{}
	for _, c := range calls {
		seen[c.cmd] = true
		ci, ok := s[c.cmd]
		if !ok || ci["meta-type"] != "command" {
			t.Errorf("%s: not a QEMU 7.2 command", c.cmd)
			continue
		}
		args := c.args
		if args == nil {
			args = map[string]any{}
		}
		// The arguments godm is given must be valid for QEMU too.
		if err := conform(s, ci["arg-type"].(string), args, c.cmd+" arguments"); err != nil {
			t.Errorf("%v", err)
		}
		res, err := cmds[c.cmd](&qmp.Request{Command: c.cmd, Args: args})
		if err != nil {
			t.Errorf("%s: %v", c.cmd, err)
			continue
		}
		if res == nil {
			res = map[string]any{}
		}
		b, _ := json.Marshal(res)
		var v any
		json.Unmarshal(b, &v)
		if err := conform(s, ci["ret-type"].(string), v, c.cmd); err != nil {
			t.Errorf("%v (reply %s)", err, b)
		}
	}
	// Every command godm serves is QEMU's, and is covered above.
	var names []string
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if n == StatsCommand {
			continue // godm's own, x- prefixed (TestStatsCommand)
		}
		if ci, ok := s[n]; !ok || ci["meta-type"] != "command" {
			t.Errorf("godm serves %q, which QEMU 7.2 does not have", n)
		}
		// The descriptor commands need a descriptor passed on a socket:
		// TestFDSetsLikeQEMU compares them with QEMU itself.
		fdCmd := n == "add-fd" || n == "remove-fd" || n == "getfd" || n == "closefd"
		if !seen[n] && !strings.HasPrefix(n, "device_add") && n != "quit" && !fdCmd {
			t.Errorf("%s: reply not checked against the schema", n)
		}
	}
}
