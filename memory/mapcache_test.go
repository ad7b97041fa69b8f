package memory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
)

// pattern fills mem with a byte pattern that differs per page and offset.
func pattern(n int) []byte {
	mem := make([]byte, n)
	for i := range mem {
		mem[i] = byte(i) ^ byte(i>>12)*7
	}
	return mem
}

// small returns a cache of 16 KiB buckets (4 pages) holding at most
// buckets buckets in ways-way sets, over mapper.
func small(t testing.TB, m Mapper, buckets, ways int) *MapCache {
	t.Helper()
	c, err := NewMapCache(m, MapCacheConfig{BucketShift: 14, MaxBytes: uint64(buckets) << 14, Ways: ways})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewMapCache_Config(t *testing.T) {
	f := FromBytes(nil)
	for _, tc := range []struct {
		name    string
		cfg     MapCacheConfig
		wantErr bool
		size    uint64
		slots   int
	}{
		{"defaults", MapCacheConfig{}, false, 1 << 20, 32 << 10},
		{"small", MapCacheConfig{BucketShift: 12, MaxBytes: 1 << 20, Ways: 2}, false, 4096, 256},
		{"small buckets default bound", MapCacheConfig{BucketShift: 16}, false, 1 << 16, 32 << 10},
		{"rounds sets down", MapCacheConfig{BucketShift: 12, MaxBytes: 12 << 12, Ways: 4}, false, 4096, 8},
		{"shift too small", MapCacheConfig{BucketShift: 11}, true, 0, 0},
		{"shift too big", MapCacheConfig{BucketShift: 31}, true, 0, 0},
		{"too few bytes", MapCacheConfig{BucketShift: 20, MaxBytes: 1 << 20, Ways: 2}, true, 0, 0},
		{"bad ways", MapCacheConfig{Ways: -1}, true, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewMapCache(f, tc.cfg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("NewMapCache(%+v) error = %v, want error %v", tc.cfg, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if got, want := c.BucketSize(), tc.size; got != want {
				t.Errorf("BucketSize() = %d, want %d", got, want)
			}
			if got, want := len(c.slots), tc.slots; got != want {
				t.Errorf("slots = %d, want %d", got, want)
			}
		})
	}
	if _, err := NewMapCache(nil, MapCacheConfig{}); err == nil {
		t.Error("NewMapCache(nil) succeeded")
	}
}

func TestMapCache_ReadWrite(t *testing.T) {
	const memSize = 64 << 10 // 4 buckets of 16 KiB
	mem := pattern(memSize)
	want := bytes.Clone(mem)
	f := FromBytes(mem)
	c := small(t, f, 8, 2)
	for _, tc := range []struct {
		name string
		gpa  GPA
		n    int
	}{
		{"one byte", 0x10, 1},
		{"within page", 0x1010, 100},
		{"crossing pages", 0xff0, 0x20},
		{"whole bucket", 0x4000, 0x4000},
		{"crossing buckets", 0x3ff8, 0x10},
		{"all memory", 0, memSize},
		{"last byte", memSize - 1, 1},
		{"empty", 0x100, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make([]byte, tc.n)
			if err := c.Read(tc.gpa, got); err != nil {
				t.Fatalf("Read(%#x, %d) = %v", tc.gpa, tc.n, err)
			}
			if w := want[tc.gpa : tc.gpa+GPA(tc.n)]; !bytes.Equal(got, w) {
				t.Fatalf("Read(%#x, %d) returned wrong bytes", tc.gpa, tc.n)
			}
			data := bytes.Repeat([]byte{byte(tc.n)}, tc.n)
			if err := c.Write(tc.gpa, data); err != nil {
				t.Fatalf("Write(%#x, %d) = %v", tc.gpa, tc.n, err)
			}
			copy(want[tc.gpa:], data)
			if !bytes.Equal(mem, want) {
				t.Fatalf("Write(%#x, %d): guest memory differs from the model", tc.gpa, tc.n)
			}
		})
	}
	if got, want := f.Maps(), 4; got != want {
		t.Errorf("mapper Maps() = %d, want %d (one per bucket)", got, want)
	}
}

func TestMapCache_Holes(t *testing.T) {
	mem := pattern(64 << 10)
	f := FromBytes(mem)
	errPaged := errors.New("paged out")
	f.SetHole(5, true, errPaged) // second bucket, second page
	c := small(t, f, 8, 2)
	for _, tc := range []struct {
		name    string
		gpa     GPA
		n       int
		wantErr error // besides ErrUnmapped
	}{
		{"before the hole", 0x4000, 0x1000, nil},
		{"after the hole", 0x6000, 0x2000, nil},
		{"in the hole", 0x5800, 8, errPaged},
		{"touching the hole", 0x4ff8, 16, errPaged},
		{"spanning buckets into the hole", 0x3000, 0x3000, errPaged},
		{"beyond memory", 64 << 10, 1, ErrFakeHole},
		{"straddling the end", 64<<10 - 4, 8, ErrFakeHole},
		{"far beyond", 1 << 40, 8, ErrFakeHole},
		{"wrapping", ^GPA(0) - 3, 8, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := make([]byte, tc.n)
			for _, op := range []struct {
				name string
				f    func(GPA, []byte) error
			}{{"Read", c.Read}, {"Write", c.Write}} {
				err := op.f(tc.gpa, p)
				wantFail := tc.wantErr != nil || tc.name == "wrapping"
				if (err != nil) != wantFail {
					t.Fatalf("%s(%#x, %d) = %v, want failure %v", op.name, tc.gpa, tc.n, err, wantFail)
				}
				if err == nil {
					continue
				}
				if !errors.Is(err, ErrUnmapped) {
					t.Errorf("%s error %v does not wrap ErrUnmapped", op.name, err)
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Errorf("%s error %v does not wrap %v", op.name, err, tc.wantErr)
				}
			}
		})
	}
	// A hole set after mapping is not seen until Invalidate (as Xen's
	// p2m change is not seen before IOREQ_TYPE_INVALIDATE).
	if err := c.Read(0x1000, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	f.SetHole(1, true, nil)
	if err := c.Read(0x1000, make([]byte, 4)); err != nil {
		t.Errorf("Read of a page made a hole after mapping = %v, want success (stale mapping)", err)
	}
	c.Invalidate()
	if err := c.Read(0x1000, make([]byte, 4)); !errors.Is(err, ErrFakeHole) {
		t.Errorf("Read after Invalidate = %v, want the hole", err)
	}
	f.SetHole(1, false, nil)
	c.Invalidate()
	if err := c.Read(0x1000, make([]byte, 4)); err != nil {
		t.Errorf("Read after the hole is filled and Invalidate = %v", err)
	}
}

func TestMapCache_MapError(t *testing.T) {
	f := FromBytes(pattern(64 << 10))
	c := small(t, f, 8, 2)
	boom := errors.New("EPERM-ish")
	f.SetFail(boom)
	err := c.Read(0, make([]byte, 1))
	if !errors.Is(err, ErrUnmapped) || !errors.Is(err, boom) {
		t.Errorf("Read with failing mapper = %v, want ErrUnmapped wrapping %v", err, boom)
	}
	f.SetFail(nil)
	if err := c.Read(0, make([]byte, 1)); err != nil {
		t.Errorf("Read after mapper recovers = %v (failures must not be cached)", err)
	}
	nilMapper := MapperFunc(func([]uint64, bool) (Mapping, error) { return nil, nil })
	if err := small(t, nilMapper, 8, 2).Read(0, make([]byte, 1)); !errors.Is(err, ErrUnmapped) {
		t.Errorf("Read with a mapper returning nil, nil = %v, want ErrUnmapped", err)
	}
	if got := c.Stats(); got.MapErrors != 1 || got.Maps != 1 {
		t.Errorf("Stats() = %+v, want 1 map error and 1 map", got)
	}
}

// shortMapper returns mappings whose Bytes are shorter than asked.
type shortMapper struct{ *FakeMapper }

func (s shortMapper) MapPages(gfns []uint64, w bool) (Mapping, error) {
	m, err := s.FakeMapper.MapPages(gfns, w)
	if err != nil {
		return nil, err
	}
	return shortMapping{m}, nil
}

type shortMapping struct{ Mapping }

func (s shortMapping) Bytes() []byte { return s.Mapping.Bytes()[:PageSize] }

func TestMapCache_ShortMapping(t *testing.T) {
	c := small(t, shortMapper{FromBytes(pattern(64 << 10))}, 8, 2)
	if err := c.Read(0xff0, make([]byte, 16)); err != nil {
		t.Errorf("Read in the mapped page = %v", err)
	}
	if err := c.Read(0x1000, make([]byte, 1)); !errors.Is(err, ErrUnmapped) {
		t.Errorf("Read beyond a short mapping = %v, want ErrUnmapped", err)
	}
}

func TestMapCache_EvictionBound(t *testing.T) {
	const buckets = 64
	want := pattern(buckets << 14)
	f := FromBytes(bytes.Clone(want))
	c := small(t, f, 8, 2) // 4 sets of 2 ways
	p := make([]byte, 8)
	for round := range 3 {
		for i := range buckets {
			gpa := GPA(i)<<14 + 8
			if err := c.Read(gpa, p); err != nil {
				t.Fatal(err)
			}
			if got, want := p[0], want[gpa]; got != want {
				t.Fatalf("round %d: Read(%#x) = %#x, want %#x", round, gpa, got, want)
			}
			if live := f.Live(); live > 8 {
				t.Fatalf("%d live mappings, bound is 8", live)
			}
		}
	}
	st := c.Stats()
	if st.Live != int64(f.Live()) || st.Live != 8 {
		t.Errorf("Stats().Live = %d, mapper live = %d, want 8", st.Live, f.Live())
	}
	if got, want := st.Evictions, st.Maps-8; got != want {
		t.Errorf("Evictions = %d, want Maps-8 = %d", got, want)
	}
	c.Invalidate()
	if got := f.Live(); got != 0 {
		t.Errorf("%d live mappings after Invalidate, want 0", got)
	}
}

func TestMapCache_Pin(t *testing.T) {
	mem := pattern(128 << 10)
	f := FromBytes(mem)
	c := small(t, f, 4, 1) // 4 sets of 1 way: buckets 0 and 4 collide
	r, err := c.Pin(0x3ff0, 0x20)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.GPA(), GPA(0x3ff0); got != want {
		t.Errorf("GPA() = %#x, want %#x", got, want)
	}
	if got, want := len(r.Segments()), 2; got != want {
		t.Fatalf("%d segments, want %d (crosses a bucket)", got, want)
	}
	var joined []byte
	for _, s := range r.Segments() {
		joined = append(joined, s...)
	}
	if !bytes.Equal(joined, mem[0x3ff0:0x4010]) || r.Len() != 0x20 {
		t.Errorf("segments do not show guest memory [0x3ff0, 0x4010)")
	}
	if n, err := r.WriteAt([]byte{1, 2, 3}, 0xf); n != 3 || err != nil {
		t.Errorf("WriteAt = %d, %v", n, err)
	}
	if got := mem[0x3fff:0x4002]; !bytes.Equal(got, []byte{1, 2, 3}) {
		t.Errorf("guest memory after WriteAt = %v, want [1 2 3]", got)
	}
	buf := make([]byte, 4)
	if n, err := r.ReadAt(buf, 0x1e); n != 2 || err != io.EOF {
		t.Errorf("ReadAt past the end = %d, %v, want 2, EOF", n, err)
	}
	if _, err := r.ReadAt(buf, -1); err == nil {
		t.Error("ReadAt(-1) succeeded")
	}

	// The pinned bucket 0 occupies the only way of set 0; an access to
	// bucket 4 (same set) is served privately.
	if err := c.Read(4<<14, buf); err != nil {
		t.Fatal(err)
	}
	if got := c.Stats().Private; got != 1 {
		t.Errorf("Private = %d, want 1", got)
	}
	if got, want := f.Live(), 2; got != want {
		t.Errorf("live mappings = %d, want %d (private bucket unmapped after use)", got, want)
	}

	// Invalidate leaves pinned buckets mapped, without waiting for them.
	c.Invalidate()
	if got, want := f.Live(), 2; got != want {
		t.Errorf("live mappings after Invalidate = %d, want %d (pinned)", got, want)
	}
	if !bytes.Equal(r.Segments()[0][:4], mem[0x3ff0:0x3ff4]) {
		t.Error("pinned segment changed after Invalidate")
	}
	// New accesses map afresh.
	if err := c.Read(0x3ff0, buf); err != nil {
		t.Fatal(err)
	}
	if got, want := f.Live(), 3; got != want {
		t.Errorf("live mappings = %d, want %d (2 pinned retired + 1 new)", got, want)
	}
	r.Release()
	r.Release() // idempotent
	if got, want := f.Live(), 1; got != want {
		t.Errorf("live mappings after Release = %d, want %d", got, want)
	}
	c.Invalidate()
	if got := f.Live(); got != 0 {
		t.Errorf("live mappings after Invalidate = %d, want 0", got)
	}
}

func TestMapCache_PinErrors(t *testing.T) {
	f := FromBytes(pattern(32 << 10))
	f.SetHole(6, true, nil)
	c := small(t, f, 4, 2)
	for _, tc := range []struct {
		gpa GPA
		n   int
	}{
		{0x1000, 0},
		{0x1000, -1},
		{0x5000, 0x2000}, // hole at 0x6000
		{0x3000, 0x5000}, // crosses into the bucket with the hole
		{^GPA(0), 2},
		{32 << 10, 1},
	} {
		if r, err := c.Pin(tc.gpa, tc.n); !errors.Is(err, ErrUnmapped) {
			t.Errorf("Pin(%#x, %d) = %v, %v, want ErrUnmapped", tc.gpa, tc.n, r, err)
		}
	}
	// Failed pins hold nothing: Invalidate unmaps everything.
	c.Invalidate()
	if got := f.Live(); got != 0 {
		t.Errorf("live mappings after failed pins and Invalidate = %d, want 0", got)
	}
}

func TestMapCache_Close(t *testing.T) {
	f := FromBytes(pattern(32 << 10))
	c := small(t, f, 4, 2)
	r, err := c.Pin(0, 16)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Read(0x4000, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := c.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	}
	for _, op := range []func(GPA, []byte) error{c.Read, c.Write} {
		if err := op(0x4000, make([]byte, 4)); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrUnmapped) {
			t.Errorf("access after Close = %v, want ErrClosed and ErrUnmapped", err)
		}
	}
	if _, err := c.Pin(0, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("Pin after Close = %v, want ErrClosed", err)
	}
	if got, want := f.Live(), 1; got != want {
		t.Errorf("live after Close = %d, want %d (the pin)", got, want)
	}
	r.Release()
	if got := f.Live(); got != 0 {
		t.Errorf("live after Release = %d, want 0", got)
	}
}

func TestMapCache_ZeroAlloc(t *testing.T) {
	c := small(t, FromBytes(pattern(64<<10)), 8, 2)
	p := make([]byte, 64)
	if err := c.Read(0x4000, p); err != nil { // map the bucket
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"read hit", func() { _ = c.Read(0x4010, p) }},
		{"write hit", func() { _ = c.Write(0x4010, p) }},
		{"read hit 8 bytes", func() { _ = c.Read(0x4ff8, p[:8]) }},
		{"stats", func() { _ = c.Stats() }},
	} {
		if got := testing.AllocsPerRun(100, tc.f); got != 0 {
			t.Errorf("%s: %v allocs per run, want 0", tc.name, got)
		}
	}
}

func TestFakeMapper(t *testing.T) {
	f := FromBytes(pattern(4 * PageSize))
	if _, err := f.MapPages([]uint64{1, 3}, true); err == nil {
		t.Error("MapPages of non-consecutive gfns succeeded")
	}
	if _, err := f.MapPages(nil, true); err == nil {
		t.Error("MapPages of no gfns succeeded")
	}
	m, err := f.MapPages([]uint64{2, 3, 4}, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(m.Bytes()), 2*PageSize; got != want {
		t.Errorf("len(Bytes()) = %d, want %d (clipped at the end of memory)", got, want)
	}
	for i, want := range []bool{false, false, true} {
		if got := m.PageErr(i) != nil; got != want {
			t.Errorf("PageErr(%d) != nil is %v, want %v", i, got, want)
		}
	}
	if m.PageErr(3) == nil || m.PageErr(-1) == nil {
		t.Error("PageErr out of range returned nil")
	}
	if got := fmt.Sprint(f.Live(), f.Maps()); got != "1 1" {
		t.Errorf("Live, Maps = %s, want 1 1", got)
	}
	for range 2 {
		if err := m.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	}
	if got := f.Live(); got != 0 {
		t.Errorf("Live() after double Close = %d, want 0", got)
	}
}

// TestMapCache_RefOverflow checks that a bucket whose reference count is
// saturated refuses new references instead of wrapping into the flags.
func TestMapCache_RefOverflow(t *testing.T) {
	c := small(t, FromBytes(pattern(32<<10)), 4, 2)
	if err := c.Read(0, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	b := c.slots[0].Load()
	if b == nil {
		t.Fatal("bucket 0 not in way 0 of set 0")
	}
	saved := b.state.Load()
	b.state.Store(saved | pinMask)
	if _, err := c.Pin(0, 1); !errors.Is(err, ErrUnmapped) {
		t.Errorf("Pin on a saturated bucket = %v, want ErrUnmapped", err)
	}
	b.state.Store(saved | copyMask)
	if err := c.Read(0, make([]byte, 1)); !errors.Is(err, ErrUnmapped) {
		t.Errorf("Read on a saturated bucket = %v, want ErrUnmapped", err)
	}
	b.state.Store(saved)
	if err := c.Read(0, make([]byte, 1)); err != nil {
		t.Errorf("Read after = %v", err)
	}
}
