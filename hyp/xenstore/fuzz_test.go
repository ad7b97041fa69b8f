package xenstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"godm/hyp/xenstore"
)

// FuzzReadMsg feeds arbitrary byte streams to the message decoder and the
// payload parsers: no panic, and every decoded message re-encodes to the
// bytes it was read from.
func FuzzReadMsg(f *testing.F) {
	f.Add([]byte{})
	f.Add(xenstore.Header{Type: xenstore.MsgRead, Len: 3}.Append([]byte(nil)))
	ok, _ := xenstore.AppendMsg(nil, xenstore.MsgWatchEvent, 0, 0, []byte("/a\x00tok\x00"))
	f.Add(ok)
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			start := len(data) - r.Len()
			h, p, err := xenstore.ReadMsg(r)
			if err != nil {
				if err == io.EOF && start != len(data) {
					t.Fatalf("EOF with %d bytes unread", len(data)-start)
				}
				return
			}
			if int(h.Len) != len(p) || h.Len > xenstore.PayloadMax {
				t.Fatalf("header len %d, payload %d", h.Len, len(p))
			}
			end := len(data) - r.Len()
			if re := append(h.Append(nil), p...); !bytes.Equal(re, data[start:end]) {
				t.Fatalf("re-encoding differs: %x vs %x", re, data[start:end])
			}
			// The payload parsers must not panic on anything.
			xenstore.ParseError(p)
			xenstore.SplitStrings(p)
			if ev, err := xenstore.ParseEvent(p); err == nil {
				if got, _ := xenstore.ParseEvent(xenstore.AppendEvent(nil, ev)); got != ev {
					t.Fatalf("event round trip %v -> %v", ev, got)
				}
			}
			if perms, err := xenstore.ParsePerms(p); err == nil {
				again, err := xenstore.ParsePerms(xenstore.AppendPerms(nil, perms))
				if err != nil || len(again) != len(perms) {
					t.Fatalf("perms round trip %v -> %v, %v", perms, again, err)
				}
			}
		}
	})
}

// FuzzClientReplies plays an arbitrary byte stream as the daemon's side of
// a connection while the Client makes requests: every call must return
// (an answer or an error) and nothing may panic or leak past Close.
func FuzzClientReplies(f *testing.F) {
	reply, _ := xenstore.AppendMsg(nil, xenstore.MsgRead, 1, 0, []byte("v"))
	f.Add(reply)
	perms, _ := xenstore.AppendMsg(nil, xenstore.MsgGetPerms, 2, 0, []byte("n0\x00r5\x00"))
	f.Add(append(reply, perms...))
	errMsg, _ := xenstore.AppendMsg(nil, xenstore.MsgError, 1, 0, []byte("ENOENT\x00"))
	f.Add(errMsg)
	f.Fuzz(func(t *testing.T, stream []byte) {
		cli, srv := net.Pipe()
		c := xenstore.New(cli)
		// Closed on every path: a failure below must not leave the
		// player blocked in its Write on the unread pipe.
		closed := false
		defer func() {
			if !closed {
				c.Close()
			}
		}()
		go func() {
			// Swallow requests, then play the stream and hang up.
			go io.Copy(io.Discard, srv)
			srv.Write(stream)
			srv.Close()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.Read(ctx, "/a")
			c.GetPerms(ctx, "/a")
			c.Directory(ctx, "/a")
			if tx, err := c.Start(ctx); err == nil {
				tx.End(ctx, true)
			}
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("client calls did not return after the daemon hung up")
		}
		closed = true
		if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Logf("Close: %v", err)
		}
	})
}
