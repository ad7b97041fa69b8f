package block

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// Benchmarks: 4 KiB reads and writes, sequential and random, on raw and
// on qcow2 (every cluster allocated: the steady state of a used disk),
// through the Queue at depth 1 and 32, each next to its floor: plain
// pread/pwrite on the same file at the same offsets with the same
// concurrency, in the same run. Cache mode writeback (the page cache: the
// floor measures the same path the kernel offers).
const benchSize = 64 << 20

func benchImage(b *testing.B, format string) string {
	b.Helper()
	dir := b.TempDir()
	p := filepath.Join(dir, "b."+format)
	if format == "raw" {
		if err := os.WriteFile(p, make([]byte, benchSize), 0o644); err != nil {
			b.Fatal(err)
		}
		return p
	}
	if err := os.WriteFile(p, tinyQcow2(benchSize, 16, 3), 0o644); err != nil {
		b.Fatal(err)
	}
	d, err := Open(p, Options{Format: "qcow2", Cache: CacheUnsafe})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < benchSize; off += int64(len(buf)) {
		if err := d.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
	d.Close()
	// The floor writes the same offsets shifted past the metadata (the
	// header, tables and the one L2 table lie in the first 6 clusters):
	// extend the file so that the shifted range lies inside it.
	if err := os.Truncate(p, benchSize+2<<20); err != nil {
		b.Fatal(err)
	}
	return p
}

// floorShift is where the floor's offsets start in the file.
func floorShift(format string) int64 {
	if format == "qcow2" {
		return 1 << 20
	}
	return 0
}

func offsets(random bool) []int64 {
	offs := make([]int64, 4096)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range offs {
		if random {
			offs[i] = r.Int64N(benchSize/4096) * 4096
		} else {
			offs[i] = int64(i) * 4096 % benchSize
		}
	}
	return offs
}

func BenchmarkIO(b *testing.B) {
	for _, format := range []string{"raw", "qcow2"} {
		path := benchImage(b, format)
		for _, pattern := range []string{"seq", "rand"} {
			offs := offsets(pattern == "rand")
			for _, op := range []Op{OpRead, OpWrite} {
				for _, depth := range []int{1, 32} {
					name := fmt.Sprintf("%s/%s%s/qd%d", format, pattern, map[Op]string{OpRead: "read", OpWrite: "write"}[op], depth)
					b.Run(name+"/godm", func(b *testing.B) { benchGodm(b, path, format, op, depth, offs) })
					b.Run(name+"/floor", func(b *testing.B) { benchFloor(b, path, op, depth, offs, floorShift(format)) })
				}
			}
		}
	}
}

func benchGodm(b *testing.B, path, format string, op Op, depth int, offs []int64) {
	d, err := Open(path, Options{Format: format})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	workers := min(depth, 2) // the benchmark machine has 2 cores
	q := NewQueue(d, depth, workers)
	defer q.Close()
	done := make(chan *Request, depth)
	reqs := make([]Request, depth)
	for i := range reqs {
		reqs[i] = Request{Op: op, Bufs: [][]byte{alignedBuf(4096, 4096)}, Done: func(r *Request) { done <- r }}
	}
	b.SetBytes(4096)
	b.ReportAllocs()
	b.ResetTimer()
	next := 0
	inflight := 0
	submit := func(r *Request) {
		r.Off = offs[next%len(offs)]
		next++
		if err := q.Submit(r); err != nil {
			b.Fatal(err)
		}
		inflight++
	}
	for i := range min(depth, b.N) {
		submit(&reqs[i])
	}
	for completed := 0; completed < b.N; completed++ {
		r := <-done
		inflight--
		if r.Err != nil {
			b.Fatal(r.Err)
		}
		if next < b.N {
			submit(r)
		}
	}
}

func benchFloor(b *testing.B, path string, op Op, depth int, offs []int64, shift int64) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	threads := min(depth, 2)
	b.SetBytes(4096)
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N / threads
	for t := range threads {
		n := per
		if t == 0 {
			n += b.N % threads
		}
		wg.Add(1)
		go func(t, n int) {
			defer wg.Done()
			buf := alignedBuf(4096, 4096)
			for i := range n {
				off := offs[(i*threads+t)%len(offs)] + shift
				if op == OpRead {
					_, err = unix.Pread(fd, buf, off)
				} else {
					_, err = unix.Pwrite(fd, buf, off)
				}
				if err != nil {
					panic(err)
				}
			}
		}(t, n)
	}
	wg.Wait()
}
