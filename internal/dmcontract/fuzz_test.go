package dmcontract

import (
	"bytes"
	"encoding/json"
	"sort"
	"testing"

	"godm/internal/qmp"
)

// FuzzCommands feeds hostile argument objects to every command of the
// table (the QMP server hands them over as decoded JSON objects, numbers
// as json.Number): each must answer or fail with a *qmp.Error, never
// panic, and vCPU slots must stay within bounds.
func FuzzCommands(f *testing.F) {
	for _, s := range []string{
		`{"id":"cpu-1","driver":"qemu64-x86_64-cpu","socket-id":1,"core-id":0,"thread-id":0}`,
		`{"driver":"qemu64-x86_64-cpu","socket-id":"99999999999999999999","core-id":-1}`,
		`{"fdset-id":-9223372036854775808,"fd":9223372036854775807}`,
		`{"fdname":"0x"}`, `{"command-line":"info cpus"}`, `{"option":"run-with"}`, `{"enable":true}`,
		`{"id":"x","driver":"max-x86_64-cpu","socket-id":1e400}`,
	} {
		f.Add(uint8(0), []byte(s))
	}
	f.Fuzz(func(t *testing.T, which uint8, raw []byte) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var args map[string]any
		if dec.Decode(&args) != nil || args == nil {
			return
		}
		st := NewState(StateConfig{Host: &fakeHost{}, VCPUs: 1, MaxVCPUs: 4})
		cmds := st.Commands()
		names := make([]string, 0, len(cmds))
		for n := range cmds {
			if n != "quit" {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		for i := range 3 { // the chosen command, and two more after it
			n := names[(int(which)+i)%len(names)]
			_, err := cmds[n](&qmp.Request{Command: n, Args: args})
			if err != nil {
				if _, ok := err.(*qmp.Error); !ok {
					t.Fatalf("%s %s: %T %v, want a *qmp.Error", n, raw, err, err)
				}
			}
		}
		for _, c := range st.cpusFast() {
			if idx := c["cpu-index"].(int); idx < 0 || idx >= 4 {
				t.Fatalf("vCPU %d outside the 4 slots", idx)
			}
		}
	})
}
