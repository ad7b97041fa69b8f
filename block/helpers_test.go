package block

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// needQemuImg skips the test when Debian's qemu-utils is not installed
// (scripts/test-packages.txt lists it; CI installs it).
func needQemuImg(t testing.TB) {
	t.Helper()
	for _, p := range []string{"qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed (Debian qemu-utils): %v", p, err)
		}
	}
}

func qemu(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// qemuCheck runs qemu-img check; leaksOK accepts leaked clusters (exit 3)
// but never errors (exit 2) or anything else.
func qemuCheck(t testing.TB, path string, leaksOK bool) {
	t.Helper()
	out, err := exec.Command("qemu-img", "check", "-f", "qcow2", path).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code == 0 || (code == 3 && leaksOK) {
		return
	}
	t.Fatalf("qemu-img check %s: exit %d\n%s", filepath.Base(path), code, out)
}

// qemuRaw returns the guest contents of an image as qemu-img reads them.
func qemuRaw(t testing.TB, path, format string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "oracle.raw")
	qemu(t, "qemu-img", "convert", "-U", "-f", format, "-O", "raw", path, out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func godmRead(t testing.TB, path string, o Options) []byte {
	t.Helper()
	d, err := Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	b := make([]byte, d.Info().Size)
	// Odd-sized pieces cross cluster and subcluster boundaries.
	for off := int64(0); off < int64(len(b)); {
		n := min(int64(len(b))-off, 12345)
		if err := d.ReadAt(b[off:off+n], off); err != nil {
			t.Fatalf("read %#x+%d: %v", off, n, err)
		}
		off += n
	}
	return b
}

func sameBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d bytes, want %d", what, len(got), len(want))
	}
	if i := firstDiff(got, want); i >= 0 {
		t.Fatalf("%s: first difference at %#x: %#x, want %#x", what, i, got[i], want[i])
	}
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

// randomRaw writes a raw image of n bytes: random data with zero runs.
func randomRaw(t testing.TB, path string, n int, seed uint64) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for off := 0; off < n; {
		k := min(n-off, 1+r.IntN(96<<10))
		if r.IntN(3) != 0 {
			for i := off; i < off+k; i++ {
				b[i] = byte(r.Uint32())
			}
		}
		off += k
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// tinyQcow2 builds a valid, empty qcow2 image without qemu-img: header
// in cluster 0, L1 in 1, refcount table in 2, one refcount block in 3
// counting clusters 0-3.
func tinyQcow2(size uint64, cbits uint32, version uint32) []byte {
	cs := uint64(1) << cbits
	l2e := cs / 8
	l1 := (size + l2e*cs - 1) / (l2e * cs)
	img := make([]byte, 4*cs)
	be := binary.BigEndian
	be.PutUint32(img[0:], qcowMagic)
	be.PutUint32(img[4:], version)
	be.PutUint32(img[20:], cbits)
	be.PutUint64(img[24:], size)
	be.PutUint32(img[36:], uint32(l1))
	be.PutUint64(img[40:], cs)
	be.PutUint64(img[48:], 2*cs)
	be.PutUint32(img[56:], 1)
	if version == 3 {
		be.PutUint32(img[96:], 4)
		be.PutUint32(img[100:], qcowV3HeaderLen)
	}
	be.PutUint64(img[2*cs:], 3*cs)
	for i := range 4 {
		be.PutUint16(img[3*cs+uint64(i)*2:], 1)
	}
	return img
}

func execOut(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
