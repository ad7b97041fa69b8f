package xenstored_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"godm/hyp"
	"godm/hyp/xensim/xenstored"
	"godm/hyp/xenstore"
	"golang.org/x/sys/unix"
)

const timeout = 10 * time.Second

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

func newServer(t *testing.T) *xenstored.Server {
	t.Helper()
	s := xenstored.New(xenstored.Config{})
	t.Cleanup(func() { s.Close() })
	return s
}

// client connects a xenstore.Client to s as domain dom.
func client(t *testing.T, s *xenstored.Server, dom hyp.DomID) *xenstore.Client {
	t.Helper()
	conn, err := s.Pipe(dom)
	if err != nil {
		t.Fatal(err)
	}
	c := xenstore.New(conn)
	t.Cleanup(func() { c.Close() })
	return c
}

func nextEvent(t *testing.T, w *xenstore.Watch) xenstore.Event {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		if !ok {
			t.Fatal("event channel closed")
		}
		return ev
	case <-time.After(timeout):
		t.Fatal("no watch event")
	}
	return xenstore.Event{}
}

// noEvent checks that w has no event before the one sentinel causes:
// events reach a watch in order, so if the next event is the sentinel's,
// nothing came before it.
func noEvent(t *testing.T, w *xenstore.Watch, sentinel func() error, want xenstore.Event) {
	t.Helper()
	if err := sentinel(); err != nil {
		t.Fatal(err)
	}
	if got := nextEvent(t, w); got != want {
		t.Errorf("event = %v, want only the sentinel %v", got, want)
	}
}

func TestListenDial(t *testing.T) {
	s := newServer(t)
	sock := filepath.Join(t.TempDir(), "socket")
	if err := s.Listen(sock); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	c, err := xenstore.Open(ctx, xenstore.Config{Getenv: func(k string) string {
		if k == xenstore.EnvPath {
			return sock
		}
		return ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Write(ctx, "/local/domain/0/device-model/3/state", []byte("running")); err != nil {
		t.Fatal(err)
	}
	got, err := s.Read("/local/domain/0/device-model/3/state")
	if err != nil || string(got) != "running" {
		t.Fatalf("server Read = %q, %v", got, err)
	}
}

func TestInitialTree(t *testing.T) {
	s := newServer(t)
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/", []string{"local", "tool"}},
		{"/local", []string{"domain"}},
		{"/local/domain", []string{"0"}},
		{"/local/domain/0", nil},
	} {
		got, err := s.Directory(tc.path)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("Directory(%s) = %q, %v; want %q", tc.path, got, err, tc.want)
		}
	}
}

func TestBasicOps(t *testing.T) {
	s := newServer(t)
	c := client(t, s, 0)
	ctx := testCtx(t)
	type step struct {
		name string
		do   func() error
		want unix.Errno // 0: success
	}
	for _, st := range []step{
		{"write creates parents", func() error { return c.Write(ctx, "/a/b/c", []byte("v")) }, 0},
		{"parent has empty value", func() error {
			v, err := c.Read(ctx, "/a/b")
			if err == nil && len(v) != 0 {
				return fmt.Errorf("value %q", v)
			}
			return err
		}, 0},
		{"read missing", func() error { _, err := c.Read(ctx, "/a/x"); return err }, unix.ENOENT},
		{"mkdir", func() error { return c.Mkdir(ctx, "/a/d") }, 0},
		{"mkdir existing keeps value", func() error {
			if err := c.Mkdir(ctx, "/a/b/c"); err != nil {
				return err
			}
			v, err := c.Read(ctx, "/a/b/c")
			if err == nil && string(v) != "v" {
				return fmt.Errorf("value %q", v)
			}
			return err
		}, 0},
		{"directory sorted", func() error {
			got, err := c.Directory(ctx, "/a")
			if err == nil && !slices.Equal(got, []string{"b", "d"}) {
				return fmt.Errorf("got %q", got)
			}
			return err
		}, 0},
		{"rm subtree", func() error { return c.Rm(ctx, "/a/b") }, 0},
		{"rm removed child", func() error { _, err := c.Read(ctx, "/a/b/c"); return err }, unix.ENOENT},
		{"rm missing with parent", func() error { return c.Rm(ctx, "/a/zz") }, 0},
		{"rm missing parent", func() error { return c.Rm(ctx, "/q/zz") }, unix.ENOENT},
		{"rm root", func() error { return c.Rm(ctx, "/") }, unix.EINVAL},
		{"bad char", func() error { return c.Write(ctx, "/a/b c", nil) }, unix.EINVAL},
		{"trailing slash", func() error { return c.Write(ctx, "/a/", nil) }, unix.EINVAL},
		{"double slash", func() error { return c.Write(ctx, "/a//b", nil) }, unix.EINVAL},
		{"relative is under home", func() error {
			if err := c.Write(ctx, "rel/x", []byte("1")); err != nil {
				return err
			}
			_, err := s.Read("/local/domain/0/rel/x")
			return err
		}, 0},
		{"too long", func() error {
			p := "/" + string(slices.Repeat([]byte("x"), xenstore.AbsPathMax))
			return c.Write(ctx, p, nil)
		}, unix.EINVAL},
		{"value with nuls", func() error {
			if err := c.Write(ctx, "/a/bin", []byte{0, 1, 0}); err != nil {
				return err
			}
			v, err := c.Read(ctx, "/a/bin")
			if err == nil && string(v) != "\x00\x01\x00" {
				return fmt.Errorf("value %q", v)
			}
			return err
		}, 0},
		{"payload too big", func() error {
			return c.Write(ctx, "/a/big", make([]byte, xenstore.PayloadMax))
		}, unix.E2BIG},
		{"domain path", func() error {
			p, err := c.GetDomainPath(ctx, 12)
			if err == nil && p != "/local/domain/12" {
				return fmt.Errorf("got %q", p)
			}
			return err
		}, 0},
	} {
		err := st.do()
		if st.want == 0 && err != nil || st.want != 0 && !errors.Is(err, st.want) {
			t.Errorf("%s: err = %v, want %v", st.name, err, st.want)
		}
	}
}

func TestPermissions(t *testing.T) {
	s := newServer(t)
	ctx := testCtx(t)
	dom0 := client(t, s, 0)
	d5 := client(t, s, 5)
	d6 := client(t, s, 6)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// The toolstack makes dom5's home, owned by dom5, readable by dom6.
	must(dom0.Mkdir(ctx, "/local/domain/5"))
	must(dom0.SetPerms(ctx, "/local/domain/5", []xenstore.Perm{{Dom: 5, Access: xenstore.AccessNone}, {Dom: 6, Access: xenstore.AccessRead}}))
	must(dom0.Write(ctx, "/local/domain/0/secret", []byte("x")))

	for _, tc := range []struct {
		name string
		do   func() error
		want unix.Errno
	}{
		{"guest writes own home (relative)", func() error { return d5.Write(ctx, "data/x", []byte("1")) }, 0},
		{"guest cannot read dom0 node", func() error { _, err := d5.Read(ctx, "/local/domain/0/secret"); return err }, unix.EACCES},
		{"missing under unreadable parent is EACCES", func() error { _, err := d5.Read(ctx, "/local/domain/0/nothing"); return err }, unix.EACCES},
		{"guest cannot write dom0 area", func() error { return d5.Write(ctx, "/local/domain/0/x", nil) }, unix.EACCES},
		{"ACL reader reads", func() error {
			v, err := d6.Read(ctx, "/local/domain/5/data/x")
			if err == nil && string(v) != "1" {
				return fmt.Errorf("got %q", v)
			}
			return err
		}, 0},
		{"ACL reader cannot write", func() error { return d6.Write(ctx, "/local/domain/5/data/x", nil) }, unix.EACCES},
		{"created node owned by creator", func() error {
			p, err := dom0.GetPerms(ctx, "/local/domain/5/data/x")
			if err == nil && !slices.Equal(p, []xenstore.Perm{{Dom: 5}, {Dom: 6, Access: xenstore.AccessRead}}) {
				return fmt.Errorf("perms %v", p)
			}
			return err
		}, 0},
		{"owner may set perms", func() error {
			return d5.SetPerms(ctx, "data/x", []xenstore.Perm{{Dom: 5, Access: xenstore.AccessRead}})
		}, 0},
		{"owner may not give node away", func() error {
			return d5.SetPerms(ctx, "data/x", []xenstore.Perm{{Dom: 6}})
		}, unix.EPERM},
		{"default access applies to others", func() error {
			_, err := d6.Read(ctx, "/local/domain/5/data/x")
			return err
		}, 0},
		{"non-owner may not set perms", func() error {
			return d6.SetPerms(ctx, "/local/domain/5/data/x", []xenstore.Perm{{Dom: 6}})
		}, unix.EACCES},
		{"guest may not rm other home", func() error { return d6.Rm(ctx, "/local/domain/5/data") }, unix.EACCES},
		{"guest may not introduce", func() error {
			_, err := d5.IsDomainIntroduced(ctx, 5)
			return err
		}, 0},
		{"bad perm string", func() error {
			return dom0.SetPerms(ctx, "/local/domain/5", []xenstore.Perm{{Dom: 1, Access: 7}})
		}, unix.EINVAL},
	} {
		err := tc.do()
		if tc.want == 0 && err != nil || tc.want != 0 && !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestWatches(t *testing.T) {
	s := newServer(t)
	ctx := testCtx(t)
	c := client(t, s, 0)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Mkdir(ctx, "/w/a/b"))
	wa, err := c.Watch(ctx, "/w/a", "ta")
	must(err)
	if got, want := nextEvent(t, wa), (xenstore.Event{Path: "/w/a", Token: "ta"}); got != want {
		t.Fatalf("initial = %v, want %v", got, want)
	}
	wb, err := c.Watch(ctx, "/w/a/b", "tb")
	must(err)
	nextEvent(t, wb)
	wrel, err := c.Watch(ctx, "w2", "trel")
	must(err)
	if got, want := nextEvent(t, wrel), (xenstore.Event{Path: "w2", Token: "trel"}); got != want {
		t.Fatalf("relative initial = %v, want %v", got, want)
	}

	// A change below fires the watches on the node's ancestors.
	must(c.Write(ctx, "/w/a/b/c", []byte("1")))
	if got, want := nextEvent(t, wa), (xenstore.Event{Path: "/w/a/b/c", Token: "ta"}); got != want {
		t.Errorf("wa = %v, want %v", got, want)
	}
	if got, want := nextEvent(t, wb), (xenstore.Event{Path: "/w/a/b/c", Token: "tb"}); got != want {
		t.Errorf("wb = %v, want %v", got, want)
	}
	// A sibling does not fire wb.
	must(c.Write(ctx, "/w/a/x", nil))
	nextEvent(t, wa)
	noEvent(t, wb, func() error { return c.Write(ctx, "/w/a/b/s", nil) }, xenstore.Event{Path: "/w/a/b/s", Token: "tb"})
	nextEvent(t, wa)
	// Relative watches get relative paths.
	must(c.Write(ctx, "/local/domain/0/w2/k", nil))
	if got, want := nextEvent(t, wrel), (xenstore.Event{Path: "w2/k", Token: "trel"}); got != want {
		t.Errorf("wrel = %v, want %v", got, want)
	}
	// Removing /w/a fires wa for the node and wb for the removed b.
	must(c.Rm(ctx, "/w/a"))
	if got, want := nextEvent(t, wb), (xenstore.Event{Path: "/w/a/b", Token: "tb"}); got != want {
		t.Errorf("wb on rm = %v, want %v", got, want)
	}
	if got, want := nextEvent(t, wa), (xenstore.Event{Path: "/w/a", Token: "ta"}); got != want {
		t.Errorf("wa on rm = %v, want %v", got, want)
	}
	// Duplicate registration in the daemon is EEXIST (different client
	// token maps, same daemon watch).
	c2 := client(t, s, 0)
	_, err = c2.Watch(ctx, "/w", "dup")
	must(err)
	if _, err := c2.Watch(ctx, "/w", "dup"); !errors.Is(err, unix.EEXIST) {
		t.Errorf("duplicate token: %v, want EEXIST", err)
	}
	// Unwatch closes the channel and stops events.
	must(wb.Unwatch(ctx))
	if _, ok := <-wb.Events(); ok {
		t.Error("channel open after Unwatch")
	}
}

func TestWatchPermissions(t *testing.T) {
	s := newServer(t)
	ctx := testCtx(t)
	d5 := client(t, s, 5)
	if err := s.Mkdir("/local/domain/5"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPerms("/local/domain/5", []xenstore.Perm{{Dom: 5}}); err != nil {
		t.Fatal(err)
	}
	w, err := d5.Watch(ctx, "/", "root")
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, w) // the initial event ignores permissions
	if err := s.Write("/local/domain/0/private", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.Write("/local/domain/5/mine", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if got, want := nextEvent(t, w), (xenstore.Event{Path: "/local/domain/5/mine", Token: "root"}); got != want {
		t.Errorf("event = %v, want %v (dom0's private write must not be seen)", got, want)
	}
}

func TestSpecialWatches(t *testing.T) {
	s := newServer(t)
	ctx := testCtx(t)
	c := client(t, s, 0)
	wi, err := c.Watch(ctx, "@introduceDomain", "i")
	if err != nil {
		t.Fatal(err)
	}
	wr, err := c.Watch(ctx, "@releaseDomain", "r")
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, wi)
	nextEvent(t, wr)
	if err := s.IntroduceDomain(9); err != nil {
		t.Fatal(err)
	}
	if got, want := nextEvent(t, wi), (xenstore.Event{Path: "@introduceDomain", Token: "i"}); got != want {
		t.Errorf("introduce = %v, want %v", got, want)
	}
	if ok, err := c.IsDomainIntroduced(ctx, 9); err != nil || !ok {
		t.Errorf("IsDomainIntroduced(9) = %v, %v", ok, err)
	}
	if err := s.ReleaseDomain(9); err != nil {
		t.Fatal(err)
	}
	if got, want := nextEvent(t, wr), (xenstore.Event{Path: "@releaseDomain", Token: "r"}); got != want {
		t.Errorf("release = %v, want %v", got, want)
	}
	if ok, err := c.IsDomainIntroduced(ctx, 9); err != nil || ok {
		t.Errorf("IsDomainIntroduced(9) after release = %v, %v", ok, err)
	}
	if err := s.ReleaseDomain(9); !errors.Is(err, unix.ENOENT) {
		t.Errorf("double release: %v, want ENOENT", err)
	}
	// Writes do not fire special watches.
	if err := c.Write(ctx, "/x", nil); err != nil {
		t.Fatal(err)
	}
	noEvent(t, wi, func() error { return s.IntroduceDomain(10) }, xenstore.Event{Path: "@introduceDomain", Token: "i"})
}

func TestTransactions(t *testing.T) {
	s := newServer(t)
	ctx := testCtx(t)
	c := client(t, s, 0)
	other := client(t, s, 0)
	if err := c.Write(ctx, "/t/x", []byte("0")); err != nil {
		t.Fatal(err)
	}
	w, err := other.Watch(ctx, "/t", "t")
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, w)

	// Isolation: the transaction's writes are invisible until commit, and
	// its watch events fire at commit.
	tx, err := c.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Write(ctx, "/t/y", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Read(ctx, "/t/y"); !errors.Is(err, unix.ENOENT) {
		t.Errorf("uncommitted write visible: %v", err)
	}
	noEvent(t, w, func() error { return other.Write(ctx, "/t/x", []byte("0")) }, xenstore.Event{Path: "/t/x", Token: "t"})
	if v, err := tx.Read(ctx, "/t/y"); err != nil || string(v) != "1" {
		t.Errorf("tx read own write = %q, %v", v, err)
	}
	if err := tx.End(ctx, true); err != nil {
		t.Fatal(err)
	}
	if got, want := nextEvent(t, w), (xenstore.Event{Path: "/t/y", Token: "t"}); got != want {
		t.Errorf("commit event = %v, want %v", got, want)
	}
	if v, err := other.Read(ctx, "/t/y"); err != nil || string(v) != "1" {
		t.Errorf("committed = %q, %v", v, err)
	}

	// Snapshot: a transaction does not see later outside writes.
	tx, err = c.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Write(ctx, "/t/z", []byte("2")); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, w)
	if _, err := tx.Read(ctx, "/t/z"); !errors.Is(err, unix.ENOENT) {
		t.Errorf("snapshot sees later write: %v", err)
	}
	// It read /t/z (absent) and /t/z changed: conflict.
	if err := tx.End(ctx, true); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("commit after conflicting write: %v, want EAGAIN", err)
	}
	// The failed transaction is gone.
	if err := tx.End(ctx, false); !errors.Is(err, unix.ENOENT) {
		t.Errorf("end of ended transaction: %v, want ENOENT", err)
	}

	// Untouched nodes changing do not conflict.
	tx, err = c.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Write(ctx, "/t/x", []byte("3")); err != nil {
		t.Fatal(err)
	}
	if err := other.Write(ctx, "/elsewhere", nil); err != nil {
		t.Fatal(err)
	}
	if err := tx.End(ctx, true); err != nil {
		t.Errorf("commit with unrelated outside change: %v", err)
	}

	// Abort discards.
	tx, err = c.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rm(ctx, "/t"); err != nil {
		t.Fatal(err)
	}
	if err := tx.End(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(ctx, "/t/x"); err != nil {
		t.Errorf("aborted rm took effect: %v", err)
	}
}

func TestTransactRetries(t *testing.T) {
	s := newServer(t)
	ctx := testCtx(t)
	const workers, incs = 4, 25
	if err := s.Write("/counter", []byte("0")); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		c := client(t, s, 0)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < incs; j++ {
				err := c.Transact(ctx, func(tx *xenstore.Tx) error {
					v, err := tx.Read(ctx, "/counter")
					if err != nil {
						return err
					}
					var n int
					fmt.Sscan(string(v), &n)
					return tx.Write(ctx, "/counter", []byte(fmt.Sprint(n+1)))
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	v, err := s.Read("/counter")
	if got, want := string(v), fmt.Sprint(workers*incs); err != nil || got != want {
		t.Errorf("counter = %q, %v; want %s", got, err, want)
	}
}

func TestDirectoryPart(t *testing.T) {
	s := newServer(t)
	ctx := testCtx(t)
	c := client(t, s, 0)
	var want []string
	// 500 names of ~20 bytes: ~10 KiB, more than two payloads.
	for i := 0; i < 500; i++ {
		name := fmt.Sprintf("child-with-long-name-%04d", i)
		want = append(want, name)
		if err := s.Mkdir("/big/" + name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Directory("/big"); !errors.Is(err, unix.E2BIG) {
		t.Fatalf("server Directory = %v, want E2BIG", err)
	}
	got, err := c.Directory(ctx, "/big")
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Directory = %d names, %v; want %d", len(got), err, len(want))
	}
}

func TestOversizedRequestDropsConnection(t *testing.T) {
	s := newServer(t)
	conn, err := s.Pipe(0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h := xenstore.Header{Type: xenstore.MsgRead, Len: xenstore.PayloadMax + 1}
	if _, err := conn.Write(h.Append(nil)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(timeout))
	var b [1]byte
	n, err := conn.Read(b[:])
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection not dropped after oversized request")
	}
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("read after oversized request: n=%d err=%v, want EOF", n, err)
	}
}

func TestMalformedRequests(t *testing.T) {
	s := newServer(t)
	conn, err := s.Pipe(0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	// A transaction of another connection is not visible here.
	otherTx, err := client(t, s, 0).Start(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		typ     xenstore.MsgType
		txID    uint32
		payload string
		want    string // reply payload without nul, "" for any non-error
	}{
		{"read without nul", xenstore.MsgRead, 0, "/local", "EINVAL"},
		{"read two strings", xenstore.MsgRead, 0, "/local\x00x\x00", "EINVAL"},
		{"empty path", xenstore.MsgRead, 0, "\x00", "EINVAL"},
		{"watch one string", xenstore.MsgWatch, 0, "/x\x00", "EINVAL"},
		{"unknown tx", xenstore.MsgRead, 99, "/local\x00", "ENOENT"},
		{"other connection's tx", xenstore.MsgRead, otherTx.ID(), "/local\x00", "ENOENT"},
		{"other connection's tx end", xenstore.MsgTransactionEnd, otherTx.ID(), "T\x00", "ENOENT"},
		{"tx end bad arg", xenstore.MsgTransactionEnd, 99, "X\x00", "ENOENT"},
		{"domain path junk", xenstore.MsgGetDomainPath, 0, "abc\x00", "EINVAL"},
		{"set perms none", xenstore.MsgSetPerms, 0, "/local\x00", "EINVAL"},
		{"set perms bad", xenstore.MsgSetPerms, 0, "/local\x00q1\x00", "EINVAL"},
		{"event from client", xenstore.MsgWatchEvent, 0, "", "EINVAL"},
		{"error from client", xenstore.MsgError, 0, "", "EINVAL"},
		{"unknown type", 1000, 0, "", "EINVAL"},
		{"control", xenstore.MsgControl, 0, "print\x00", "ENOSYS"},
		{"directory part bad offset", xenstore.MsgDirectoryPart, 0, "/local\x00x\x00", "EINVAL"},
		{"nested transaction", xenstore.MsgTransactionStart, 5, "\x00", "EBUSY"},
		{"still alive", xenstore.MsgRead, 0, "/local\x00", ""},
	} {
		msg, err := xenstore.AppendMsg(nil, tc.typ, 77, tc.txID, []byte(tc.payload))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(msg); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		h, p, err := xenstore.ReadMsg(conn)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if h.ReqID != 77 || h.TxID != tc.txID {
			t.Errorf("%s: reply ids %d/%d, want 77/%d", tc.name, h.ReqID, h.TxID, tc.txID)
		}
		switch {
		case tc.want == "" && h.Type == xenstore.MsgError:
			t.Errorf("%s: error %q", tc.name, p)
		case tc.want != "" && (h.Type != xenstore.MsgError || string(p) != tc.want+"\x00"):
			t.Errorf("%s: reply %v %q, want ERROR %q", tc.name, h.Type, p, tc.want)
		}
	}
}

func TestCloseStopsEverything(t *testing.T) {
	s := xenstored.New(xenstored.Config{})
	sock := filepath.Join(t.TempDir(), "socket")
	if err := s.Listen(sock); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "socket2"))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.ServeAs(l, 3) }()
	ctx := testCtx(t)
	c, err := xenstore.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, err := c.Watch(ctx, "/", "all")
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, w)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeAs after Close = %v, want nil", err)
		}
	case <-time.After(timeout):
		t.Fatal("ServeAs did not return after Close")
	}
	// The client sees the connection go: pending and new requests fail,
	// the watch channel closes.
	select {
	case _, ok := <-w.Events():
		if ok {
			t.Error("event after server Close")
		}
	case <-time.After(timeout):
		t.Fatal("watch channel not closed after server Close")
	}
	if _, err := c.Read(ctx, "/"); err == nil {
		t.Error("Read after server Close succeeded")
	}
	if _, err := s.Pipe(0); !errors.Is(err, hyp.ErrClosed) {
		t.Errorf("Pipe after Close: %v, want ErrClosed", err)
	}
	if err := s.Write("/x", nil); !errors.Is(err, hyp.ErrClosed) {
		t.Errorf("Write after Close: %v, want ErrClosed", err)
	}
}

func TestWaitValue(t *testing.T) {
	s := newServer(t)
	ctx := testCtx(t)
	c := client(t, s, 0)
	const path = "/local/domain/0/device-model/4/state"
	errc := make(chan error, 1)
	go func() { errc <- s.WaitValue(ctx, path, []byte("running")) }()
	// Intermediate values do not end the wait; the wanted one does. The
	// waiter may start before or after any of these writes.
	for _, v := range []string{"starting", "running"} {
		if err := c.Write(ctx, path, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-errc; err != nil {
		t.Fatalf("WaitValue: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := s.WaitValue(short, path, []byte("never")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitValue for a value never written: %v, want DeadlineExceeded", err)
	}
}

func TestWatchTriggers(t *testing.T) {
	s := newServer(t)
	ctx := testCtx(t)
	c := client(t, s, 0)
	if err := c.Write(ctx, "/local/domain/0/n", []byte("v")); err != nil {
		t.Fatal(err)
	}
	w, err := c.Watch(ctx, "n", "rel")
	if err != nil {
		t.Fatal(err)
	}
	nextEvent(t, w)
	sentinel := func() error { return c.Write(ctx, "/local/domain/0/n/s", nil) }
	sentinelEv := xenstore.Event{Path: "n/s", Token: "rel"}

	// SetPerms fires; Mkdir of an existing node and reads do not.
	if err := c.SetPerms(ctx, "n", []xenstore.Perm{{Dom: 0, Access: xenstore.AccessRead}}); err != nil {
		t.Fatal(err)
	}
	if got, want := nextEvent(t, w), (xenstore.Event{Path: "n", Token: "rel"}); got != want {
		t.Errorf("set-perms event = %v, want %v", got, want)
	}
	if err := c.Mkdir(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	noEvent(t, w, sentinel, sentinelEv)
	// An aborted transaction fires nothing.
	tx, err := c.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Write(ctx, "n", []byte("tx")); err != nil {
		t.Fatal(err)
	}
	if err := tx.End(ctx, false); err != nil {
		t.Fatal(err)
	}
	noEvent(t, w, func() error { return c.Write(ctx, "/local/domain/0/n/s", []byte("1")) }, sentinelEv)
	// Unwatch by the relative path it was registered with.
	if err := w.Unwatch(ctx); err != nil {
		t.Fatalf("relative Unwatch: %v", err)
	}
}

func TestResetWatches(t *testing.T) {
	s := newServer(t)
	conn, err := s.Pipe(0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	roundTrip := func(typ xenstore.MsgType, payload string) (xenstore.Header, []byte) {
		t.Helper()
		m, _ := xenstore.AppendMsg(nil, typ, 1, 0, []byte(payload))
		if _, err := conn.Write(m); err != nil {
			t.Fatal(err)
		}
		h, p, err := xenstore.ReadMsg(conn)
		if err != nil {
			t.Fatal(err)
		}
		return h, p
	}
	if h, _ := roundTrip(xenstore.MsgWatch, "/r\x00tok\x00"); h.Type != xenstore.MsgWatch {
		t.Fatalf("watch reply %v", h.Type)
	}
	if h, _, _ := xenstore.ReadMsg(conn); h.Type != xenstore.MsgWatchEvent {
		t.Fatalf("initial event missing: %v", h.Type)
	}
	if h, _ := roundTrip(xenstore.MsgResetWatches, ""); h.Type != xenstore.MsgResetWatches {
		t.Fatalf("reset reply %v", h.Type)
	}
	// No event for this write: the next message is the write's reply.
	if h, _ := roundTrip(xenstore.MsgWrite, "/r/x\x00"); h.Type != xenstore.MsgWrite {
		t.Errorf("after RESET_WATCHES got %v, want the WRITE reply", h.Type)
	}
	if h, p := roundTrip(xenstore.MsgUnwatch, "/r\x00tok\x00"); h.Type != xenstore.MsgError || string(p) != "ENOENT\x00" {
		t.Errorf("unwatch after reset: %v %q, want ENOENT", h.Type, p)
	}
}
