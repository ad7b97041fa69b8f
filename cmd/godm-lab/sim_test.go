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
		t.Fatalf("godm-lab sim: %v\n%s%s", err, out.String(), errw.String())
	}
	for _, want := range []string{
		"64 MiB RAM: 64 MiB below the PCI hole at 0xf0000000, 0 MiB from 4 GiB",
		"00:00.0  8086:1237", "00:01.0  8086:7000", "00:01.3  8086:7113", "00:02.0  5853:0001",
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

// TestSimHonoursFlags: the flags the workload depends on are honoured,
// not ignored: the test device where -test-device puts it (and none with
// -1), and more RAM than fits below the PCI hole laid out around it as
// Xen does, so that the test device's BAR in the hole still reaches godm
// (with all of it from 0, as before, -mem 4096 put RAM over the BAR).
func TestSimHonoursFlags(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		want, lack []string
	}{
		{[]string{"-test-device", "4"}, []string{"00:04.0  676f:646d", `DMA'd "ABCDEFGHIJKLMNOP"`}, []string{"00:05.0"}},
		{[]string{"-test-device", "-1"}, []string{"00:02.0  5853:0001"}, []string{"676f:646d", "DMA'd"}},
		{[]string{"-mem", "4096"}, []string{"4096 MiB RAM: 3840 MiB below the PCI hole at 0xf0000000, 256 MiB from 4 GiB", `DMA'd "ABCDEFGHIJKLMNOP"`}, nil},
		{[]string{"-mem", "4096", "-max-ram-below-4g", "2G"}, []string{"4096 MiB RAM: 2048 MiB below the PCI hole at 0x80000000, 2048 MiB from 4 GiB", `DMA'd`}, nil},
		{[]string{"-mem", "1"}, []string{"1 MiB RAM", `DMA'd`}, nil},
	} {
		var out, errw bytes.Buffer
		args := append([]string{"sim", "-serial", "null"}, tc.args...)
		if err := run(args, &out, &errw); err != nil {
			t.Errorf("godm-lab %v: %v\n%s%s", args, err, out.String(), errw.String())
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("godm-lab %v: output lacks %q:\n%s", args, w, out.String())
			}
		}
		for _, l := range tc.lack {
			if strings.Contains(out.String(), l) {
				t.Errorf("godm-lab %v: output has %q:\n%s", args, l, out.String())
			}
		}
	}
}

func TestSimBadUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frob"}, `unknown command "frob"`},
		{[]string{"sim", "-vcpus", "0"}, "needs at least 1"},
		{[]string{"sim", "-vcpus", "500"}, "-vcpus 500: want 0..128"},
		{[]string{"sim", "-bufioreq", "sometimes"}, `-bufioreq "sometimes": want atomic or off`},
		{[]string{"sim", "-serial", "tcp:1234"}, `want stdio, null, file:PATH, pty or unix:PATH`},
		{[]string{"sim", "-serial", "file:"}, "file needs a path"},
		{[]string{"sim", "-test-device", "2"}, "-test-device 2: want a free slot"},
		{[]string{"sim", "-mem", "0"}, "-mem 0: the simulated domain needs RAM"},
		{[]string{"sim", "-mem", "17592186044417"}, "-mem 17592186044417: want 1..16777215 MiB"},
		{[]string{"sim", "-max-ram-below-4g", "0xf0001000"}, "-max-ram-below-4g: RAM below 4 GiB 0xf0001000"},
		{[]string{"sim", "-linux", "-guest-dir", ""}, "assets not prepared"},
		// The Linux demo's machine is fixed: machine flags are refused,
		// not ignored.
		{[]string{"sim", "-linux", "-mem", "1"}, "sim -linux: -mem does not apply"},
		{[]string{"sim", "-linux", "-test-device", "4"}, "sim -linux: -test-device does not apply"},
		{[]string{"sim", "-guest-dir", "/tmp"}, "-guest-dir only applies with -linux"},
		{[]string{"sim", "extra"}, `unexpected argument "extra"`},
	} {
		var out, errw bytes.Buffer
		err := run(tc.args, &out, &errw)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("godm-lab %v = %v, want error containing %q", tc.args, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("godm-lab %v: error spans lines: %q", tc.args, err)
		}
	}
}
