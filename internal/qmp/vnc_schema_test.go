package qmp

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"testing"
	"time"

	"godm/display"
	"godm/display/vnc"
)

// query-vnc as display/vnc builds it, with a connected client, against
// QEMU 7.2's own schema (VncInfo, VncClientInfo); and the -vnc none form.
func TestQEMUSchemaQueryVNC(t *testing.T) {
	s := qemuSchema(t)
	fb, err := display.NewBuffer(64, 48, display.XRGB8888)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := vnc.New(vnc.Config{Source: fb, Auth: vnc.AuthVNC, Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if q := vnc.QueryVNC(srv); q["host"] != nil {
		t.Fatalf("query-vnc names a listener before Serve: %v", q)
	}
	go srv.Serve(ln)
	for deadline := time.Now().Add(20 * time.Second); vnc.QueryVNC(srv)["host"] == nil; {
		if time.Now().After(deadline) {
			t.Fatal("Serve never registered its listener")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, tc := range []struct {
		v  any
		ok bool
	}{
		{vnc.QueryVNC(srv), true},
		{vnc.QueryVNC(nil), true},
		{map[string]any{"host": "127.0.0.1"}, false},
		{map[string]any{"enabled": true, "family": "tcp"}, false},
		{map[string]any{"enabled": true, "clients": []any{map[string]any{"host": "h"}}}, false},
	} {
		raw, err := json.Marshal(tc.v)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		json.Unmarshal(raw, &v)
		if err := s.CheckReturn("query-vnc", v); (err == nil) != tc.ok {
			t.Errorf("query-vnc %s: %v, want ok=%v", raw, err, tc.ok)
		}
	}
	// A connected, logged-in client appears in clients and still fits.
	srv2, err := vnc.New(vnc.Config{Source: fb})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv2.Serve(ln2)
	c2, err := net.Dial("tcp", ln2.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(20 * time.Second))
	br2 := bufio.NewReader(c2)
	io.ReadFull(br2, make([]byte, 12))
	c2.Write([]byte("RFB 003.008\n"))
	io.ReadFull(br2, make([]byte, 2))
	c2.Write([]byte{1})
	io.ReadFull(br2, make([]byte, 4))
	c2.Write([]byte{1})
	if _, err := io.ReadFull(br2, make([]byte, 24+4)); err != nil { // ServerInit, name "godm"
		t.Fatal(err)
	}
	q := vnc.QueryVNC(srv2)
	if cl, _ := q["clients"].([]any); len(cl) != 1 {
		t.Fatalf("query-vnc clients %v", q["clients"])
	}
	raw, _ := json.Marshal(q)
	var v any
	json.Unmarshal(raw, &v)
	if err := s.CheckReturn("query-vnc", v); err != nil {
		t.Errorf("query-vnc %s: %v", raw, err)
	}
}
