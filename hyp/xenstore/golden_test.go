package xenstore

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fixture mirrors the JSON written by tools/xencapture/xenstore/capture.
type fixture struct {
	Seq      int    `json:"seq"`
	Name     string `json:"name"`
	Call     string `json:"call"`
	Result   string `json:"result"`
	Messages []struct {
		Dir string `json:"dir"`
		Hex string `json:"hex"`
	} `json:"messages"`
}

func loadFixtures(t *testing.T) map[string]*fixture {
	t.Helper()
	files, err := filepath.Glob("testdata/golden/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden fixtures (%v); run tools/xencapture/xenstore/regen.sh", err)
	}
	out := make(map[string]*fixture)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var fx fixture
		if err := json.Unmarshal(b, &fx); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[fx.Name] = &fx
	}
	return out
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// replayServer answers a Client's requests with a fixture's recorded
// replies and records what the Client sent. Replies to a request get the
// request's req_id (libxenstore always sends 0, the Client does not).
func replayServer(t *testing.T, fx *fixture) (*Client, func() [][]byte) {
	t.Helper()
	cli, srv := net.Pipe()
	c := New(cli)
	var got [][]byte
	done := make(chan struct{})
	go func() {
		defer close(done)
		msgs := fx.Messages
		for {
			h, payload, err := ReadMsg(srv)
			if err != nil {
				return
			}
			got = append(got, append(h.Append(nil), payload...))
			// Skip the recorded request, then send its replies.
			for len(msgs) > 0 && msgs[0].Dir == "request" {
				msgs = msgs[1:]
				break
			}
			for len(msgs) > 0 && msgs[0].Dir == "reply" {
				raw, _ := hex.DecodeString(msgs[0].Hex)
				rh, _ := DecodeHeader(raw)
				if rh.Type != MsgWatchEvent {
					rh.ReqID = h.ReqID
				}
				out := append(rh.Append(nil), raw[HeaderSize:]...)
				if _, err := srv.Write(out); err != nil {
					return
				}
				msgs = msgs[1:]
			}
		}
	}()
	t.Cleanup(func() { c.Close(); srv.Close(); <-done })
	return c, func() [][]byte {
		c.Close()
		srv.Close()
		<-done
		return got
	}
}

const dm = "/local/domain/0/device-model/7"

// The driver's big directory: bigChildren names of 198 'a's and two
// digits, too many for one XS_DIRECTORY reply.
const bigChildren = 24

func bigName(i int) string { return strings.Repeat("a", 198) + fmt.Sprintf("%02d", i) }

func nextEvent(t *testing.T, w *Watch) Event {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		if !ok {
			t.Fatal("event channel closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event within 10s")
	}
	return Event{}
}

func wantErrno(want unix.Errno) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Errorf("err = %v, want %v", err, want)
		}
	}
}

// TestGoldenEncoding makes the same calls as the C driver through the
// Client and checks that every request is byte for byte what libxenstore
// sent (req_id masked: libxenstore sends 0, the Client numbers requests),
// and that the Client makes the same sense of the recorded replies.
func TestGoldenEncoding(t *testing.T) {
	fixtures := loadFixtures(t)
	readIs := func(want string) func(context.Context, *testing.T, *Client) {
		return func(ctx context.Context, t *testing.T, c *Client) {
			t.Helper()
			v, err := c.Read(ctx, dm+"/state")
			if err != nil || string(v) != want {
				t.Errorf("Read = %q, %v; want %q", v, err, want)
			}
		}
	}
	noErr := func(err error, t *testing.T) {
		t.Helper()
		if err != nil {
			t.Errorf("err = %v", err)
		}
	}
	tx := func(c *Client, id uint32) *Tx { return &Tx{c: c, id: id} }
	calls := map[string]func(ctx context.Context, t *testing.T, c *Client){
		"read_missing": func(ctx context.Context, t *testing.T, c *Client) {
			_, err := c.Read(ctx, dm+"/state")
			wantErrno(unix.ENOENT)(t, err)
		},
		"write": func(ctx context.Context, t *testing.T, c *Client) {
			noErr(c.Write(ctx, dm+"/state", []byte("running")), t)
		},
		"read": readIs("running"),
		"read_relative": func(ctx context.Context, t *testing.T, c *Client) {
			v, err := c.Read(ctx, "device-model/7/state")
			if err != nil || string(v) != "running" {
				t.Errorf("Read = %q, %v", v, err)
			}
		},
		"write_binary": func(ctx context.Context, t *testing.T, c *Client) {
			noErr(c.Write(ctx, dm+"/blob", []byte("a\x00b")), t)
		},
		"read_binary": func(ctx context.Context, t *testing.T, c *Client) {
			v, err := c.Read(ctx, dm+"/blob")
			if err != nil || string(v) != "a\x00b" {
				t.Errorf("Read = %q, %v", v, err)
			}
		},
		"write_empty": func(ctx context.Context, t *testing.T, c *Client) {
			noErr(c.Write(ctx, dm+"/empty", nil), t)
		},
		"mkdir": func(ctx context.Context, t *testing.T, c *Client) {
			noErr(c.Mkdir(ctx, dm+"/backends/qdisk"), t)
		},
		"mkdir_existing": func(ctx context.Context, t *testing.T, c *Client) {
			noErr(c.Mkdir(ctx, dm+"/backends"), t)
		},
		"directory": func(ctx context.Context, t *testing.T, c *Client) {
			got, err := c.Directory(ctx, dm)
			if want := []string{"backends", "blob", "empty", "state"}; err != nil || !slices.Equal(got, want) {
				t.Errorf("Directory = %q, %v; want %q", got, err, want)
			}
		},
		"directory_empty": func(ctx context.Context, t *testing.T, c *Client) {
			got, err := c.Directory(ctx, dm+"/backends/qdisk")
			if err != nil || len(got) != 0 {
				t.Errorf("Directory = %q, %v; want none", got, err)
			}
		},
		"directory_missing": func(ctx context.Context, t *testing.T, c *Client) {
			_, err := c.Directory(ctx, "/nonexistent")
			wantErrno(unix.ENOENT)(t, err)
		},
		"make_big_directory": func(ctx context.Context, t *testing.T, c *Client) {
			for i := 0; i < bigChildren; i++ {
				noErr(c.Mkdir(ctx, "/local/domain/0/big/"+bigName(i)), t)
			}
		},
		"directory_part": func(ctx context.Context, t *testing.T, c *Client) {
			got, err := c.Directory(ctx, "/local/domain/0/big")
			var want []string
			for i := 0; i < bigChildren; i++ {
				want = append(want, bigName(i))
			}
			if err != nil || !slices.Equal(got, want) {
				t.Errorf("Directory = %d names, %v; want %d", len(got), err, len(want))
			}
		},
		"get_perms": func(ctx context.Context, t *testing.T, c *Client) {
			got, err := c.GetPerms(ctx, dm+"/state")
			if want := []Perm{{0, AccessNone}}; err != nil || !slices.Equal(got, want) {
				t.Errorf("GetPerms = %v, %v; want %v", got, err, want)
			}
		},
		"set_perms": func(ctx context.Context, t *testing.T, c *Client) {
			noErr(c.SetPerms(ctx, dm+"/state", []Perm{{0, AccessNone}, {7, AccessRead}, {3, AccessBoth}, {5, AccessWrite}}), t)
		},
		"get_perms_acl": func(ctx context.Context, t *testing.T, c *Client) {
			got, err := c.GetPerms(ctx, dm+"/state")
			if want := []Perm{{0, AccessNone}, {7, AccessRead}, {3, AccessBoth}, {5, AccessWrite}}; err != nil || !slices.Equal(got, want) {
				t.Errorf("GetPerms = %v, %v; want %v", got, err, want)
			}
		},
		"watch": func(ctx context.Context, t *testing.T, c *Client) {
			w, err := c.Watch(ctx, dm, "dmtoken")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := nextEvent(t, w), (Event{dm, "dmtoken"}); got != want {
				t.Errorf("initial event = %v, want %v", got, want)
			}
		},
		"watch_fire": func(ctx context.Context, t *testing.T, c *Client) {
			w, err := c.newWatch(dm, "dmtoken")
			if err != nil {
				t.Fatal(err)
			}
			noErr(c.Write(ctx, dm+"/state", []byte("paused")), t)
			if got, want := nextEvent(t, w), (Event{dm + "/state", "dmtoken"}); got != want {
				t.Errorf("event = %v, want %v", got, want)
			}
		},
		"unwatch": func(ctx context.Context, t *testing.T, c *Client) {
			w, err := c.newWatch(dm, "dmtoken")
			if err != nil {
				t.Fatal(err)
			}
			noErr(w.Unwatch(ctx), t)
			if _, ok := <-w.Events(); ok {
				t.Error("event channel open after Unwatch")
			}
		},
		"unwatch_missing": func(ctx context.Context, t *testing.T, c *Client) {
			w, err := c.newWatch(dm, "dmtoken")
			if err != nil {
				t.Fatal(err)
			}
			wantErrno(unix.ENOENT)(t, w.Unwatch(ctx))
		},
		"watch_special": func(ctx context.Context, t *testing.T, c *Client) {
			w, err := c.Watch(ctx, "@releaseDomain", "rel")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := nextEvent(t, w), (Event{"@releaseDomain", "rel"}); got != want {
				t.Errorf("initial event = %v, want %v", got, want)
			}
		},
		"unwatch_special": func(ctx context.Context, t *testing.T, c *Client) {
			w, err := c.newWatch("@releaseDomain", "rel")
			if err != nil {
				t.Fatal(err)
			}
			noErr(w.Unwatch(ctx), t)
		},
		"transaction_start": func(ctx context.Context, t *testing.T, c *Client) {
			tx, err := c.Start(ctx)
			if err != nil || tx.ID() != 1 {
				t.Errorf("Start = %v, %v; want id 1", tx, err)
			}
		},
		"tx_write": func(ctx context.Context, t *testing.T, c *Client) {
			noErr(tx(c, 1).Write(ctx, dm+"/tx", []byte("1")), t)
		},
		"tx_read": func(ctx context.Context, t *testing.T, c *Client) {
			v, err := tx(c, 1).Read(ctx, dm+"/tx")
			if err != nil || string(v) != "1" {
				t.Errorf("Read = %q, %v", v, err)
			}
		},
		"transaction_end": func(ctx context.Context, t *testing.T, c *Client) {
			noErr(tx(c, 1).End(ctx, true), t)
		},
		"transaction_start_abort": func(ctx context.Context, t *testing.T, c *Client) {
			tx, err := c.Start(ctx)
			if err != nil || tx.ID() != 2 {
				t.Errorf("Start = %v, %v; want id 2", tx, err)
			}
		},
		"transaction_abort": func(ctx context.Context, t *testing.T, c *Client) {
			noErr(tx(c, 2).End(ctx, false), t)
		},
		"transaction_end_missing": func(ctx context.Context, t *testing.T, c *Client) {
			wantErrno(unix.ENOENT)(t, tx(c, 2).End(ctx, true))
		},
		"conflict_start": func(ctx context.Context, t *testing.T, c *Client) {
			tx, err := c.Start(ctx)
			if err != nil || tx.ID() != 3 {
				t.Errorf("Start = %v, %v; want id 3", tx, err)
			}
		},
		"conflict_tx_read": func(ctx context.Context, t *testing.T, c *Client) {
			v, err := tx(c, 3).Read(ctx, dm+"/state")
			if err != nil || string(v) != "paused" {
				t.Errorf("Read = %q, %v", v, err)
			}
		},
		"conflict_write": func(ctx context.Context, t *testing.T, c *Client) {
			noErr(c.Write(ctx, dm+"/state", []byte("running")), t)
		},
		"conflict_tx_write": func(ctx context.Context, t *testing.T, c *Client) {
			noErr(tx(c, 3).Write(ctx, dm+"/state", []byte("stale")), t)
		},
		"conflict_end": func(ctx context.Context, t *testing.T, c *Client) {
			wantErrno(unix.EAGAIN)(t, tx(c, 3).End(ctx, true))
		},
		"read_after_conflict": readIs("running"),
		"get_domain_path": func(ctx context.Context, t *testing.T, c *Client) {
			p, err := c.GetDomainPath(ctx, 7)
			if err != nil || p != "/local/domain/7" {
				t.Errorf("GetDomainPath = %q, %v", p, err)
			}
		},
		"is_domain_introduced": func(ctx context.Context, t *testing.T, c *Client) {
			ok, err := c.IsDomainIntroduced(ctx, 0)
			if err != nil || !ok {
				t.Errorf("IsDomainIntroduced = %v, %v", ok, err)
			}
		},
		"write_invalid": func(ctx context.Context, t *testing.T, c *Client) {
			wantErrno(unix.EINVAL)(t, c.Write(ctx, "/bad path", []byte("x")))
		},
		"rm": func(ctx context.Context, t *testing.T, c *Client) {
			noErr(c.Rm(ctx, dm), t)
		},
		"rm_missing": func(ctx context.Context, t *testing.T, c *Client) {
			noErr(c.Rm(ctx, dm), t)
		},
		"rm_missing_parent": func(ctx context.Context, t *testing.T, c *Client) {
			wantErrno(unix.ENOENT)(t, c.Rm(ctx, "/nonexistent/child"))
		},
		"read_removed": func(ctx context.Context, t *testing.T, c *Client) {
			_, err := c.Read(ctx, dm+"/state")
			wantErrno(unix.ENOENT)(t, err)
		},
	}
	for name := range fixtures {
		if calls[name] == nil {
			t.Errorf("fixture %s has no Go call in this test", name)
		}
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			fx := fixtures[name]
			if fx == nil {
				t.Fatalf("no fixture %s.json; run tools/xencapture/xenstore/regen.sh", name)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, finish := replayServer(t, fx)
			call(ctx, t, c)
			got := finish()
			var want [][]byte
			for _, m := range fx.Messages {
				if m.Dir == "request" {
					want = append(want, mustHex(t, m.Hex))
				}
			}
			if len(got) != len(want) {
				t.Fatalf("%s: client sent %d requests, libxenstore %d", fx.Call, len(got), len(want))
			}
			for i := range got {
				g := slices.Clone(got[i])
				copy(g[4:8], []byte{0, 0, 0, 0}) // mask req_id
				if !bytes.Equal(g, want[i]) {
					t.Errorf("%s: request %d\n got  %x\n want %x", fx.Call, i, g, want[i])
				}
			}
		})
	}
}

// TestGoldenFixturesWellFormed checks that every recorded message decodes
// (guards the fixture files themselves).
func TestGoldenFixturesWellFormed(t *testing.T) {
	for name, fx := range loadFixtures(t) {
		for i, m := range fx.Messages {
			raw := mustHex(t, m.Hex)
			h, err := DecodeHeader(raw)
			if err != nil {
				t.Errorf("%s[%d]: %v", name, i, err)
				continue
			}
			if got, want := int(h.Len), len(raw)-HeaderSize; got != want {
				t.Errorf("%s[%d]: len %d, payload %d", name, i, got, want)
			}
			if !strings.Contains("request reply", m.Dir) {
				t.Errorf("%s[%d]: dir %q", name, i, m.Dir)
			}
		}
	}
}
