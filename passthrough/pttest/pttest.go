// Package pttest gives tests outside package passthrough a fake host to
// pass through: a sysfs tree holding a real function's captured files,
// bound to pciback.
package pttest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// SampleAddr is the host address of the sample function: the virtio-net
// function (1af4:1041) of the machine that captured passthrough/testdata.
const SampleAddr = "0000:00:03.0"

// SampleSysfs writes a sysfs tree (bus/pci/devices and drivers) in a test
// directory holding the sample function bound to pciback at SampleAddr,
// and returns its root, for passthrough.HostOptions.SysfsRoot.
func SampleSysfs(t testing.TB) string {
	t.Helper()
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("pttest: no source location for the sample's testdata")
	}
	src := filepath.Join(filepath.Dir(self), "..", "testdata", "devices", "0000_00_03.0")
	root := t.TempDir()
	dir := filepath.Join(root, "bus", "pci", "devices", SampleAddr)
	drv := filepath.Join(root, "bus", "pci", "drivers", "pciback")
	for _, d := range []string{dir, drv} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"config", "resource", "vendor", "device", "class", "irq"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(drv, filepath.Join(dir, "driver")); err != nil {
		t.Fatal(err)
	}
	return root
}
