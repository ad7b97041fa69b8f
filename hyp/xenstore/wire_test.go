package xenstore_test

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"

	"godm/hyp/xenstore"
	"golang.org/x/sys/unix"
)

func TestHeaderRoundTrip(t *testing.T) {
	h := xenstore.Header{Type: xenstore.MsgWrite, ReqID: 0x01020304, TxID: 7, Len: 4096}
	b := h.Append(nil)
	if got, want := len(b), xenstore.HeaderSize; got != want {
		t.Fatalf("len = %d, want %d", got, want)
	}
	got, err := xenstore.DecodeHeader(b)
	if err != nil || got != h {
		t.Errorf("DecodeHeader = %+v, %v; want %+v", got, err, h)
	}
}

func TestDecodeHeaderRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"short", make([]byte, xenstore.HeaderSize-1)},
		{"oversized", xenstore.Header{Len: xenstore.PayloadMax + 1}.Append(nil)},
		{"huge", xenstore.Header{Len: 0xffffffff}.Append(nil)},
	} {
		if _, err := xenstore.DecodeHeader(tc.b); !errors.Is(err, xenstore.ErrProtocol) {
			t.Errorf("%s: err = %v, want ErrProtocol", tc.name, err)
		}
	}
}

func TestAppendMsg(t *testing.T) {
	b, err := xenstore.AppendMsg(nil, xenstore.MsgWrite, 1, 2, []byte("/a\x00"), []byte("xy"))
	if err != nil {
		t.Fatal(err)
	}
	want := append(xenstore.Header{Type: xenstore.MsgWrite, ReqID: 1, TxID: 2, Len: 5}.Append(nil), "/a\x00xy"...)
	if !bytes.Equal(b, want) {
		t.Errorf("AppendMsg = %x, want %x", b, want)
	}
	if _, err := xenstore.AppendMsg(nil, xenstore.MsgWrite, 1, 0, make([]byte, xenstore.PayloadMax), []byte{1}); !errors.Is(err, unix.E2BIG) {
		t.Errorf("oversized payload: err = %v, want E2BIG", err)
	}
	if _, err := xenstore.AppendMsg(nil, xenstore.MsgWrite, 1, 0, make([]byte, xenstore.PayloadMax)); err != nil {
		t.Errorf("payload of exactly PayloadMax: %v", err)
	}
}

func TestReadMsg(t *testing.T) {
	full, _ := xenstore.AppendMsg(nil, xenstore.MsgRead, 9, 0, []byte("value"))
	for _, tc := range []struct {
		name    string
		in      []byte
		wantErr error
	}{
		{"whole", full, nil},
		{"empty stream", nil, io.EOF},
		{"truncated header", full[:7], xenstore.ErrProtocol},
		{"truncated payload", full[:len(full)-1], xenstore.ErrProtocol},
		{"oversized", xenstore.Header{Len: xenstore.PayloadMax + 1}.Append(nil), xenstore.ErrProtocol},
	} {
		h, p, err := xenstore.ReadMsg(bytes.NewReader(tc.in))
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("%s: err = %v, want %v", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || h.ReqID != 9 || string(p) != "value" {
			t.Errorf("%s: = %+v %q %v", tc.name, h, p, err)
		}
	}
}

func TestErrors(t *testing.T) {
	// xs_wire.h's table, in order.
	names := []string{"EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO",
		"ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM"}
	errnos := []unix.Errno{unix.EINVAL, unix.EACCES, unix.EEXIST, unix.EISDIR, unix.ENOENT, unix.ENOMEM,
		unix.ENOSPC, unix.EIO, unix.ENOTEMPTY, unix.ENOSYS, unix.EROFS, unix.EBUSY, unix.EAGAIN,
		unix.EISCONN, unix.E2BIG, unix.EPERM}
	for i, name := range names {
		if got, want := xenstore.ParseError([]byte(name+"\x00")), errnos[i]; got != want {
			t.Errorf("ParseError(%s) = %v, want %v", name, got, want)
		}
		if got, want := xenstore.ParseError([]byte(name)), errnos[i]; got != want {
			t.Errorf("ParseError(%s without nul) = %v, want %v", name, got, want)
		}
		if got, ok := xenstore.ErrorName(errnos[i]); !ok || got != name {
			t.Errorf("ErrorName(%v) = %q, %v; want %q", errnos[i], got, ok, name)
		}
	}
	for _, junk := range []string{"", "EWHAT", "enoent", "ENOENT\x00\x00", "\xff"} {
		if got := xenstore.ParseError([]byte(junk)); got != unix.EINVAL {
			t.Errorf("ParseError(%q) = %v, want EINVAL", junk, got)
		}
	}
	if _, ok := xenstore.ErrorName(unix.ENOTTY); ok {
		t.Error("ErrorName(ENOTTY) known")
	}
}

func TestPerms(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    xenstore.Perm
		wantErr bool
		str     string
	}{
		{in: "n0", want: xenstore.Perm{Dom: 0, Access: xenstore.AccessNone}, str: "n0"},
		{in: "r5", want: xenstore.Perm{Dom: 5, Access: xenstore.AccessRead}, str: "r5"},
		{in: "w7", want: xenstore.Perm{Dom: 7, Access: xenstore.AccessWrite}, str: "w7"},
		{in: "b0", want: xenstore.Perm{Dom: 0, Access: xenstore.AccessBoth}, str: "b0"},
		{in: "w", want: xenstore.Perm{Dom: 0, Access: xenstore.AccessWrite}, str: "w0"},
		{in: "b65535", want: xenstore.Perm{Dom: 65535, Access: xenstore.AccessBoth}, str: "b65535"},
		{in: "b65536", wantErr: true},
		{in: "r-1", wantErr: true},
		{in: "r1x", wantErr: true},
		{in: "x1", wantErr: true},
		{in: "", wantErr: true},
	} {
		got, err := xenstore.ParsePerm(tc.in)
		if tc.wantErr {
			if !errors.Is(err, unix.EINVAL) {
				t.Errorf("ParsePerm(%q) = %v, %v; want EINVAL", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParsePerm(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if s := got.String(); s != tc.str {
			t.Errorf("String() = %q, want %q", s, tc.str)
		}
	}
	perms := []xenstore.Perm{{Dom: 0}, {Dom: 7, Access: xenstore.AccessRead}, {Dom: 3, Access: xenstore.AccessBoth}}
	wire := xenstore.AppendPerms(nil, perms)
	if got, want := string(wire), "n0\x00r7\x00b3\x00"; got != want {
		t.Errorf("AppendPerms = %q, want %q", got, want)
	}
	back, err := xenstore.ParsePerms(wire)
	if err != nil || !slices.Equal(back, perms) {
		t.Errorf("ParsePerms = %v, %v", back, err)
	}
	for _, bad := range []string{"", "n0", "q1\x00", "n0\x00\x00"} {
		if _, err := xenstore.ParsePerms([]byte(bad)); !errors.Is(err, xenstore.ErrProtocol) {
			t.Errorf("ParsePerms(%q) err = %v, want ErrProtocol", bad, err)
		}
	}
}

func TestSplitStringsAndEvents(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "", want: nil},
		{in: "\x00", want: []string{""}},
		{in: "a\x00", want: []string{"a"}},
		{in: "a\x00bc\x00", want: []string{"a", "bc"}},
		{in: "a\x00\x00", want: []string{"a", ""}},
		{in: "a", wantErr: true},
		{in: "a\x00b", wantErr: true},
	} {
		got, err := xenstore.SplitStrings([]byte(tc.in))
		if tc.wantErr != (err != nil) || !slices.Equal(got, tc.want) {
			t.Errorf("SplitStrings(%q) = %q, %v; want %q (error %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
	ev := xenstore.Event{Path: "/a/b", Token: "tok"}
	got, err := xenstore.ParseEvent(xenstore.AppendEvent(nil, ev))
	if err != nil || got != ev {
		t.Errorf("event round trip = %v, %v", got, err)
	}
	if got, err := xenstore.ParseEvent([]byte("/a\x00t\x00extra\x00")); err != nil || got != (xenstore.Event{Path: "/a", Token: "t"}) {
		t.Errorf("event with extra string = %v, %v", got, err)
	}
	for _, bad := range []string{"", "/a\x00", "/a\x00t"} {
		if _, err := xenstore.ParseEvent([]byte(bad)); !errors.Is(err, xenstore.ErrProtocol) {
			t.Errorf("ParseEvent(%q) err = %v, want ErrProtocol", bad, err)
		}
	}
}

func TestMsgTypeString(t *testing.T) {
	for _, tc := range []struct {
		t    xenstore.MsgType
		want string
	}{
		{xenstore.MsgControl, "CONTROL"},
		{xenstore.MsgWatchEvent, "WATCH_EVENT"},
		{xenstore.MsgDirectoryPart, "DIRECTORY_PART"},
		{20, "MsgType(20)"},
		{xenstore.MsgInvalid, "MsgType(65535)"},
	} {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("%d.String() = %q, want %q", uint32(tc.t), got, tc.want)
		}
	}
}

func TestSocketPath(t *testing.T) {
	env := func(m map[string]string) func(string) string {
		return func(k string) string { return m[k] }
	}
	for _, tc := range []struct {
		name   string
		getenv func(string) string
		want   string
	}{
		{"nil environment", nil, "/var/run/xenstored/socket"},
		{"empty", env(nil), "/var/run/xenstored/socket"},
		{"rundir", env(map[string]string{"XENSTORED_RUNDIR": "/run/xs"}), "/run/xs/socket"},
		{"path wins", env(map[string]string{"XENSTORED_RUNDIR": "/run/xs", "XENSTORED_PATH": "/tmp/s"}), "/tmp/s"},
	} {
		if got := xenstore.SocketPath(tc.getenv); got != tc.want {
			t.Errorf("%s: SocketPath = %q, want %q", tc.name, got, tc.want)
		}
	}
}
