package block

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A raw drive on a block device (a loop device over a file): its size
// comes from the device, reads and writes (also O_DIRECT) reach the
// backing file, write-zeroes and discard go through fallocate on the
// device. Needs root and loop devices; skipped otherwise, saying which.
func TestBlockDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to attach a loop device")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup not installed")
	}
	f := filepath.Join(t.TempDir(), "loop.img")
	if err := os.WriteFile(f, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", f).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device available: %v %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "-d", dev).Run()
	for _, c := range []Cache{CacheWriteback, CacheNone} {
		d, err := Open(dev, Options{Format: "raw", Cache: c})
		if err != nil {
			t.Fatal(err)
		}
		if d.Info().Size != 4<<20 {
			t.Fatalf("size %d", d.Info().Size)
		}
		pat := alignedBuf(8192, 4096)
		for i := range pat {
			pat[i] = byte(i*5 + int(c))
		}
		if err := d.WriteV([][]byte{pat[:4096], pat[4096:]}, 1<<20, true); err != nil {
			t.Fatal(err)
		}
		ones := bytes.Repeat([]byte{0xff}, 65536)
		if err := d.WriteAt(ones, 2<<20); err != nil {
			t.Fatal(err)
		}
		if err := d.WriteZeroes(2<<20, 65536, false); err != nil {
			t.Fatal(err)
		}
		z := alignedBuf(65536, 4096)
		if err := d.ReadAt(z, 2<<20); err != nil || !bytes.Equal(z, make([]byte, 65536)) {
			t.Fatalf("cache=%v write zeroes: %v", c, err)
		}
		if err := d.Discard(3<<20, 65536); err != nil {
			t.Fatal(err)
		}
		got := alignedBuf(8192, 4096)
		if err := d.ReadAt(got, 1<<20); err != nil || !bytes.Equal(got, pat) {
			t.Fatalf("cache=%v read-back: %v", c, err)
		}
		if err := d.Flush(); err != nil {
			t.Fatal(err)
		}
		d.Close()
	}
	// The data reached the file behind the device.
	exec.Command("losetup", "-d", dev).Run()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8192 {
		if b[1<<20+i] != byte(i*5+int(CacheNone)) {
			t.Fatalf("file byte %#x: %#x", 1<<20+i, b[1<<20+i])
		}
	}
}
