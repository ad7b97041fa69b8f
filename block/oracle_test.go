package block

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// Images qemu-img writes, with each feature, read identically through
// godm (the oracle: qemu-img convert -O raw of the same image).
func TestQemuImagesReadIdentically(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	randomRaw(t, src, 3<<20+7<<9, 1)
	cases := []struct{ name, opts string }{
		{"v2-64k", "compat=0.10"},
		{"v3-512", "compat=1.1,cluster_size=512"},
		{"v3-4k-refcount1", "cluster_size=4096,refcount_bits=1"},
		{"v3-64k-refcount64", "refcount_bits=64"},
		{"v3-2M", "cluster_size=2M"},
		{"v2-512", "compat=0.10,cluster_size=512"},
		{"v3-extl2-64k", "extended_l2=on"},
		{"v3-extl2-2M", "extended_l2=on,cluster_size=2M"},
	}
	for _, c := range cases {
		for _, compress := range []bool{false, true} {
			name := c.name
			args := []string{"convert", "-f", "raw", "-O", "qcow2", "-o", c.opts}
			if compress {
				name += "-compressed"
				args = append(args, "-c")
			}
			t.Run(name, func(t *testing.T) {
				img := filepath.Join(t.TempDir(), "i.qcow2")
				qemu(t, "qemu-img", append(args, src, img)...)
				if c.opts != "compat=0.10" && c.opts != "compat=0.10,cluster_size=512" {
					// v3 zero clusters, plain and over an allocated cluster.
					qemu(t, "qemu-io", "-f", "qcow2", "-c", "write -z 0 1M", "-c", "write -z 2M 64k", "-c", "write -P 0x5a 1536 5000", img)
				}
				sameBytes(t, name, godmRead(t, img, Options{Format: "qcow2", ReadOnly: true}), qemuRaw(t, img, "qcow2"))
			})
		}
	}
}

// A backing chain (raw ← qcow2 ← qcow2 with subclusters) with partial
// writes at each level reads as qemu-img reads it.
func TestQemuBackingChainReads(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	randomRaw(t, base, 2<<20, 2)
	mid := filepath.Join(dir, "mid.qcow2")
	top := filepath.Join(dir, "top.qcow2")
	qemu(t, "qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=4096", "-b", "base.raw", "-F", "raw", mid, "3M")
	qemu(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x11 1000 3000", "-c", "write -P 0x22 1M 8k", "-c", "write -z 64k 4k", "-c", "write -P 0x33 2100k 4k", mid)
	qemu(t, "qemu-img", "create", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=65536", "-b", "mid.qcow2", "-F", "qcow2", top, "3M")
	qemu(t, "qemu-io", "-f", "qcow2", "-c", "write -P 0x44 4k 2k", "-c", "write -z 128k 2048", "-c", "write -P 0x55 1M 512", "-c", "write -P 0x66 2M 100k", top)
	sameBytes(t, "top", godmRead(t, top, Options{Format: "qcow2", ReadOnly: true}), qemuRaw(t, top, "qcow2"))
	sameBytes(t, "mid", godmRead(t, mid, Options{Format: "qcow2", ReadOnly: true}), qemuRaw(t, mid, "qcow2"))
	// godm writes over QEMU's partially allocated subclusters (and zero
	// ones, and the backing data), qemu-img checks and reads the result.
	model := qemuRaw(t, top, "qcow2")
	d, err := Open(top, Options{Format: "qcow2"})
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range [][2]int64{{4096 + 100, 300}, {5000, 3000}, {128<<10 + 10, 100}, {1<<20 - 7, 20}, {2<<20 + 50<<10, 70 << 10}, {3<<20 - 2000, 2000}} {
		buf := make([]byte, w[1])
		for j := range buf {
			buf[j] = byte(i*31 + j)
		}
		if err := d.WriteAt(buf, w[0]); err != nil {
			t.Fatalf("write %#x+%d: %v", w[0], w[1], err)
		}
		copy(model[w[0]:], buf)
	}
	if err := d.WriteZeroes(192<<10, 64<<10, true); err != nil {
		t.Fatal(err)
	}
	clear(model[192<<10 : 256<<10])
	d.Close()
	qemuCheck(t, top, false)
	sameBytes(t, "top after godm's writes", qemuRaw(t, top, "qcow2"), model)
}

// Images godm writes (v2 and v3, cluster sizes 512 B to 64 KiB, over a
// backing file or not, over compressed and zero clusters) pass qemu-img
// check and read back through qemu-img and qemu-io exactly as the
// in-memory model of the same writes says.
func TestGodmWritesPassQemuCheck(t *testing.T) {
	needQemuImg(t)
	for _, c := range []struct {
		name, opts string
		backing    bool
		compressed bool
	}{
		{"v3-64k", "compat=1.1", false, false},
		{"v2-64k", "compat=0.10", false, false},
		{"v3-512-unsafe", "cluster_size=512", false, false},
		{"v2-4k-backing", "compat=0.10,cluster_size=4096", true, false},
		{"v3-4k-backing", "cluster_size=4096", true, false},
		{"v3-64k-compressed", "compat=1.1", false, true},
		{"v3-4k-refcount1", "cluster_size=4096,refcount_bits=1", false, false},
		{"v3-8k-refcount64", "cluster_size=8192,refcount_bits=64", false, true},
		{"v3-extl2-64k-backing", "extended_l2=on", true, false},
		{"v3-extl2-16k", "extended_l2=on,cluster_size=16384", false, false},
		{"v3-extl2-32k-compressed", "extended_l2=on,cluster_size=32768", false, true},
		{"v3-lazy-refcounts", "lazy_refcounts=on,cluster_size=4096", true, false}, // written eagerly: never dirty
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			const size = 2 << 20
			img := filepath.Join(dir, "g.qcow2")
			var model []byte
			switch {
			case c.backing:
				base := filepath.Join(dir, "base.raw")
				model = randomRaw(t, base, size, 3)
				qemu(t, "qemu-img", "create", "-f", "qcow2", "-o", c.opts, "-b", "base.raw", "-F", "raw", img, fmt.Sprint(size))
			case c.compressed:
				src := filepath.Join(dir, "src.raw")
				model = randomRaw(t, src, size, 4)
				qemu(t, "qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", c.opts, src, img)
			default:
				model = make([]byte, size)
				qemu(t, "qemu-img", "create", "-f", "qcow2", "-o", c.opts, img, fmt.Sprint(size))
			}
			cache := CacheWriteback
			if c.name == "v3-512-unsafe" {
				cache = CacheUnsafe // 512-byte clusters: thousands of allocations, each with barriers under writeback
			}
			d, err := Open(img, Options{Format: "qcow2", Cache: cache})
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(5, 5))
			buf := make([]byte, 200<<10)
			for i := range 300 {
				off := r.Int64N(size - 1)
				n := 1 + r.Int64N(min(size-off, int64(len(buf)))-0)
				if r.IntN(4) == 0 {
					n = min(n, 4096)
				}
				switch op := r.IntN(10); {
				case op < 7:
					for j := range buf[:n] {
						buf[j] = byte(r.Uint32())
					}
					if err := d.WriteV([][]byte{buf[:n/2], buf[n/2 : n]}, off, i%16 == 0); err != nil {
						t.Fatalf("write %#x+%d: %v", off, n, err)
					}
					copy(model[off:], buf[:n])
				case op < 9:
					if err := d.WriteZeroes(off, n, op == 8); err != nil {
						t.Fatalf("write zeroes %#x+%d: %v", off, n, err)
					}
					clear(model[off : off+n])
				default:
					if err := d.Flush(); err != nil {
						t.Fatal(err)
					}
				}
			}
			got := make([]byte, size)
			if err := d.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			sameBytes(t, "godm read-back", got, model)
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			qemuCheck(t, img, false)
			sameBytes(t, "qemu-img convert", qemuRaw(t, img, "qcow2"), model)
			// qemu-io's own pattern check on one written range.
			d, err = Open(img, Options{Format: "qcow2"})
			if err != nil {
				t.Fatal(err)
			}
			pat := make([]byte, 12288)
			for i := range pat {
				pat[i] = 0xa7
			}
			if err := d.WriteAt(pat, 5000); err != nil {
				t.Fatal(err)
			}
			d.Close()
			out := qemu(t, "qemu-io", "-f", "qcow2", "-r", "-c", "read -P 0xa7 5000 12288", img)
			if want := "read 12288/12288 bytes"; !contains(out, want) || contains(out, "Pattern verification failed") {
				t.Fatalf("qemu-io: %s", out)
			}
			qemuCheck(t, img, false)
		})
	}
}

func contains(s, sub string) bool { return len(sub) == 0 || indexOf(s, sub) >= 0 }

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// Images that outgrow their refcount table (512-byte clusters: one table
// cluster covers 8 MiB at 16-bit refcounts, 2 MiB at 64-bit) get a larger
// table; qemu-img check accepts the result and reads the same data.
func TestRefcountTableGrowth(t *testing.T) {
	needQemuImg(t)
	for _, bits := range []string{"16", "64"} {
		img := filepath.Join(t.TempDir(), "g.qcow2")
		const size = 24 << 20
		qemu(t, "qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=512,refcount_bits="+bits, img, fmt.Sprint(size))
		d, err := Open(img, Options{Format: "qcow2", Cache: CacheUnsafe})
		if err != nil {
			t.Fatal(err)
		}
		model := make([]byte, size)
		r := rand.New(rand.NewPCG(7, 7))
		buf := make([]byte, 64<<10)
		for off := int64(0); off < size; off += int64(len(buf)) * 3 / 2 {
			for i := range buf {
				buf[i] = byte(r.Uint32())
			}
			n := min(int64(len(buf)), size-off)
			if err := d.WriteAt(buf[:n], off); err != nil {
				t.Fatalf("refcount_bits=%s write at %#x: %v", bits, off, err)
			}
			copy(model[off:], buf[:n])
		}
		q := d.img.(*qcow2Image)
		if q.hdr.rtClusters < 2 {
			t.Fatalf("refcount_bits=%s: table did not grow (%d clusters)", bits, q.hdr.rtClusters)
		}
		d.Close()
		qemuCheck(t, img, false)
		sameBytes(t, "refcount_bits="+bits, qemuRaw(t, img, "qcow2"), model)
	}
}
