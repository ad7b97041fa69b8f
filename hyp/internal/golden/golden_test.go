package golden

import (
	"os"
	"path/filepath"
	"testing"
)

const sample = `{
  "name": "sample",
  "call": "xendevicemodel_create_ioreq_server(h, 7, 2, &id)",
  "result": "rc=0 id=1",
  "events": [
    {"kind": "ioctl", "dev": "privcmd", "req": 1069061, "req_name": "IOCTL_PRIVCMD_DM_OP",
     "arg": {"name": "privcmd_dm_op", "hex": "07000100 00000000 00000000 00000000", "len": 16,
             "ptrs": [{"off": 8, "buf": 0, "region": "user"}]},
     "buffers": [
       {"name": "privcmd_dm_op_buf[1]", "hex": "00000000 00000000 20000000 00000000", "len": 16,
        "ptrs": [{"off": 0, "buf": 1, "region": "user"}]},
       {"name": "dm_op_buf[0]", "hex": "01000000 00000000 02000000 00000000 00000000 00000000 00000000 00000000", "len": 32,
        "out": "01000000 00000000 02000000 01000000 00000000 00000000 00000000 00000000"}
     ]},
    {"kind": "write", "dev": "evtchn", "data": "05000000"}
  ]
}`

func writeFixture(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f.json")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadSample(t *testing.T) {
	f, err := LoadFile(writeFixture(t, sample))
	if err != nil {
		t.Fatal(err)
	}
	ev := f.Ioctl(t, 0x105005)
	// A Go encoding with a real pointer in ubufs compares equal after masking.
	got := []byte{7, 0, 1, 0, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4}
	if err := ev.Arg.Compare(got); err != nil {
		t.Errorf("Compare with masked pointer: %v", err)
	}
	got[0] = 8
	if err := ev.Arg.Compare(got); err == nil {
		t.Errorf("Compare of different dom: got nil error, want a difference")
	}
	bufs := ev.DMOpBuffers(t)
	if len(bufs) != 1 || bufs[0].Len != 32 {
		t.Fatalf("DMOpBuffers = %d buffers, want 1 of 32 bytes", len(bufs))
	}
	if got, want := bufs[0].OutBytes()[12], byte(1); got != want {
		t.Errorf("out id = %d, want %d", got, want)
	}
	if got, want := len(f.Find("write")), 1; got != want {
		t.Errorf("Find(write) = %d events, want %d", got, want)
	}
	if got, want := f.Find("write")[0].DataBytes()[0], byte(5); got != want {
		t.Errorf("write data[0] = %d, want %d", got, want)
	}
}

func TestLoadRejects(t *testing.T) {
	tests := []struct {
		name, body string
	}{
		{"bad hex", `{"name":"x","events":[{"kind":"ioctl","dev":"privcmd","arg":{"name":"a","hex":"zz","len":1}}]}`},
		{"len mismatch", `{"name":"x","events":[{"kind":"ioctl","dev":"privcmd","arg":{"name":"a","hex":"0000","len":3}}]}`},
		{"ptr outside", `{"name":"x","events":[{"kind":"ioctl","dev":"privcmd","arg":{"name":"a","hex":"0000","len":2,"ptrs":[{"off":0,"buf":-1,"region":"null"}]}}]}`},
		{"ptr to missing buffer", `{"name":"x","events":[{"kind":"ioctl","dev":"privcmd","arg":{"name":"a","hex":"0000000000000000","len":8,"ptrs":[{"off":0,"buf":3,"region":"user"}]}}]}`},
		{"unknown field", `{"name":"x","bogus":1,"events":[]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := LoadFile(writeFixture(t, tt.body)); err == nil {
				t.Errorf("LoadFile: got nil error, want rejection")
			}
		})
	}
}

func TestHexRoundTrip(t *testing.T) {
	tests := [][]byte{nil, {1}, {1, 2, 3, 4}, {1, 2, 3, 4, 5, 6}}
	for _, b := range tests {
		d, err := DecodeHex(EncodeHex(b))
		if err != nil || string(d) != string(b) {
			t.Errorf("round trip of %x = %x, %v", b, d, err)
		}
	}
}

// TestCommittedFixtures loads every committed fixture, so a malformed one
// fails here rather than in a consumer's test.
func TestCommittedFixtures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(Dir(), "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range files {
		f, err := LoadFile(p)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if want := filepath.Base(p); f.Name+".json" != want {
			t.Errorf("%s: name %q does not match the file", p, f.Name)
		}
	}
}

func TestMaskUndef(t *testing.T) {
	b := Buffer{Name: "b", Hex: "01000000 00000000", Len: 8, Undef: [][2]int{{1, 3}}}
	tests := []struct {
		name string
		got  []byte
		ok   bool
	}{
		{"same", []byte{1, 0, 0, 0, 0, 0, 0, 0}, true},
		{"garbage in undefined range", []byte{1, 0xaa, 0xbb, 0xcc, 0, 0, 0, 0}, true},
		{"defined byte differs", []byte{2, 0, 0, 0, 0, 0, 0, 0}, false},
		{"byte after range differs", []byte{1, 0, 0, 0, 9, 0, 0, 0}, false},
		{"short", []byte{1, 0, 0, 0}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := b.Compare(tt.got)
			if got := err == nil; got != tt.ok {
				t.Errorf("Compare(%x) ok = %v, want %v (err %v)", tt.got, got, tt.ok, err)
			}
		})
	}
}
