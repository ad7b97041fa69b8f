package qmp

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startQEMUMonitor starts QEMU with no machine and one QMP monitor on a
// Unix socket, as libxl's probe does (XEN-FACTS §2.2), and returns the
// socket path. It skips when QEMU is absent (scripts/test.sh installs it,
// so CI runs these tests).
func startQEMUMonitor(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skipf("qemu-system-x86_64 not installed (scripts/test.sh installs qemu-system-x86): %v", err)
	}
	path := filepath.Join(t.TempDir(), "qmp")
	cmd := exec.Command(bin, "-machine", "none", "-nodefaults", "-display", "none", "-S",
		"-chardev", "socket,id=libxl-cmd,path="+path+",server=on,wait=off",
		"-mon", "chardev=libxl-cmd,mode=control")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for deadline := time.Now().Add(60 * time.Second); ; {
		if _, err := os.Stat(path); err == nil {
			return path
		}
		if time.Now().After(deadline) {
			t.Fatalf("QEMU did not create its QMP socket: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// plain decodes a message without json.Number, so that numbers compare by
// value (QEMU prints 1e300 as 1e+300).
func plain(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return m
}

// TestSameAnswersAsQEMU sends the same requests, well-formed and hostile,
// to QEMU 7.2's QMP monitor and to this server, and compares every reply.
// Only JSON syntax errors are worded differently (both are GenericError
// "JSON parse error, ..."); that is the one difference allowed. (Measured
// with QEMU 7.2: it also accepts single-quoted strings and "\u0000" in
// strings, which godm refuses as parse errors.)
func TestSameAnswersAsQEMU(t *testing.T) {
	qemuPath := startQEMUMonitor(t)
	_, paths := newServer(t, Config{Commands: map[string]Handler{}}, "libxl-cmd")
	q := dial(t, qemuPath)
	g := dial(t, paths["libxl-cmd"])

	// The greeting: same shape, same version fields; QEMU offers "oob" on
	// a socket monitor, godm offers nothing.
	qg, gg := plain(t, q.line()), plain(t, g.line())
	for _, m := range []map[string]any{qg, gg} {
		v, _ := m["QMP"].(map[string]any)
		ver, _ := v["version"].(map[string]any)
		qemu, _ := ver["qemu"].(map[string]any)
		if _, ok := v["capabilities"].([]any); !ok || len(qemu) != 3 || ver["package"] == nil {
			t.Fatalf("greeting %v", m)
		}
	}
	if qv := qg["QMP"].(map[string]any)["version"].(map[string]any)["qemu"].(map[string]any); qv["major"] != 7.0 || qv["minor"] != 2.0 {
		t.Logf("QEMU here is %v, not 7.2: the comparison still holds for the protocol layer", qv)
	}

	reqs := []struct {
		in        string
		syntaxErr bool
	}{
		// Before negotiation.
		{`{"execute":"query-status","id":1}`, false},
		{`{"execute":"nope","id":"s"}`, false},
		{`{"execute":"qmp_capabilities","arguments":{"x":1},"id":2}`, false},
		{`[1,2]`, false},
		{`{"execute":"qmp_capabilities","id":3}`, false},
		// After.
		{`{"execute":"qmp_capabilities","id":4}`, false},
		{`{"execute":"nope","id":5}`, false},
		{`{}`, false},
		{`{"id":6}`, false},
		{`{"execute":"nope","arguments":[],"id":7}`, false},
		{`{"execute":"nope","bogus":1,"id":8}`, false},
		{`{"execute":3,"id":9}`, false},
		{`{"execute":"nope","arguments":{"a":1}}`, false},
		{`42`, false},
		{`"text"`, false},
		{`null`, false},
		// Ids of every JSON type come back as sent.
		{`{"execute":"nope","id":-1}`, false},
		{`{"execute":"nope","id":18446744073709551615}`, false},
		{`{"execute":"nope","id":1.5}`, false},
		{`{"execute":"nope","id":1e300}`, false},
		{`{"execute":"nope","id":"<&>\u00e9"}`, false},
		{`{"execute":"nope","id":null}`, false},
		{`{"execute":"nope","id":true}`, false},
		{`{"execute":"nope","id":[1,"a",{"b":null}]}`, false},
		{`{"execute":"nope","id":{"x":{"y":[]}}}`, false},
		// Malformed JSON: an error, and the stream goes on.
		{`{"execute": }`, true},
		{`{foo}`, true},
		{`]`, true},
		{`{"execute":"nope","execute":"x"}`, true},
		{`{"execute":"nope","id":10}`, false},
		// Not compared: QEMU's streamer waits for "{"a":[}" to balance and
		// swallows the requests that follow; godm answers it at once
		// (TestRequestErrors).
	}
	for _, r := range reqs {
		q.send(r.in + "\n")
		g.send(r.in + "\n")
		ql, gl := q.line(), g.line()
		qm, gm := plain(t, ql), plain(t, gl)
		if r.syntaxErr {
			for _, m := range []map[string]any{qm, gm} {
				e, _ := m["error"].(map[string]any)
				if e == nil || e["class"] != ClassGenericError || !strings.HasPrefix(e["desc"].(string), "JSON parse error") {
					t.Errorf("%s: reply %v, want a JSON parse error", r.in, m)
				}
			}
			continue
		}
		if !reflect.DeepEqual(qm, gm) {
			t.Errorf("%s:\n QEMU %s\n godm %s", r.in, ql, gl)
		}
	}
}

// TestQEMUSchemaHasLibxlCommands checks LibxlCommands, argument by
// argument, against QEMU 7.2's own schema (query-qmp-schema).
func TestQEMUSchemaHasLibxlCommands(t *testing.T) {
	schema := qemuSchema(t)
	for _, c := range LibxlCommands {
		if err := schema.CheckCommand(c); err != nil {
			t.Error(err)
		}
	}
}

func qemuSchema(t *testing.T) *Schema {
	t.Helper()
	path := startQEMUMonitor(t)
	q := dial(t, path)
	q.negotiate()
	q.send(`{"execute":"query-qmp-schema","id":1}`)
	raw := q.line()
	var reply struct {
		Return json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal([]byte(raw), &reply); err != nil || reply.Return == nil {
		t.Fatalf("query-qmp-schema: %v %.200s", err, raw)
	}
	s, err := ParseSchema(reply.Return)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
