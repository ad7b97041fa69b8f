package block

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

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

// BenchmarkIO runs godm and its floor alternately, in chunks of 1024
// operations, on the same file, so that both see the same machine load
// (the benchmark machine is shared); it reports each one's ns/op and
// their throughput ratio (floor time / godm time: 1 = as fast as the
// floor).
func BenchmarkIO(b *testing.B) {
	for _, format := range []string{"raw", "qcow2"} {
		path := benchImage(b, format)
		for _, pattern := range []string{"seq", "rand"} {
			offs := offsets(pattern == "rand")
			for _, op := range []Op{OpRead, OpWrite} {
				for _, depth := range []int{1, 32} {
					name := fmt.Sprintf("%s/%s%s/qd%d", format, pattern, map[Op]string{OpRead: "read", OpWrite: "write"}[op], depth)
					b.Run(name, func(b *testing.B) { benchPair(b, path, format, op, depth, offs) })
				}
			}
		}
	}
}

const chunk = 1024

func benchPair(b *testing.B, path, format string, op Op, depth int, offs []int64) {
	d, err := Open(path, Options{Format: format})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	g := newGodmRunner(d, op, depth, offs)
	defer g.q.Close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	fl := &floorRunner{fd: int(f.Fd()), op: op, threads: min(depth, 2), offs: offs, shift: floorShift(format)}
	g.run(b, chunk) // warm up both
	fl.run(chunk)
	var tg, tf time.Duration
	allocs := testing.AllocsPerRun(1, func() { g.run(b, chunk) })
	b.SetBytes(4096)
	b.ResetTimer()
	for done := 0; done < b.N; done += chunk {
		k := min(chunk, b.N-done)
		t0 := time.Now()
		g.run(b, k)
		t1 := time.Now()
		fl.run(k)
		tf += time.Since(t1)
		tg += t1.Sub(t0)
	}
	b.StopTimer()
	b.ReportMetric(float64(tg.Nanoseconds())/float64(b.N), "godm-ns/op")
	b.ReportMetric(float64(tf.Nanoseconds())/float64(b.N), "floor-ns/op")
	b.ReportMetric(float64(tf)/float64(tg), "ratio")
	b.ReportMetric(allocs/chunk, "godm-allocs/op")
}

type godmRunner struct {
	q    *Queue
	reqs []Request
	done chan *Request
	offs []int64
	next int
}

func newGodmRunner(d *Drive, op Op, depth int, offs []int64) *godmRunner {
	g := &godmRunner{q: NewQueue(d, depth, min(depth, 2)), reqs: make([]Request, depth), done: make(chan *Request, depth), offs: offs}
	for i := range g.reqs {
		g.reqs[i] = Request{Op: op, Bufs: [][]byte{alignedBuf(4096, 4096)}, Done: func(r *Request) { g.done <- r }}
	}
	return g
}

// run performs n operations keeping up to depth in flight.
func (g *godmRunner) run(b *testing.B, n int) {
	submitted := 0
	submit := func(r *Request) {
		r.Off = g.offs[g.next%len(g.offs)]
		g.next++
		submitted++
		if err := g.q.Submit(r); err != nil {
			b.Fatal(err)
		}
	}
	for i := range min(len(g.reqs), n) {
		submit(&g.reqs[i])
	}
	for completed := 0; completed < n; completed++ {
		r := <-g.done
		if r.Err != nil {
			b.Fatal(r.Err)
		}
		if submitted < n {
			submit(r)
		}
	}
}

type floorRunner struct {
	fd      int
	op      Op
	threads int
	offs    []int64
	shift   int64
	next    int
	bufs    [2][]byte
}

// run performs n plain pread/pwrite calls on threads goroutines.
func (f *floorRunner) run(n int) {
	var wg sync.WaitGroup
	base := f.next
	f.next += n
	for t := range f.threads {
		if f.bufs[t] == nil {
			f.bufs[t] = alignedBuf(4096, 4096)
		}
		wg.Add(1)
		go func(t int) {
			defer wg.Done()
			buf := f.bufs[t]
			var err error
			for i := t; i < n; i += f.threads {
				off := f.offs[(base+i)%len(f.offs)] + f.shift
				if f.op == OpRead {
					_, err = unix.Pread(f.fd, buf, off)
				} else {
					_, err = unix.Pwrite(f.fd, buf, off)
				}
				if err != nil {
					panic(err)
				}
			}
		}(t)
	}
	wg.Wait()
}
