package qmp

import (
	"strings"
	"testing"
)

// A schema in query-qmp-schema's form, small enough to reason about.
const miniSchema = `[
 {"name":"str","meta-type":"builtin","json-type":"string"},
 {"name":"int","meta-type":"builtin","json-type":"int"},
 {"name":"bool","meta-type":"builtin","json-type":"boolean"},
 {"name":"any","meta-type":"builtin","json-type":"value"},
 {"name":"0","meta-type":"object","members":[]},
 {"name":"1","meta-type":"object","members":[{"name":"filename","type":"str"},{"name":"live","type":"bool","default":null}]},
 {"name":"2","meta-type":"enum","values":["prelaunch","running","paused"]},
 {"name":"3","meta-type":"object","members":[{"name":"running","type":"bool"},{"name":"status","type":"2"}]},
 {"name":"4","meta-type":"object","members":[{"name":"driver","type":"str"},{"name":"id","type":"str","default":null}]},
 {"name":"5","meta-type":"object","tag":"target","variants":[{"case":"s390x","type":"6"},{"case":"x86_64","type":"0"}],
  "members":[{"name":"cpu-index","type":"int"},{"name":"target","type":"7"}]},
 {"name":"6","meta-type":"object","members":[{"name":"cpu-state","type":"str"}]},
 {"name":"7","meta-type":"enum","values":["s390x","x86_64"]},
 {"name":"[5]","meta-type":"array","element-type":"5"},
 {"name":"8","meta-type":"alternate","members":[{"type":"int"},{"type":"str"}]},
 {"name":"9","meta-type":"object","members":[{"name":"v","type":"8"}]},
 {"name":"xen-save-devices-state","meta-type":"command","arg-type":"1","ret-type":"0"},
 {"name":"query-status","meta-type":"command","arg-type":"0","ret-type":"3"},
 {"name":"device_add","meta-type":"command","arg-type":"4","ret-type":"0"},
 {"name":"query-cpus-fast","meta-type":"command","arg-type":"0","ret-type":"[5]"},
 {"name":"alt","meta-type":"command","arg-type":"0","ret-type":"9"},
 {"name":"STOP","meta-type":"event","arg-type":"0"}
]`

func mini(t *testing.T) *Schema {
	t.Helper()
	s, err := ParseSchema([]byte(miniSchema))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCheckCommand(t *testing.T) {
	s := mini(t)
	good := []Command{
		{Name: "xen-save-devices-state", Args: []Arg{{Name: "filename", Type: "string"}, {Name: "live", Type: "boolean", Optional: true}}},
		{Name: "query-status", Returns: "object"},
		{Name: "device_add", Args: []Arg{{Name: "driver", Type: "string"}, {Name: "hostaddr", Type: "string", Prop: true}}},
		{Name: "query-cpus-fast", Returns: "array"},
		{Name: "cpu-add", Gone: "removed"},
	}
	for _, c := range good {
		if err := s.CheckCommand(c); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
	for _, tc := range []struct {
		c    Command
		want string
	}{
		{Command{Name: "nope"}, "nope: not a command of QEMU's schema"},
		{Command{Name: "STOP"}, "STOP: not a command of QEMU's schema"},
		{Command{Name: "query-status", Gone: "x"}, "query-status: marked gone (x) but QEMU has it"},
		{Command{Name: "query-status"}, `query-status: returns "object" in QEMU, "" in the table`},
		{Command{Name: "xen-save-devices-state", Args: []Arg{{Name: "live", Type: "boolean", Optional: true}}}, "xen-save-devices-state: mandatory argument filename missing from the table"},
		{Command{Name: "xen-save-devices-state", Args: []Arg{{Name: "filename", Type: "int"}}}, "xen-save-devices-state: argument filename is string in QEMU, int in the table"},
		{Command{Name: "xen-save-devices-state", Args: []Arg{{Name: "filename", Type: "string"}, {Name: "live", Type: "boolean"}}}, "xen-save-devices-state: argument live optional=true in QEMU, false in the table"},
		{Command{Name: "xen-save-devices-state", Args: []Arg{{Name: "filename", Type: "string"}, {Name: "x", Type: "int"}}}, "xen-save-devices-state: QEMU has no argument x"},
		{Command{Name: "device_add", Args: []Arg{{Name: "driver", Type: "string", Prop: true}}}, "device_add: driver is a schema argument, not a device property"},
	} {
		if err := s.CheckCommand(tc.c); err == nil || err.Error() != tc.want {
			t.Errorf("CheckCommand(%+v) = %v, want %q", tc.c, err, tc.want)
		}
	}
}

func TestCheckReturn(t *testing.T) {
	s := mini(t)
	type status struct {
		Running bool   `json:"running"`
		Status  string `json:"status"`
	}
	for _, tc := range []struct {
		cmd  string
		v    any
		want string // "" for valid
	}{
		{"query-status", status{false, "prelaunch"}, ""},
		{"query-status", map[string]any{"running": true, "status": "running"}, ""},
		{"query-status", status{false, "booting"}, `query-status: return.status: "booting" is not one of ["prelaunch" "running" "paused"]`},
		{"query-status", map[string]any{"status": "paused"}, "query-status: return: member running is missing"},
		{"query-status", map[string]any{"running": 1, "status": "paused"}, "query-status: return.running: 1 is not of JSON type boolean"},
		{"query-status", map[string]any{"running": true, "status": "paused", "extra": 1}, "query-status: return: member extra is not in the schema"},
		{"xen-save-devices-state", nil, ""},
		{"xen-save-devices-state", map[string]any{"x": 1}, "xen-save-devices-state: return: member x is not in the schema"},
		{"query-cpus-fast", []any{map[string]any{"cpu-index": 0, "target": "x86_64"}}, ""},
		{"query-cpus-fast", []map[string]any{}, ""},
		{"query-cpus-fast", []any{map[string]any{"cpu-index": 1.5, "target": "x86_64"}}, "query-cpus-fast: return[0].cpu-index: 1.5 is not of JSON type int"},
		{"query-cpus-fast", []any{map[string]any{"cpu-index": 0, "target": "s390x"}}, "query-cpus-fast: return[0]: member cpu-state is missing"},
		{"query-cpus-fast", []any{map[string]any{"cpu-index": 0, "target": "x86_64", "cpu-state": "x"}}, "query-cpus-fast: return[0]: member cpu-state is not in the schema"},
		{"query-cpus-fast", map[string]any{}, "query-cpus-fast: return: map[] is not an array"},
		{"query-cpus-fast", nil, "query-cpus-fast: return: map[] is not an array"},
		{"alt", map[string]any{"v": 3}, ""},
		{"alt", map[string]any{"v": "x"}, ""},
		{"alt", map[string]any{"v": true}, "alt: return.v: true matches no branch of an alternate"},
		{"nope", nil, "nope: not a command of QEMU's schema"},
	} {
		err := s.CheckReturn(tc.cmd, tc.v)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || err.Error() != tc.want) {
			t.Errorf("CheckReturn(%s, %v) = %v, want %q", tc.cmd, tc.v, err, tc.want)
		}
	}
	if err := s.CheckEvent("STOP", nil); err != nil {
		t.Errorf("STOP: %v", err)
	}
	if err := s.CheckEvent("STOP", map[string]any{"x": 1}); err == nil || !strings.Contains(err.Error(), "member x is not in the schema") {
		t.Errorf("STOP with data: %v", err)
	}
	if err := s.CheckEvent("query-status", nil); err == nil {
		t.Error("a command accepted as an event")
	}
}

// Replies and events as godm's handlers will build them, checked against
// QEMU 7.2's own schema: the check accepts QEMU's shapes and refuses a
// wrong one.
func TestQEMUSchemaReplies(t *testing.T) {
	s := qemuSchema(t)
	for _, tc := range []struct {
		name string
		v    any
		ok   bool
	}{
		{"query-status", map[string]any{"running": false, "singlestep": false, "status": "prelaunch"}, true},
		{"query-status", map[string]any{"running": false, "status": "prelaunch"}, false},
		{"query-pci", []any{map[string]any{"bus": 0, "devices": []any{map[string]any{
			"bus": 0, "slot": 2, "function": 0, "irq_pin": 1, "qdev_id": "pci-pt-03_00.0",
			"class_info": map[string]any{"class": 512}, "id": map[string]any{"device": 4321, "vendor": 32902},
			"regions": []any{}}}}}, true},
		{"query-pci", []any{map[string]any{"bus": 0, "devices": []any{map[string]any{"bus": 0, "slot": 2}}}}, false},
		{"add-fd", map[string]any{"fdset-id": 1, "fd": 7}, true},
		{"add-fd", map[string]any{"fdset-id": 1}, false},
		{"human-monitor-command", "ok\r\n", true},
		{"cont", nil, true},
	} {
		err := s.CheckReturn(tc.name, tc.v)
		if (err == nil) != tc.ok {
			t.Errorf("CheckReturn(%s, %v) = %v, want ok=%v", tc.name, tc.v, err, tc.ok)
		}
	}
	if err := s.CheckEvent("DEVICE_DELETED", map[string]any{"device": "pci-pt-03_00.0", "path": "/machine/peripheral/pci-pt-03_00.0"}); err != nil {
		t.Error(err)
	}
	for _, ev := range []string{"STOP", "RESUME"} {
		if err := s.CheckEvent(ev, nil); err != nil {
			t.Error(err)
		}
	}
}
