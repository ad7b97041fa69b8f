package block

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// The crash child: writes (allocating, partial-cluster, zeroing) to the
// image in GODM_BLOCK_CRASH_IMAGE until it is killed.
func TestCrashChild(t *testing.T) {
	img := os.Getenv("GODM_BLOCK_CRASH_IMAGE")
	if img == "" {
		t.Skip("only runs as the crash test's child process")
	}
	cache, _ := ParseCache(os.Getenv("GODM_BLOCK_CRASH_CACHE"))
	seed, _ := strconv.ParseUint(os.Getenv("GODM_BLOCK_CRASH_SEED"), 10, 64)
	d, err := Open(img, Options{Format: "qcow2", Cache: cache})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	r := rand.New(rand.NewPCG(seed, 9))
	buf := make([]byte, 70000)
	size := d.Info().Size
	for i := 0; ; i++ {
		off := r.Int64N(size - int64(len(buf)))
		n := 1 + r.Int64N(int64(len(buf)))
		for j := range buf[:n] {
			buf[j] = byte(i)
		}
		if r.IntN(8) == 0 {
			err = d.WriteZeroes(off, n, true)
		} else {
			err = d.WriteAt(buf[:n], off)
		}
		if err != nil {
			fmt.Println("write:", err)
			os.Exit(1)
		}
		if i == 20 {
			fmt.Println("ready")
		}
	}
}

// Kill a godm writer with SIGKILL at a random point of its write loop;
// qemu-img check must find no corruption (leaks allowed), and the image
// must still open and read through godm.
func TestCrashConsistency(t *testing.T) {
	needQemuImg(t)
	if testing.Short() {
		t.Skip("-short: the crash test runs child processes for a few seconds")
	}
	cases := []struct {
		opts  string
		cache string
	}{
		{"cluster_size=4096", "unsafe"},
		{"cluster_size=512", "unsafe"},
		{"compat=0.10,cluster_size=8192", "unsafe"},
		{"cluster_size=65536", "writeback"},
		{"cluster_size=4096,refcount_bits=2", "unsafe"},
		{"cluster_size=512,refcount_bits=64", "unsafe"}, // the refcount table grows
		{"extended_l2=on,cluster_size=32768", "unsafe"},
	}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	for i, c := range cases {
		dir := t.TempDir()
		base := filepath.Join(dir, "base.raw")
		randomRaw(t, base, 4<<20, uint64(i))
		img := filepath.Join(dir, "c.qcow2")
		qemu(t, "qemu-img", "create", "-f", "qcow2", "-o", c.opts, "-b", "base.raw", "-F", "raw", img, "4M")
		seed := r.Uint64()
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "GODM_BLOCK_CRASH_IMAGE="+img, "GODM_BLOCK_CRASH_CACHE="+c.cache, "GODM_BLOCK_CRASH_SEED="+strconv.FormatUint(seed, 10))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan string, 1)
		go func() {
			s := bufio.NewScanner(out)
			for s.Scan() {
				if s.Text() == "ready" {
					ready <- "ready"
					return
				}
				ready <- s.Text()
				return
			}
			ready <- "eof"
		}()
		select {
		case m := <-ready:
			if m != "ready" {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("%s: child said %q", c.opts, m)
			}
		case <-time.After(2 * time.Minute):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("%s: child not ready in 2 minutes", c.opts)
		}
		time.Sleep(time.Duration(r.IntN(300)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		t.Logf("%s cache=%s seed %d: killed", c.opts, c.cache, seed)
		qemuCheck(t, img, true)
		// The data godm reads is what QEMU reads.
		sameBytes(t, c.opts+" after the crash", godmRead(t, img, Options{Format: "qcow2", ReadOnly: true}), qemuRaw(t, img, "qcow2"))
	}
}
