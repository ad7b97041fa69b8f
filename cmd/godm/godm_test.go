package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBadUsage(t *testing.T) {
	nox := []string{"serve", "-domid", "5", "-xen-dev", "/nonexistent"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frob"}, `unknown command "frob"`},
		// The simulator and the benchmarks are not in the product.
		{[]string{"sim"}, `unknown command "sim"`},
		{[]string{"bench"}, `unknown command "bench"`},
		{[]string{"serve"}, "-domid -1: want a guest domain id"},
		{[]string{"serve", "-domid", "70000"}, "want a guest domain id"},
		{nox, "no Xen found"},
		// Flags are checked before Xen is looked for.
		{append(nox, "-serial", "tcp:1"), "want stdio, null"},
		{append(nox, "-bufioreq", "x"), `-bufioreq "x"`},
		{append(nox, "-vcpus", "500"), "-vcpus 500: want 0..128"},
		{append(nox, "-serial", "file:"), "file needs a path"},
		{append(nox, "-test-device", "2"), "-test-device 2: want a free slot"},
		{append(nox, "-test-device", "-2"), "-test-device -2: want a slot in 2..31, or -1 for none"},
		// RAM: no overflow (2^44 MiB is 2^64 bytes), Xen's 16 TiB limit,
		// the PCI hole's range.
		{append(nox, "-mem", "17592186044417"), "-mem 17592186044417: want 1..16777215 MiB"},
		{append(nox, "-mem", "16777216"), "-mem 16777216: want 1..16777215 MiB"},
		{append(nox, "-mem", "-1"), `invalid value "-1" for flag -mem`},
		{append(nox, "-max-ram-below-4g", "4G"), "-max-ram-below-4g: RAM below 4 GiB 0x100000000: want a page multiple in 0x10000000..0xf0000000"},
		{append(nox, "-max-ram-below-4g", "128M"), "-max-ram-below-4g: RAM below 4 GiB 0x8000000"},
		{append(nox, "-max-ram-below-4g", "99999999999G"), `"99999999999G": too large`},
		{append(nox, "-max-ram-below-4g", "lots"), `"lots": want a byte count`},
		{append(nox, "-sysfs", "/tmp"), "-sysfs is only used by -device xen-pci-passthrough"},
		{[]string{"serve", "extra"}, `unexpected argument "extra"`},
		// The metrics endpoint never leaves the host.
		{append(nox, "-metrics", "0.0.0.0:9100"), "-metrics 0.0.0.0:9100: metrics: \"0.0.0.0:9100\": only a loopback address or a unix socket is served"},
		{append(nox, "-metrics", "192.168.1.1:9100"), "only a loopback address or a unix socket is served"},
		{[]string{"serve", "-domid", "5", "-device", "e1000,mac=00:16:3e:00:00:01"}, `serve: -device e1000: driver "e1000", want xen-pci-passthrough`},
		{[]string{"serve", "-domid", "5", "-device", "xen-pci-passthrough"}, `serve: -device xen-pci-passthrough: passthrough: device_add needs hostaddr`},
		// QEMU's option syntax (internal/qemuopts): repeated and unknown
		// keys are refused by name, not taken last or ignored.
		{[]string{"serve", "-domid", "5", "-device", "xen-pci-passthrough,hostaddr=0000:03:00.0,hostaddr=0000:04:00.0"},
			"serve: -device xen-pci-passthrough: property 'hostaddr' given twice"},
		{[]string{"serve", "-domid", "5", "-device", "xen-pci-passthrough,hostaddr=0000:03:00.0,rombar=0"},
			"serve: -device xen-pci-passthrough: unknown property 'rombar'"},
		{[]string{"serve", "-domid", "5", "-pt-grant"}, "-pt-grant needs a -device xen-pci-passthrough"},
		{[]string{"passthrough", "-domid", "5", "-bdf", "0000:03:00.9"},
			`-bdf: passthrough: PCI address "0000:03:00.9": function 0x9 is out of range: a PCI function is 0..0x7`},
		{[]string{"passthrough", "-domid", "5", "-bdf", "0000:03:00.0", "-rdm-relaxed"}, "-rdm-relaxed only applies with -grant"},
	} {
		var out, errw bytes.Buffer
		err := run(tc.args, &out, &errw)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("godm %v = %v, want error containing %q", tc.args, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("godm %v: error spans lines: %q", tc.args, err)
		}
	}
}

// TestFailedStartKeepsSerialLog: a start that fails — on a bad flag
// checked after -serial, or for want of Xen once every flag is good —
// leaves the previous run's serial log as it was, and creates none.
func TestFailedStartKeepsSerialLog(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "com1.log")
	const old = "the guest's last boot log\n"
	if err := os.WriteFile(log, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(dir, "com2.log")
	base := []string{"serve", "-domid", "5", "-xen-dev", filepath.Join(dir, "no-xen"), "-serial", "file:" + log, "-serial", "file:" + fresh}
	for _, extra := range [][]string{nil, {"-bufioreq", "bogus"}, {"-serial", "tcp:1"}} {
		var out, errw bytes.Buffer
		if err := run(append(append([]string(nil), base...), extra...), &out, &errw); err == nil {
			t.Fatalf("godm serve %v without Xen succeeded", extra)
		}
		if got, err := os.ReadFile(log); err != nil || string(got) != old {
			t.Errorf("after a failed start (%v) the log holds %q (%v), want %q", extra, got, err, old)
		}
		if _, err := os.Stat(fresh); !os.IsNotExist(err) {
			t.Errorf("a failed start (%v) left a new, empty log behind: %v", extra, err)
		}
	}
}

// TestSerialSocketStaleOrLive: -serial unix:PATH over a socket file a
// dead godm left behind is taken over (the start goes on to look for
// Xen); over one a live process listens on it is refused in one line.
func TestSerialSocketStaleOrLive(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "com1.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"serve", "-domid", "5", "-xen-dev", filepath.Join(dir, "no-xen"), "-serial", "unix:" + path}
	var out, errw bytes.Buffer
	err = run(args, &out, &errw)
	if err == nil || !strings.Contains(err.Error(), "-serial (COM1): chardev: listen on "+path+": a running process is serving on this socket") {
		t.Errorf("with a live listener: %v", err)
	}
	ln.SetUnlinkOnClose(false) // dies without cleaning up, as a killed godm does
	ln.Close()
	err = run(args, &out, &errw)
	if err == nil || !strings.Contains(err.Error(), "no Xen found") {
		t.Errorf("over a stale socket: %v, want the start to get as far as looking for Xen", err)
	}
}
