package memory

import (
	"bytes"
	"errors"
	"slices"
	"sync"
	"testing"
)

type run struct{ gfn, n uint64 }

func collect(l *DirtyLog) ([]run, uint64) {
	var out []run
	beyond := l.Collect(func(g, n uint64) { out = append(out, run{g, n}) })
	return out, beyond
}

func newLog(t testing.TB, limit GPA) *DirtyLog {
	t.Helper()
	l, err := NewDirtyLog(limit)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestDirtyLog_Mark(t *testing.T) {
	for _, tc := range []struct {
		name   string
		marks  [][2]uint64 // gpa, n
		want   []run
		beyond uint64
	}{
		{"nothing", nil, nil, 0},
		{"empty write", [][2]uint64{{0x5000, 0}}, nil, 0},
		{"one byte", [][2]uint64{{0x5fff, 1}}, []run{{5, 1}}, 0},
		{"straddles a page", [][2]uint64{{0x5fff, 2}}, []run{{5, 2}}, 0},
		{"whole pages", [][2]uint64{{0x3000, 0x3000}}, []run{{3, 3}}, 0},
		{"two runs", [][2]uint64{{0x1000, 8}, {0x3000, 8}}, []run{{1, 1}, {3, 1}}, 0},
		{"adjacent writes merge", [][2]uint64{{0x1000, 8}, {0x2000, 8}}, []run{{1, 2}}, 0},
		{"across words", [][2]uint64{{62 * PageSize, 4 * PageSize}}, []run{{62, 4}}, 0},
		{"full words", [][2]uint64{{0, 200 * PageSize}}, []run{{0, 200}}, 0},
		{"runs merge across words", [][2]uint64{{63 * PageSize, 1}, {64 * PageSize, 1}}, []run{{63, 2}}, 0},
		{"last page", [][2]uint64{{255 * PageSize, PageSize}}, []run{{255, 1}}, 0},
		{"partly beyond", [][2]uint64{{255 * PageSize, 2 * PageSize}}, []run{{255, 1}}, 1},
		{"wholly beyond", [][2]uint64{{256 * PageSize, 1}, {1 << 40, 8}}, nil, 2},
		{"wraps", [][2]uint64{{^uint64(0) - 3, 8}}, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLog(t, 256*PageSize)
			for _, m := range tc.marks {
				l.Mark(GPA(m[0]), m[1])
			}
			got, beyond := collect(l)
			if !slices.Equal(got, tc.want) || beyond != tc.beyond {
				t.Errorf("Collect = %v, beyond %d; want %v, %d", got, beyond, tc.want, tc.beyond)
			}
			if got, beyond := collect(l); len(got) != 0 || beyond != 0 {
				t.Errorf("second Collect = %v, beyond %d; want nothing (Collect clears)", got, beyond)
			}
		})
	}
}

func TestDirtyLog_Limits(t *testing.T) {
	for _, limit := range []GPA{0, 1<<52 + 1, ^GPA(0)} {
		if _, err := NewDirtyLog(limit); err == nil {
			t.Errorf("NewDirtyLog(%#x) succeeded", uint64(limit))
		}
	}
	l := newLog(t, 1)
	if l.Pages() != 1 {
		t.Errorf("Pages = %d, want 1 (rounded up)", l.Pages())
	}
	var nilLog *DirtyLog
	nilLog.Mark(0, 8) // no log: nothing to record, and no crash
	if l.Dirty(1 << 40) {
		t.Error("Dirty beyond the log = true")
	}
}

// TestDirtyLog_SetEnabled: a log switched off records nothing (neither
// pages nor writes beyond it), keeps what it had, and records again once
// switched back on.
func TestDirtyLog_SetEnabled(t *testing.T) {
	l := newLog(t, 16*PageSize)
	if !l.Enabled() {
		t.Fatal("a new log is off")
	}
	l.Mark(1*PageSize, 1)
	l.SetEnabled(false)
	if l.Enabled() {
		t.Fatal("Enabled after SetEnabled(false)")
	}
	l.Mark(3*PageSize, 1)
	l.Mark(1<<40, 1)
	if got, beyond := collect(l); !slices.Equal(got, []run{{1, 1}}) || beyond != 0 {
		t.Errorf("off: Collect = %v, beyond %d; want [{1 1}] (marked before), 0", got, beyond)
	}
	l.SetEnabled(true)
	l.Mark(5*PageSize, PageSize+1)
	if got, _ := collect(l); !slices.Equal(got, []run{{5, 2}}) {
		t.Errorf("on again: Collect = %v, want [{5 2}]", got)
	}
}

// TestDirtyLog_ConcurrentCollect marks pages from several goroutines while
// another collects: every marked page is reported exactly once or more,
// none is lost.
func TestDirtyLog_ConcurrentCollect(t *testing.T) {
	const pages = 4096
	l := newLog(t, pages*PageSize)
	seen := make([]bool, pages)
	var mu sync.Mutex
	record := func(g, n uint64) {
		mu.Lock()
		for i := g; i < g+n; i++ {
			seen[i] = true
		}
		mu.Unlock()
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				l.Collect(record)
			}
		}
	}()
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := uint64(w); g < pages; g += 4 {
				l.Mark(GPA(g*PageSize+g%PageSize), 1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-done
	l.Collect(record)
	for g, ok := range seen {
		if !ok {
			t.Fatalf("gfn %d was marked but never collected", g)
		}
	}
}

// TestDirtyLog_EveryWritePath writes through every API that writes guest
// memory and checks that each write, and only writes, reached the log.
func TestDirtyLog_EveryWritePath(t *testing.T) {
	const size = 512 << 10
	mem := pattern(size)
	log := newLog(t, size)
	c, err := NewMapCache(FromBytes(mem), MapCacheConfig{BucketShift: 14, MaxBytes: 16 << 14, Ways: 2, Dirty: log})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.DirtyLog() != log {
		t.Fatal("DirtyLog() is not the configured log")
	}
	expect := func(what string, want ...run) {
		t.Helper()
		got, beyond := collect(log)
		if !slices.Equal(got, want) || beyond != 0 {
			t.Errorf("%s: dirty %v (beyond %d), want %v", what, got, beyond, want)
		}
	}
	buf := make([]byte, 3*PageSize)

	// Reads mark nothing.
	if err := c.Read(0x1000, buf); err != nil {
		t.Fatal(err)
	}
	r, err := c.Pin(0x20000, 3*PageSize)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadAt(buf[:16], 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Load16(0); err != nil {
		t.Fatal(err)
	}
	_ = r.Segments()
	expect("reads")

	// MapCache.Write, across a bucket boundary (16 KiB buckets).
	copy(buf, "dirt")
	if err := c.Write(0x3ffe, buf[:4]); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mem[0x3ffe:0x4002], []byte("dirt")) {
		t.Error("Write did not land in guest memory")
	}
	expect("Write across buckets", run{3, 2})
	// A write that fails at a hole marks what it wrote before the hole.
	fm := FromBytes(mem)
	c2, err := NewMapCache(fm, MapCacheConfig{BucketShift: 12, MaxBytes: 16 << 12, Ways: 2, Dirty: log})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	fm.SetHole(9, true, nil)
	if err := c2.Write(0x7000, buf[:2*PageSize+8]); !errors.Is(err, ErrUnmapped) {
		t.Fatalf("write into a hole = %v", err)
	}
	expect("Write stopped by a hole", run{7, 2})

	// Region.WriteAt.
	if n, err := r.WriteAt(buf[:10], PageSize-2); n != 10 || err != nil {
		t.Fatalf("WriteAt = %d, %v", n, err)
	}
	expect("WriteAt", run{0x20, 2})
	// Atomic stores.
	if err := r.Store16(2*PageSize+2, 7); err != nil {
		t.Fatal(err)
	}
	expect("Store16", run{0x22, 1})
	if err := r.Store32(PageSize, 7); err != nil {
		t.Fatal(err)
	}
	expect("Store32", run{0x21, 1})
	if err := r.Store64(0, 7); err != nil {
		t.Fatal(err)
	}
	expect("Store64", run{0x20, 1})
	// WritableSegments: MarkDirty reports, Release is the backstop.
	segs := r.WritableSegments()
	segs[0][PageSize+5] = 1
	r.MarkDirty(PageSize+5, 1)
	r.MarkDirty(-1, 5)         // ignored
	r.MarkDirty(3*PageSize, 5) // ignored: beyond the region
	expect("MarkDirty", run{0x21, 1})
	r.Release()
	expect("Release after WritableSegments", run{0x20, 3})

	// A region never written is not marked at Release.
	r2, err := c.Pin(0x30000, 8)
	if err != nil {
		t.Fatal(err)
	}
	r2.Release()
	expect("Release of a read-only region")

	// Flat.
	f := NewFlat(0x60000, 4*PageSize)
	f.Dirty = log
	if err := f.Write(0x61ff8, buf[:16]); err != nil {
		t.Fatal(err)
	}
	if err := f.Read(0x60000, buf[:16]); err != nil {
		t.Fatal(err)
	}
	expect("Flat", run{0x61, 2})
}

// TestDirtyLog_ZeroAlloc: marking (through writes) and collecting do not
// allocate.
func TestDirtyLog_ZeroAlloc(t *testing.T) {
	log := newLog(t, 8<<20)
	c, err := NewMapCache(FromBytes(pattern(8<<20)), MapCacheConfig{Dirty: log})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Pin(0x10000, PageSize)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	buf := make([]byte, 64)
	var pages uint64
	visit := func(_, n uint64) { pages += n }
	for name, f := range map[string]func(){
		"Write":   func() { _ = c.Write(0x2000, buf) },
		"WriteAt": func() { _, _ = r.WriteAt(buf, 8) },
		"Store16": func() { _ = r.Store16(2, 1) },
		"Load16":  func() { _, _ = r.Load16(2) },
		"Store32": func() { _ = r.Store32(4, 1) },
		"Store64": func() { _ = r.Store64(8, 1) },
		"Load64":  func() { _, _ = r.Load64(8) },
		"Collect": func() { log.Mark(0x5000, 1); log.Collect(visit) },
		"errors":  func() { _, _ = r.Load32(2); _ = r.Store16(PageSize, 1) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocs/op, want 0", name, n)
		}
	}
	if pages == 0 {
		t.Error("Collect never reported the marked page")
	}
}

func BenchmarkDirtyLog(b *testing.B) {
	log, err := NewDirtyLog(1 << 30)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("mark/clean", func(b *testing.B) {
		b.ReportAllocs()
		var g uint64
		for b.Loop() {
			log.Mark(GPA(g*PageSize), 8)
			g = (g + 1) % log.Pages()
		}
	})
	b.Run("mark/already-dirty", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			log.Mark(0x5000, 8)
		}
	})
	b.Run("mark/off", func(b *testing.B) {
		b.ReportAllocs()
		log.SetEnabled(false)
		defer log.SetEnabled(true)
		for b.Loop() {
			log.Mark(0x5000, 8)
		}
	})
	b.Run("mark/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				log.Mark(0x5000, 8)
			}
		})
	})
	b.Run("collect/1GiB-sparse", func(b *testing.B) {
		b.ReportAllocs()
		var n uint64
		for b.Loop() {
			for g := uint64(0); g < log.Pages(); g += 4099 {
				log.Mark(GPA(g*PageSize), 1)
			}
			log.Collect(func(_, k uint64) { n += k })
		}
		if n == 0 {
			b.Fatal("nothing collected")
		}
	})
}
