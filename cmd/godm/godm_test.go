package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSimWorkload(t *testing.T) {
	com1 := filepath.Join(t.TempDir(), "com1")
	var out, errw bytes.Buffer
	if err := run([]string{"sim", "-serial", "file:" + com1}, &out, &errw); err != nil {
		t.Fatalf("godm sim: %v\n%s%s", err, out.String(), errw.String())
	}
	for _, want := range []string{
		"00:00.0  8086:1237", "00:01.0  8086:7000", "00:01.3  8086:7113", "00:03.0  5853:0001",
		"00:05.0  676f:646d", "magic at port 0x10 = 0x49d2", "self-test answer = 0x55",
		`DMA'd "ABCDEFGHIJKLMNOP"`, "remote_shutdown(reason 0", "1 ioreq server destroyed",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	got, err := os.ReadFile(com1)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Hello from a simulated HVM guest", "one rep outsb"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("COM1 backend got %q, lacks %q", got, want)
		}
	}
}

func TestBadUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frob"}, `unknown command "frob"`},
		{[]string{"serve"}, "-domid -1: want a guest domain id"},
		{[]string{"serve", "-domid", "70000"}, "want a guest domain id"},
		{[]string{"serve", "-domid", "5", "-xen-dev", "/nonexistent"}, "no Xen found"},
		// Flags are checked before Xen is looked for.
		{[]string{"serve", "-domid", "5", "-xen-dev", "/nonexistent", "-serial", "tcp:1"}, "want stdio, null"},
		{[]string{"serve", "-domid", "5", "-xen-dev", "/nonexistent", "-bufioreq", "x"}, `-bufioreq "x"`},
		{[]string{"sim", "-vcpus", "0"}, "needs at least 1"},
		{[]string{"sim", "-vcpus", "500"}, "-vcpus 500: want 0..128"},
		{[]string{"sim", "-bufioreq", "sometimes"}, `-bufioreq "sometimes": want atomic or off`},
		{[]string{"sim", "-serial", "tcp:1234"}, `want stdio, null, file:PATH, pty or unix:PATH`},
		{[]string{"sim", "-serial", "file:"}, "file needs a path"},
		{[]string{"sim", "-test-device", "3"}, "-test-device 3: want a free slot"},
		{[]string{"sim", "-linux", "-guest-dir", ""}, "assets not prepared"},
		{[]string{"sim", "extra"}, `unexpected argument "extra"`},
		{[]string{"serve", "-domid", "5", "-device", "e1000,mac=00:16:3e:00:00:01"}, `-device "e1000`},
		{[]string{"serve", "-domid", "5", "-device", "xen-pci-passthrough"}, `-device "xen-pci-passthrough"`},
		{[]string{"serve", "-domid", "5", "-pt-grant"}, "-pt-grant needs a -device xen-pci-passthrough"},
	} {
		var out, errw bytes.Buffer
		err := run(tc.args, &out, &errw)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("godm %v = %v, want error containing %q", tc.args, err, tc.want)
		}
	}
}
