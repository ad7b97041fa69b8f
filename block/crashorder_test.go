package block

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// journal records a host file's writes and flushes in order (hostFile's
// crash-test hook).
type journal struct {
	mu  sync.Mutex
	ops []journalOp
}

// journalOp is one write (data at off) or, with data nil, a flush.
type journalOp struct {
	off  int64
	data []byte
}

func (j *journal) wrote(p []byte, off int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.ops = append(j.ops, journalOp{off: off, data: append([]byte(nil), p...)})
}

func (j *journal) flushed() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.ops = append(j.ops, journalOp{})
}

// apply writes op onto img (growing it as the file would grow).
func (op journalOp) apply(img []byte) []byte {
	if end := op.off + int64(len(op.data)); end > int64(len(img)) {
		img = append(img, make([]byte, end-int64(len(img)))...)
	}
	copy(img[op.off:], op.data)
	return img
}

// crashWorkload drives d as a guest does: allocating writes of any size
// (partial clusters copy the rest from the backing file), writes spread
// over the disk (new L2 tables, refcount blocks and, with small clusters
// and wide refcounts, a growing refcount table), rewrites of allocated
// clusters, zeroing with and without unmap, discards and flushes.
func crashWorkload(t *testing.T, d *Drive, r *rand.Rand, n int) {
	t.Helper()
	size := d.Info().Size
	buf := make([]byte, 40000)
	for i := range n {
		off := r.Int64N(size - int64(len(buf)))
		if r.IntN(4) == 0 {
			off = r.Int64N(size/8) &^ 511 // the hot, already allocated part
		}
		k := 1 + r.Int64N(int64(len(buf)))
		var err error
		switch x := r.IntN(20); {
		case x < 14:
			for j := range buf[:k] {
				buf[j] = byte(i + 1)
			}
			err = d.WriteAt(buf[:k], off)
		case x < 16:
			err = d.WriteZeroes(off, k, x == 15)
		case x < 18:
			err = d.Discard(off, k)
		default:
			err = d.Flush()
		}
		if err != nil {
			t.Fatalf("op %d at %#x+%d: %v", i, off, k, err)
		}
	}
}

// checkImage runs qemu-img check on img: leaks (exit 3) are fine,
// anything else is reported with the crash point.
func checkImage(t *testing.T, path, what string) bool {
	t.Helper()
	out, err := exec.Command("qemu-img", "check", "-f", "qcow2", path).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if code == 0 || code == 3 {
		return true
	}
	t.Errorf("%s: qemu-img check: exit %d\n%s", what, code, out)
	return false
}

// TestCrashOrdering checks the qcow2 metadata write order against a crash
// at any write: a workload runs through godm on an image qemu-img created
// (over a raw backing file), its writes and its barriers and flushes
// recorded in order; then for many points k the image as the disk would
// hold it is rebuilt and qemu-img check must find no corruption (leaked
// clusters allowed). Two crash models: the first k writes reached the
// disk (a crash between two writes), and, closer to a real write cache,
// everything before the last flush before k plus any subset of the
// writes after it (the disk may have written those in any order). For
// some points godm must also open the image and read what QEMU reads.
func TestCrashOrdering(t *testing.T) {
	needQemuImg(t)
	if testing.Short() {
		t.Skip("-short: the crash-ordering test runs qemu-img check some 300 times")
	}
	cases := []struct {
		name, opts string
		ops        int
		compressed bool // the image is the backing file's data compressed (qemu-img convert -c), no backing file
	}{
		{"512-byte clusters, 64-bit refcounts (the refcount table grows)", "cluster_size=512,refcount_bits=64", 120, false},
		{"4 KiB clusters, v2 image", "compat=0.10,cluster_size=4096", 100, false},
		{"extended L2, 16 KiB clusters", "extended_l2=on,cluster_size=16384", 100, false},
		{"64 KiB clusters, 1-bit refcounts", "cluster_size=65536,refcount_bits=1", 60, false},
		{"compressed clusters rewritten (inflate, free shared host clusters)", "cluster_size=4096", 80, true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			randomRaw(t, filepath.Join(dir, "base.raw"), 4<<20, uint64(i))
			img := filepath.Join(dir, "c.qcow2")
			if c.compressed {
				// Compressible data (a text-like pattern with some
				// noise), so that qemu-img stores compressed clusters.
				b := make([]byte, 4<<20)
				rr := rand.New(rand.NewPCG(uint64(i), 1))
				for x := range b {
					b[x] = "godm crash ordering "[x%20]
					if rr.IntN(64) == 0 {
						b[x] = byte(rr.Uint32())
					}
				}
				if err := os.WriteFile(filepath.Join(dir, "base.raw"), b, 0o600); err != nil {
					t.Fatal(err)
				}
				qemu(t, "qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", c.opts, filepath.Join(dir, "base.raw"), img)
				if out := qemu(t, "qemu-img", "check", img); !strings.Contains(out, "compressed clusters") || strings.Contains(out, " 0.00% compressed") {
					t.Fatalf("qemu-img stored no compressed clusters:\n%s", out)
				}
			} else {
				qemu(t, "qemu-img", "create", "-f", "qcow2", "-o", c.opts, "-b", "base.raw", "-F", "raw", img, "16M")
			}
			// cache=unsafe: no fdatasync (slow on a shared disk); the
			// journal still sees every barrier and flush the image
			// asks for, which is what a write-back cache orders by.
			d, err := Open(img, Options{Format: "qcow2", Cache: CacheUnsafe})
			if err != nil {
				t.Fatal(err)
			}
			orig, err := os.ReadFile(img) // after whatever Open wrote
			if err != nil {
				t.Fatal(err)
			}
			j := &journal{}
			d.h.journal = j
			crashWorkload(t, d, rand.New(rand.NewPCG(uint64(i), 0xc4a5)), c.ops)
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			checkImage(t, img, "after the whole workload")
			final, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			// The journal replayed in full is the file godm left.
			all := append([]byte(nil), orig...)
			writes := 0
			for _, op := range j.ops {
				if op.data != nil {
					all = op.apply(all)
					writes++
				}
			}
			if len(all) < len(final) || firstDiff(all[:len(final)], final) >= 0 {
				t.Fatal("the journal does not rebuild the image godm wrote")
			}
			t.Logf("%d writes, %d flushes", writes, len(j.ops)-writes)

			r := rand.New(rand.NewPCG(uint64(i), 0x5e7))
			crash := filepath.Join(dir, "crash.qcow2")
			bad := 0
			try := func(b []byte, what string, read bool) {
				if err := os.WriteFile(crash, b, 0o600); err != nil {
					t.Fatal(err)
				}
				if !checkImage(t, crash, what) {
					bad++
					if bad > 3 {
						t.FailNow()
					}
					return
				}
				if read {
					sameBytes(t, what+": godm's read", godmRead(t, crash, Options{Format: "qcow2", ReadOnly: true}), qemuRaw(t, crash, "qcow2"))
				}
			}
			// About 40 points per model (qemu-img check takes tens of
			// milliseconds of CPU), or GODM_CRASH_POINTS: a stride
			// with a phase from the seed.
			points := 40
			if v, err := strconv.Atoi(os.Getenv("GODM_CRASH_POINTS")); err == nil && v > 0 {
				points = v
			}
			stride := max(1, len(j.ops)/points)
			phase := r.IntN(stride)
			img0 := append([]byte(nil), orig...)
			lastFlush := 0 // ops before it are durable
			for k := 0; k <= len(j.ops); k++ {
				if k > 0 {
					if op := j.ops[k-1]; op.data != nil {
						img0 = op.apply(img0)
					} else {
						lastFlush = k
					}
				}
				if k%stride != phase && k != len(j.ops) {
					continue
				}
				try(append([]byte(nil), img0...), fmt.Sprintf("crash after op %d of %d (prefix)", k, len(j.ops)), k%(10*stride) == phase)
				// The write cache's view: durable up to the last
				// flush, then any subset of the writes since.
				if k-lastFlush > 1 {
					b := append([]byte(nil), orig...)
					for _, op := range j.ops[:lastFlush] {
						if op.data != nil {
							b = op.apply(b)
						}
					}
					var kept []int
					for x, op := range j.ops[lastFlush:k] {
						if op.data != nil && r.IntN(2) == 0 {
							b = op.apply(b)
							kept = append(kept, lastFlush+x)
						}
					}
					try(b, fmt.Sprintf("crash after op %d, durable up to the flush at %d, then only ops %v", k, lastFlush, kept), false)
				}
			}
		})
	}
}
