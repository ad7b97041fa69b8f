package xenstore_test

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
	"godm/hyp/kernel"
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

// fakeDaemon serves a Client over net.Pipe with a scripted answer per
// request: answer returns the raw bytes to send back (any number of
// messages, or garbage), and whether to hang up afterwards.
func fakeDaemon(t *testing.T, answer func(h xenstore.Header, payload []byte) ([]byte, bool)) *xenstore.Client {
	t.Helper()
	cli, srv := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer srv.Close()
		for {
			h, p, err := xenstore.ReadMsg(srv)
			if err != nil {
				return
			}
			out, hangup := answer(h, p)
			if len(out) > 0 {
				if _, err := srv.Write(out); err != nil {
					return
				}
			}
			if hangup {
				return
			}
		}
	}()
	c := xenstore.New(cli)
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	return c
}

func msg(typ xenstore.MsgType, reqID, txID uint32, payload string) []byte {
	b, err := xenstore.AppendMsg(nil, typ, reqID, txID, []byte(payload))
	if err != nil {
		panic(err)
	}
	return b
}

func TestMalformedReplies(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply func(h xenstore.Header) ([]byte, bool)
		call  func(ctx context.Context, c *xenstore.Client) error
		want  error
	}{
		{
			name:  "wrong reply type",
			reply: func(h xenstore.Header) ([]byte, bool) { return msg(xenstore.MsgDirectory, h.ReqID, 0, "x\x00"), false },
			call:  func(ctx context.Context, c *xenstore.Client) error { _, err := c.Read(ctx, "/a"); return err },
			want:  xenstore.ErrProtocol,
		},
		{
			name:  "unknown error name",
			reply: func(h xenstore.Header) ([]byte, bool) { return msg(xenstore.MsgError, h.ReqID, 0, "EWEIRD\x00"), false },
			call:  func(ctx context.Context, c *xenstore.Client) error { _, err := c.Read(ctx, "/a"); return err },
			want:  unix.EINVAL,
		},
		{
			name: "oversized reply length",
			reply: func(h xenstore.Header) ([]byte, bool) {
				return xenstore.Header{Type: h.Type, ReqID: h.ReqID, Len: xenstore.PayloadMax + 1}.Append(nil), false
			},
			call: func(ctx context.Context, c *xenstore.Client) error { _, err := c.Read(ctx, "/a"); return err },
			want: xenstore.ErrProtocol,
		},
		{
			name:  "truncated reply then hangup",
			reply: func(h xenstore.Header) ([]byte, bool) { return msg(xenstore.MsgRead, h.ReqID, 0, "value")[:18], true },
			call:  func(ctx context.Context, c *xenstore.Client) error { _, err := c.Read(ctx, "/a"); return err },
			want:  xenstore.ErrProtocol,
		},
		{
			name:  "hangup without reply",
			reply: func(h xenstore.Header) ([]byte, bool) { return nil, true },
			call:  func(ctx context.Context, c *xenstore.Client) error { _, err := c.Read(ctx, "/a"); return err },
			want:  io.ErrUnexpectedEOF,
		},
		{
			name:  "directory without final nul",
			reply: func(h xenstore.Header) ([]byte, bool) { return msg(xenstore.MsgDirectory, h.ReqID, 0, "a\x00b"), false },
			call:  func(ctx context.Context, c *xenstore.Client) error { _, err := c.Directory(ctx, "/a"); return err },
			want:  xenstore.ErrProtocol,
		},
		{
			name:  "garbage permissions",
			reply: func(h xenstore.Header) ([]byte, bool) { return msg(xenstore.MsgGetPerms, h.ReqID, 0, "zz\x00"), false },
			call:  func(ctx context.Context, c *xenstore.Client) error { _, err := c.GetPerms(ctx, "/a"); return err },
			want:  xenstore.ErrProtocol,
		},
		{
			name:  "empty permissions",
			reply: func(h xenstore.Header) ([]byte, bool) { return msg(xenstore.MsgGetPerms, h.ReqID, 0, ""), false },
			call:  func(ctx context.Context, c *xenstore.Client) error { _, err := c.GetPerms(ctx, "/a"); return err },
			want:  xenstore.ErrProtocol,
		},
		{
			name: "garbage transaction id",
			reply: func(h xenstore.Header) ([]byte, bool) {
				return msg(xenstore.MsgTransactionStart, h.ReqID, 0, "x1\x00"), false
			},
			call: func(ctx context.Context, c *xenstore.Client) error { _, err := c.Start(ctx); return err },
			want: xenstore.ErrProtocol,
		},
		{
			name: "transaction id zero",
			reply: func(h xenstore.Header) ([]byte, bool) {
				return msg(xenstore.MsgTransactionStart, h.ReqID, 0, "0\x00"), false
			},
			call: func(ctx context.Context, c *xenstore.Client) error { _, err := c.Start(ctx); return err },
			want: xenstore.ErrProtocol,
		},
		{
			name: "directory part without progress",
			reply: func(h xenstore.Header) ([]byte, bool) {
				if h.Type == xenstore.MsgDirectory {
					return msg(xenstore.MsgError, h.ReqID, 0, "E2BIG\x00"), false
				}
				return msg(xenstore.MsgDirectoryPart, h.ReqID, 0, "5\x00"), false
			},
			call: func(ctx context.Context, c *xenstore.Client) error { _, err := c.Directory(ctx, "/a"); return err },
			want: xenstore.ErrProtocol,
		},
		{
			name: "directory part unsupported",
			reply: func(h xenstore.Header) ([]byte, bool) {
				if h.Type == xenstore.MsgDirectory {
					return msg(xenstore.MsgError, h.ReqID, 0, "E2BIG\x00"), false
				}
				return msg(xenstore.MsgError, h.ReqID, 0, "ENOSYS\x00"), false
			},
			call: func(ctx context.Context, c *xenstore.Client) error { _, err := c.Directory(ctx, "/a"); return err },
			want: unix.E2BIG,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeDaemon(t, func(h xenstore.Header, _ []byte) ([]byte, bool) { return tc.reply(h) })
			err := tc.call(testCtx(t), c)
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// After a protocol violation the connection is dead: later calls fail
// at once rather than hang.
func TestDeadConnectionFailsFast(t *testing.T) {
	c := fakeDaemon(t, func(h xenstore.Header, _ []byte) ([]byte, bool) {
		return xenstore.Header{Len: 0xffffffff}.Append(nil), false
	})
	ctx := testCtx(t)
	if _, err := c.Read(ctx, "/a"); !errors.Is(err, xenstore.ErrProtocol) {
		t.Fatalf("first Read: %v", err)
	}
	if _, err := c.Read(ctx, "/a"); !errors.Is(err, xenstore.ErrProtocol) {
		t.Errorf("second Read: %v, want the recorded ErrProtocol", err)
	}
	if _, err := c.Watch(ctx, "/a", ""); !errors.Is(err, xenstore.ErrProtocol) {
		t.Errorf("Watch: %v, want ErrProtocol", err)
	}
}

func TestMultiplexOutOfOrder(t *testing.T) {
	// The daemon holds the first request and answers it after the second,
	// with payloads naming the path asked for.
	var held []byte
	c := fakeDaemon(t, func(h xenstore.Header, p []byte) ([]byte, bool) {
		r := msg(xenstore.MsgRead, h.ReqID, 0, "for "+string(p[:len(p)-1]))
		if held == nil {
			held = r
			return nil, false
		}
		return append(r, held...), false
	})
	ctx := testCtx(t)
	// Whichever request arrives first is answered second.
	var wg sync.WaitGroup
	got := make([]string, 2)
	for i, path := range []string{"/first", "/second"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := c.Read(ctx, path)
			if err != nil {
				t.Error(err)
			}
			got[i] = string(v)
		}()
	}
	wg.Wait()
	if got[0] != "for /first" || got[1] != "for /second" {
		t.Errorf("replies = %q, want each its own", got)
	}
}

func TestStrayAndMalformedEventsDropped(t *testing.T) {
	c := fakeDaemon(t, func(h xenstore.Header, p []byte) ([]byte, bool) {
		var out []byte
		out = append(out, msg(xenstore.MsgRead, h.ReqID+1000, 0, "stray")...)              // nobody asked
		out = append(out, msg(xenstore.MsgWatchEvent, 0, 0, "/only-path\x00")...)          // malformed
		out = append(out, msg(xenstore.MsgWatchEvent, 0, 0, "/p\x00no-such-token\x00")...) // unmatched
		out = append(out, msg(xenstore.MsgRead, h.ReqID, 0, "ok")...)
		return out, false
	})
	v, err := c.Read(testCtx(t), "/a")
	if err != nil || string(v) != "ok" {
		t.Fatalf("Read = %q, %v", v, err)
	}
	replies, events := c.StrayReplies()
	if replies != 1 || events != 2 {
		t.Errorf("StrayReplies = %d, %d; want 1, 2", replies, events)
	}
}

func TestContextCancel(t *testing.T) {
	release := make(chan xenstore.Header, 1)
	c := fakeDaemon(t, func(h xenstore.Header, p []byte) ([]byte, bool) {
		if string(p) == "/slow\x00" {
			release <- h
			return nil, false
		}
		// Answer the late request first, then this one.
		late := <-release
		return append(msg(xenstore.MsgRead, late.ReqID, 0, "late"), msg(xenstore.MsgRead, h.ReqID, 0, "fast")...), false
	})
	ctx, cancel := context.WithCancel(testCtx(t))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(ctx, "/slow")
		errc <- err
	}()
	// Wait until the daemon holds the slow request, then cancel.
	h := <-release
	release <- h
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Read: %v", err)
	}
	v, err := c.Read(testCtx(t), "/fast")
	if err != nil || string(v) != "fast" {
		t.Fatalf("Read after cancel = %q, %v", v, err)
	}
	if replies, _ := c.StrayReplies(); replies != 1 {
		t.Errorf("stray replies = %d, want 1 (the late reply)", replies)
	}
}

func TestCloseUnblocksAndIsIdempotent(t *testing.T) {
	got := make(chan struct{})
	c := fakeDaemon(t, func(h xenstore.Header, p []byte) ([]byte, bool) {
		if h.Type == xenstore.MsgWatch {
			return msg(xenstore.MsgWatch, h.ReqID, 0, "OK\x00"), false
		}
		close(got)
		return nil, false // never answer
	})
	ctx := testCtx(t)
	w, err := c.Watch(ctx, "/w", "")
	if err != nil {
		t.Fatal(err)
	}
	if w.Token() == "" || w.Path() != "/w" {
		t.Errorf("watch token %q path %q", w.Token(), w.Path())
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Read(ctx, "/a")
		errc <- err
	}()
	<-got
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-errc; !errors.Is(err, hyp.ErrClosed) {
		t.Errorf("pending Read: %v, want ErrClosed", err)
	}
	if _, ok := <-w.Events(); ok {
		t.Error("watch channel open after Close")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := c.Read(ctx, "/a"); !errors.Is(err, hyp.ErrClosed) {
		t.Errorf("Read after Close: %v, want ErrClosed", err)
	}
	if _, err := c.Watch(ctx, "/a", ""); !errors.Is(err, hyp.ErrClosed) {
		t.Errorf("Watch after Close: %v, want ErrClosed", err)
	}
}

func simClient(t *testing.T, s *xenstored.Server) *xenstore.Client {
	t.Helper()
	conn, err := s.Pipe(0)
	if err != nil {
		t.Fatal(err)
	}
	c := xenstore.New(conn)
	t.Cleanup(func() { c.Close() })
	return c
}

func newSim(t *testing.T) *xenstored.Server {
	s := xenstored.New(xenstored.Config{})
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConcurrentRequests(t *testing.T) {
	s := newSim(t)
	c := simClient(t, s)
	ctx := testCtx(t)
	const workers, ops = 8, 40
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < ops; j++ {
				p := fmt.Sprintf("/c/%d/%d", i, j)
				want := fmt.Sprintf("v%d-%d", i, j)
				if err := c.Write(ctx, p, []byte(want)); err != nil {
					t.Error(err)
					return
				}
				v, err := c.Read(ctx, p)
				if err != nil || string(v) != want {
					t.Errorf("Read(%s) = %q, %v; want %q", p, v, err, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	names, err := c.Directory(ctx, "/c")
	if err != nil || len(names) != workers {
		t.Errorf("Directory = %q, %v", names, err)
	}
}

func TestWatchTokens(t *testing.T) {
	s := newSim(t)
	c := simClient(t, s)
	ctx := testCtx(t)
	w1, err := c.Watch(ctx, "/a", "")
	if err != nil {
		t.Fatal(err)
	}
	w2, err := c.Watch(ctx, "/a", "")
	if err != nil {
		t.Fatal(err)
	}
	if w1.Token() == w2.Token() {
		t.Errorf("generated tokens equal: %q", w1.Token())
	}
	if _, err := c.Watch(ctx, "/b", w1.Token()); !errors.Is(err, unix.EEXIST) {
		t.Errorf("reused token: %v, want EEXIST", err)
	}
	// A failed registration does not leave a local watch behind.
	if _, err := c.Watch(ctx, "/bad path", "t"); !errors.Is(err, unix.EINVAL) {
		t.Errorf("bad path: %v, want EINVAL", err)
	}
	if _, err := c.Watch(ctx, "/ok", "t"); err != nil {
		t.Errorf("token of failed watch not reusable: %v", err)
	}
}

// A consumer that does not read its events does not stall other requests
// or other watches.
func TestSlowWatchConsumer(t *testing.T) {
	s := newSim(t)
	c := simClient(t, s)
	ctx := testCtx(t)
	slow, err := c.Watch(ctx, "/slow", "slow")
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := 0; i < n; i++ {
		if err := c.Write(ctx, fmt.Sprintf("/slow/%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	fast, err := c.Watch(ctx, "/fast", "fast")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-fast.Events():
		if ev.Path != "/fast" {
			t.Errorf("fast event %v", ev)
		}
	case <-time.After(timeout):
		t.Fatal("fast watch stalled behind slow one")
	}
	// All slow events are still there, in order, after the initial one.
	want := []string{"/slow"}
	for i := 0; i < n; i++ {
		want = append(want, fmt.Sprintf("/slow/%d", i))
	}
	for _, p := range want {
		select {
		case ev := <-slow.Events():
			if ev.Path != p {
				t.Fatalf("slow event %q, want %q", ev.Path, p)
			}
		case <-time.After(timeout):
			t.Fatalf("missing slow event %q", p)
		}
	}
}

func TestTransactAbortsOnError(t *testing.T) {
	s := newSim(t)
	c := simClient(t, s)
	ctx := testCtx(t)
	boom := errors.New("boom")
	err := c.Transact(ctx, func(tx *xenstore.Tx) error {
		if err := tx.Write(ctx, "/x", []byte("1")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Transact = %v, want boom", err)
	}
	if _, err := c.Read(ctx, "/x"); !errors.Is(err, unix.ENOENT) {
		t.Errorf("aborted write visible: %v", err)
	}
	// Transact retries a conflicting commit, running fn again.
	runs := 0
	err = c.Transact(ctx, func(tx *xenstore.Tx) error {
		runs++
		if _, err := tx.Read(ctx, "/y"); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
		if runs == 1 {
			if err := s.Write("/y", []byte("outside")); err != nil {
				return err
			}
		}
		return tx.Write(ctx, "/y", []byte("tx"))
	})
	if err != nil || runs != 2 {
		t.Errorf("Transact = %v after %d runs; want nil after 2", err, runs)
	}
	if v, err := c.Read(ctx, "/y"); err != nil || string(v) != "tx" {
		t.Errorf("Read = %q, %v", v, err)
	}
	// A cancelled context stops the retries.
	cctx, cancel := context.WithCancel(ctx)
	err = c.Transact(cctx, func(tx *xenstore.Tx) error {
		cancel()
		return fmt.Errorf("wrapped: %w", unix.EAGAIN)
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Transact with cancelled ctx = %v", err)
	}
}

// simKernel opens the simulated xenbus device of s as dom0.
type simKernel struct{ s *xenstored.Server }

func (k simKernel) Open(dev kernel.Device, flags int) (kernel.File, error) {
	if dev != kernel.Xenbus {
		return nil, fmt.Errorf("open %v: %w", dev, unix.ENOENT)
	}
	return k.s.XenbusFile(0, flags)
}

func TestXenbusDevice(t *testing.T) {
	s := newSim(t)
	ctx := testCtx(t)
	// No socket at the configured path: Open falls back to the device.
	missing := filepath.Join(t.TempDir(), "no-socket")
	c, err := xenstore.Open(ctx, xenstore.Config{
		Getenv: func(k string) string {
			if k == xenstore.EnvPath {
				return missing
			}
			return ""
		},
		Kernel: simKernel{s},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, err := c.Watch(ctx, "/dev", "d")
	if err != nil {
		t.Fatal(err)
	}
	<-w.Events()
	big := make([]byte, 3000) // more than a socket buffer write in one go is fine too
	if err := c.Write(ctx, "/dev/x", big); err != nil {
		t.Fatal(err)
	}
	if ev := <-w.Events(); ev.Path != "/dev/x" {
		t.Errorf("event %v", ev)
	}
	v, err := c.Read(ctx, "/dev/x")
	if err != nil || len(v) != len(big) {
		t.Fatalf("Read = %d bytes, %v", len(v), err)
	}
	// Close must not hang on the reader blocked in poll.
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(timeout):
		t.Fatal("Close hung on the xenbus reader")
	}
	if _, err := c.Read(ctx, "/dev/x"); !errors.Is(err, hyp.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
}

func TestOpenFailures(t *testing.T) {
	ctx := testCtx(t)
	missing := filepath.Join(t.TempDir(), "no-socket")
	getenv := func(k string) string {
		if k == xenstore.EnvPath {
			return missing
		}
		return ""
	}
	if _, err := xenstore.Open(ctx, xenstore.Config{Getenv: getenv}); !errors.Is(err, unix.ENOENT) {
		t.Errorf("Open without socket or kernel: %v, want ENOENT", err)
	}
	noDev := kernelFunc(func(dev kernel.Device, flags int) (kernel.File, error) {
		return nil, fmt.Errorf("open: %w", unix.ENOENT)
	})
	if _, err := xenstore.Open(ctx, xenstore.Config{Getenv: getenv, Kernel: noDev}); err == nil {
		t.Error("Open with neither socket nor device succeeded")
	}
}

type kernelFunc func(dev kernel.Device, flags int) (kernel.File, error)

func (f kernelFunc) Open(dev kernel.Device, flags int) (kernel.File, error) { return f(dev, flags) }

// A directory too big for one reply is read with XS_DIRECTORY_PART; when
// the node's generation changes between parts the listing starts over.
func TestDirectoryPartRestart(t *testing.T) {
	parts := 0
	c := fakeDaemon(t, func(h xenstore.Header, p []byte) ([]byte, bool) {
		if h.Type == xenstore.MsgDirectory {
			return msg(xenstore.MsgError, h.ReqID, 0, "E2BIG\x00"), false
		}
		parts++
		off := string(p[len("/d\x00") : len(p)-1])
		switch {
		case parts == 1: // generation 1, first half
			return msg(xenstore.MsgDirectoryPart, h.ReqID, 0, "1\x00a\x00b\x00"), false
		case parts == 2: // generation changed: must restart at 0
			return msg(xenstore.MsgDirectoryPart, h.ReqID, 0, "2\x00c\x00"), false
		case off == "0":
			return msg(xenstore.MsgDirectoryPart, h.ReqID, 0, "2\x00a\x00"), false
		case off == "2":
			return msg(xenstore.MsgDirectoryPart, h.ReqID, 0, "2\x00c\x00\x00"), false
		}
		return msg(xenstore.MsgError, h.ReqID, 0, "EINVAL\x00"), false
	})
	got, err := c.Directory(testCtx(t), "/d")
	if want := []string{"a", "c"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("Directory = %q, %v; want %q", got, err, want)
	}
}
