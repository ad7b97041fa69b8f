package xenbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBootDiskUnderQEMU checks the libxl-disk scenario's boot image
// itself, before any Xen: plain QEMU with its own IDE and SeaBIOS boots
// it and COM1 shows both lines (so a failure in the box is godm's, not
// the image's).
func TestBootDiskUnderQEMU(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skipf("qemu-system-x86_64 not installed (scripts/test-packages.txt): %v", err)
	}
	dir := t.TempDir()
	img, err := BuildBootDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	com1 := filepath.Join(dir, "com1.log")
	cmd := exec.Command(bin, "-accel", "tcg", "-m", "32", "-nodefaults", "-display", "none",
		"-drive", "file="+img+",if=ide,index=0,media=disk,format=raw", "-serial", "file:"+com1, "-boot", "c")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		b, _ := os.ReadFile(com1)
		if strings.Contains(string(b), BootMBRLine) && strings.Contains(string(b), BootSector2) {
			return
		}
		if strings.Contains(string(b), "FAILED") || time.Now().After(deadline) {
			t.Fatalf("COM1: %q", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
