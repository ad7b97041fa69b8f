package memory

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
	"sync"
	"sync/atomic"
)

// ErrClosed is returned (wrapped) by a MapCache used after Close.
var ErrClosed = errors.New("memory: map cache closed")

// Map cache defaults.
const (
	// DefaultBucketShift gives 1 MiB buckets: MCACHE_BUCKET_SHIFT of
	// QEMU's hw/xen/xen-mapcache.c on 64-bit hosts. Measured with
	//	go test -run XXX -bench BucketSize -benchtime 50000x ./memory
	// (MAP_POPULATE mmaps of a 256 MiB memfd standing in for foreign
	// maps; a mix of sequential 64 KiB and random 2 KiB reads; best of 2
	// runs on 2 loaded cores):
	//
	//	bucket  warm (bound = guest)   thrashing (bound = guest/4)
	//	64K     3.5 us/op              20 us/op, 0.82 maps/op
	//	256K    3.1 us/op              24 us/op, 0.48 maps/op
	//	1M      2.9 us/op              75 us/op, 0.40 maps/op
	//	2M      2.7 us/op             161 us/op, 0.39 maps/op
	//	4M      2.8 us/op             293 us/op, 0.39 maps/op
	//
	// Warm, the size does not matter once the guest is mapped, and larger
	// buckets need fewer maps to get there (a foreign map is a privcmd
	// ioctl plus a hypercall batch, dearer than this stand-in). Thrashing
	// favours small buckets, but each bucket is one VMA and Linux allows
	// vm.max_map_count (65530 by default) per process: 32 GiB of 256 KiB
	// buckets would need 131072. 1 MiB buckets keep a 32 GiB bound at
	// 32768 VMAs, so the default stays QEMU's; set MaxBytes below the
	// working set only with smaller buckets.
	DefaultBucketShift = 20
	// DefaultMaxBytes bounds the virtual address space the cache maps:
	// 32 GiB, MCACHE_MAX_SIZE of QEMU on 64-bit hosts.
	DefaultMaxBytes = 32 << 30
	// DefaultMaxBuckets caps the number of buckets (VMAs) when MaxBytes is
	// left zero, so that small buckets stay well within vm.max_map_count.
	DefaultMaxBuckets = 32 << 10
	// DefaultWays is the associativity of the bucket table.
	DefaultWays = 4
)

// MapCacheConfig configures a MapCache. The zero value gives the defaults.
type MapCacheConfig struct {
	// BucketShift is log2 of the bucket size, 12..30 (0: DefaultBucketShift).
	BucketShift uint
	// MaxBytes bounds the bytes mapped by the bucket table (0:
	// DefaultMaxBytes, or DefaultMaxBuckets buckets if fewer). Pinned buckets dropped by Invalidate and buckets
	// of accesses that found no free slot are mapped in addition until
	// released.
	MaxBytes uint64
	// Ways is the number of buckets that may share a table set (0:
	// DefaultWays); more ways mean fewer conflicts and slower misses.
	Ways int
	// Dirty, if set, records every write the cache makes to guest
	// memory (Write, and every write through a Region): see DirtyLog.
	Dirty *DirtyLog
}

// MapCacheStats are a MapCache's counters.
type MapCacheStats struct {
	// Maps counts buckets mapped.
	Maps uint64
	// MapErrors counts failed MapPages calls.
	MapErrors uint64
	// Evictions counts unreferenced buckets unmapped to make room.
	Evictions uint64
	// Private counts accesses served by a bucket outside the table
	// because every way of its set was in use.
	Private uint64
	// Invalidations counts Invalidate calls.
	Invalidations uint64
	// UnmapErrors counts failed Mapping.Close calls.
	UnmapErrors uint64
	// Live is the number of buckets currently mapped.
	Live int64
}

// Bucket state word: two reference counts and three flags. retired and
// dead are set once and never cleared; accessed is set by every acquire and
// cleared by the eviction clock.
const (
	copyUnit = 1
	copyMask = 1<<24 - 1 // Read and Write in progress
	pinUnit  = 1 << 24
	pinMask  = (1<<24 - 1) << 24 // pinned regions
	refMask  = copyMask | pinMask
	accessed = 1 << 48 // the clock bit for eviction
	retired  = 1 << 49 // out of the table: no new references
	dead     = 1 << 50 // unmapped (or being unmapped)
)

// bucket is one mapped run of 1<<shift bytes of guest memory. All fields
// but state are immutable once the bucket is published.
type bucket struct {
	state   atomic.Uint64
	private bool    // never in the table (see getSlow); tracked in MapCache.privates
	idx     uint64  // gpa >> shift
	mem     []byte  // the mapping; shorter than the bucket only if all pages beyond are holes
	holes   []error // nil, or per page: nil if mapped, else the error to return
	m       Mapping
}

// acquire takes a reference of unit (copyUnit or pinUnit) unless the
// bucket is retired or the count would overflow.
func (b *bucket) acquire(unit, mask uint64) bool {
	for {
		s := b.state.Load()
		if s&(retired|dead) != 0 || s&mask == mask {
			return false
		}
		if b.state.CompareAndSwap(s, (s+unit)|accessed) {
			return true
		}
	}
}

// check returns the error of the first hole in [off, off+n), n > 0.
func (b *bucket) check(off, n uint64) error {
	if b.holes == nil {
		return nil
	}
	for pg := off / PageSize; pg <= (off+n-1)/PageSize; pg++ {
		if err := b.holes[pg]; err != nil {
			return err
		}
	}
	return nil
}

// MapCache is a cache of mappings of guest memory in fixed-size buckets,
// implementing Accessor over a Mapper. See the package documentation for
// eviction, holes, pinning and invalidation. Use NewMapCache.
type MapCache struct {
	mapper  Mapper
	shift   uint
	size    uint64 // bucket size
	ways    int
	setMask uint64
	slots   []atomic.Pointer[bucket] // set s occupies [s*ways, (s+1)*ways)

	closed atomic.Bool
	dirty  *DirtyLog // nil: writes are not logged

	maps, mapErrors, evictions, private, invalidations, unmapErrors atomic.Uint64
	live                                                            atomic.Int64

	// mu serialises mapping, insertion, eviction and Invalidate's detach
	// step. It is never held during a copy or while waiting.
	mu   sync.Mutex
	hand uint // guarded by mu: the eviction clock hand
	// privates are the private buckets still mapped, so that Invalidate
	// also waits for copies through them. Guarded by mu.
	privates map[*bucket]struct{}

	// retireMu and retireCond let Invalidate wait for the copies in
	// progress on retired buckets; releasers of retired buckets signal.
	retireMu   sync.Mutex
	retireCond sync.Cond

	// invalMu serialises Invalidate and Close. Lock order: invalMu, then
	// mu or retireMu (never both).
	invalMu  sync.Mutex
	retiring []*bucket // guarded by invalMu
}

var _ Accessor = (*MapCache)(nil)

// NewMapCache returns an empty cache mapping through m.
func NewMapCache(m Mapper, cfg MapCacheConfig) (*MapCache, error) {
	if m == nil {
		return nil, errors.New("memory: map cache: nil mapper")
	}
	if cfg.BucketShift == 0 {
		cfg.BucketShift = DefaultBucketShift
	}
	if cfg.MaxBytes == 0 && cfg.BucketShift <= 30 {
		cfg.MaxBytes = min(uint64(DefaultMaxBytes), uint64(DefaultMaxBuckets)<<cfg.BucketShift)
	}
	if cfg.Ways == 0 {
		cfg.Ways = DefaultWays
	}
	if cfg.BucketShift < 12 || cfg.BucketShift > 30 {
		return nil, fmt.Errorf("memory: map cache: bucket shift %d not in 12..30", cfg.BucketShift)
	}
	if cfg.Ways < 1 || cfg.Ways > 64 {
		return nil, fmt.Errorf("memory: map cache: %d ways not in 1..64", cfg.Ways)
	}
	size := uint64(1) << cfg.BucketShift
	buckets := cfg.MaxBytes / size
	if buckets < uint64(cfg.Ways) {
		return nil, fmt.Errorf("memory: map cache: %d bytes hold fewer than %d buckets of %d bytes", cfg.MaxBytes, cfg.Ways, size)
	}
	sets := uint64(1) << (63 - bits.LeadingZeros64(buckets/uint64(cfg.Ways))) // power of two, rounded down
	c := &MapCache{
		mapper:   m,
		shift:    cfg.BucketShift,
		size:     size,
		ways:     cfg.Ways,
		setMask:  sets - 1,
		slots:    make([]atomic.Pointer[bucket], sets*uint64(cfg.Ways)),
		privates: make(map[*bucket]struct{}),
		dirty:    cfg.Dirty,
	}
	c.retireCond.L = &c.retireMu
	return c, nil
}

// DirtyLog returns the log the cache records its writes in (nil if none).
func (c *MapCache) DirtyLog() *DirtyLog { return c.dirty }

// BucketSize returns the bucket size in bytes.
func (c *MapCache) BucketSize() uint64 { return c.size }

// Stats returns the cache's counters. It does not allocate.
func (c *MapCache) Stats() MapCacheStats {
	return MapCacheStats{
		Maps:          c.maps.Load(),
		MapErrors:     c.mapErrors.Load(),
		Evictions:     c.evictions.Load(),
		Private:       c.private.Load(),
		Invalidations: c.invalidations.Load(),
		UnmapErrors:   c.unmapErrors.Load(),
		Live:          c.live.Load(),
	}
}

// get returns the bucket idx with a reference of unit held. The hit path
// takes no lock and does not allocate.
func (c *MapCache) get(idx, unit, mask uint64) (*bucket, error) {
	set := c.slots[int(idx&c.setMask)*c.ways:][:c.ways]
	for i := range set {
		if b := set[i].Load(); b != nil && b.idx == idx && b.acquire(unit, mask) {
			return b, nil
		}
	}
	return c.getSlow(idx, unit, mask)
}

// getSlow maps bucket idx and puts it in the table, evicting an
// unreferenced bucket of its set if needed.
func (c *MapCache) getSlow(idx, unit, mask uint64) (*bucket, error) {
	c.mu.Lock()
	if c.closed.Load() {
		c.mu.Unlock()
		return nil, fmt.Errorf("memory: map cache: %w: %w", ErrClosed, ErrUnmapped)
	}
	set := c.slots[int(idx&c.setMask)*c.ways:][:c.ways]
	free := -1
	for i := range set {
		b := set[i].Load()
		if b == nil {
			if free < 0 {
				free = i
			}
			continue
		}
		if b.idx == idx {
			if b.acquire(unit, mask) {
				c.mu.Unlock()
				return b, nil
			}
			if b.state.Load()&mask == mask {
				c.mu.Unlock()
				return nil, fmt.Errorf("memory: map cache: gpa %#x: too many references: %w", idx<<c.shift, ErrUnmapped)
			}
		}
	}
	nb, err := c.mapBucket(idx)
	if err != nil {
		c.mu.Unlock()
		return nil, err
	}
	var victim *bucket
	if free < 0 {
		free, victim = c.evictLocked(set)
	}
	if free < 0 {
		// Every way holds a referenced bucket: serve this user from a
		// bucket outside the table, unmapped at its release.
		nb.state.Store(unit | retired)
		nb.private = true
		c.privates[nb] = struct{}{}
		c.private.Add(1)
	} else {
		nb.state.Store(unit | accessed)
		set[free].Store(nb)
	}
	c.mu.Unlock()
	if victim != nil {
		c.evictions.Add(1)
		c.unmap(victim)
	}
	return nb, nil
}

// evictLocked picks an unreferenced bucket of set with the clock
// algorithm, marks it dead and returns its way, or -1.
//
// +checklocks:c.mu
func (c *MapCache) evictLocked(set []atomic.Pointer[bucket]) (int, *bucket) {
	for range 2 * len(set) {
		w := int(c.hand % uint(len(set)))
		c.hand++
		b := set[w].Load()
		s := b.state.Load()
		if s&refMask != 0 {
			continue
		}
		if s&accessed != 0 {
			b.state.CompareAndSwap(s, s&^accessed) // second chance
			continue
		}
		if b.state.CompareAndSwap(s, s|retired|dead) {
			return w, b
		}
	}
	return -1, nil
}

// mapBucket maps bucket idx and records its holes.
//
// +checklocks:c.mu
func (c *MapCache) mapBucket(idx uint64) (*bucket, error) {
	n := c.size / PageSize
	first := idx << (c.shift - 12)
	gfns := make([]uint64, n)
	for i := range gfns {
		gfns[i] = first + uint64(i)
	}
	m, err := c.mapper.MapPages(gfns, true)
	if err == nil && m == nil {
		err = errNilMapping
	}
	if err != nil {
		c.mapErrors.Add(1)
		return nil, fmt.Errorf("memory: map cache: map gpa %#x+%#x: %w: %w", idx<<c.shift, c.size, ErrUnmapped, err)
	}
	b := &bucket{idx: idx, m: m, mem: m.Bytes()}
	if uint64(len(b.mem)) > c.size {
		b.mem = b.mem[:c.size:c.size]
	}
	for i := range n {
		perr := m.PageErr(int(i))
		if perr == nil && uint64(len(b.mem)) < (i+1)*PageSize {
			perr = errShortMapping
		}
		if perr != nil {
			if b.holes == nil {
				b.holes = make([]error, n)
			}
			b.holes[i] = fmt.Errorf("memory: map cache: gfn %#x: %w: %w", first+i, ErrUnmapped, perr)
		}
	}
	c.maps.Add(1)
	c.live.Add(1)
	return b, nil
}

var (
	errShortMapping = errors.New("mapping shorter than requested")
	errNilMapping   = errors.New("mapper returned no mapping and no error")
)

// unmap closes a dead bucket's mapping. The caller holds no lock but
// possibly invalMu.
func (c *MapCache) unmap(b *bucket) {
	if err := b.m.Close(); err != nil {
		c.unmapErrors.Add(1)
	}
	c.live.Add(-1)
	if b.private {
		c.mu.Lock()
		delete(c.privates, b)
		c.mu.Unlock()
	}
}

// put releases a reference of unit taken by get.
func (c *MapCache) put(b *bucket, unit uint64) {
	if s := b.state.Add(-unit); s&retired != 0 {
		c.putRetired(b, s)
	}
}

// putRetired unmaps a retired bucket whose last reference went away and
// wakes Invalidate if it waits for this bucket's copies.
func (c *MapCache) putRetired(b *bucket, s uint64) {
	if s&(refMask|dead) == 0 && b.state.CompareAndSwap(s, s|dead) {
		c.unmap(b)
	}
	if s&copyMask == 0 {
		c.retireMu.Lock()
		c.retireCond.Broadcast()
		c.retireMu.Unlock()
	}
}

// Invalidate drops every mapping (IOREQ_TYPE_INVALIDATE): later accesses
// map the guest's current p2m. It waits for the copies in progress on the
// dropped buckets (so none reads a stale mapping after Invalidate
// returns), unmaps every unreferenced bucket, and leaves pinned
// buckets mapped until their last Release (it never waits for pins; see
// the package documentation for why).
func (c *MapCache) Invalidate() {
	c.invalMu.Lock()
	defer c.invalMu.Unlock()
	c.invalidations.Add(1)
	c.mu.Lock()
	for i := range c.slots {
		b := c.slots[i].Load()
		if b == nil {
			continue
		}
		c.slots[i].Store(nil)
		b.state.Or(retired)
		c.retiring = append(c.retiring, b)
	}
	// Private buckets are retired already; wait for their copies too.
	for b := range c.privates {
		c.retiring = append(c.retiring, b)
	}
	c.mu.Unlock()
	for _, b := range c.retiring {
		c.retireMu.Lock()
		for s := b.state.Load(); s&copyMask != 0 && s&dead == 0; s = b.state.Load() {
			c.retireCond.Wait()
		}
		c.retireMu.Unlock()
		if s := b.state.Load(); s&(refMask|dead) == 0 && b.state.CompareAndSwap(s, s|dead) {
			c.unmap(b)
		}
	}
	clear(c.retiring)
	c.retiring = c.retiring[:0]
}

// Close drops every mapping as Invalidate does and makes later accesses
// fail with ErrClosed. Pinned regions stay valid until released. Close is
// idempotent.
func (c *MapCache) Close() error {
	c.mu.Lock()
	c.closed.Store(true)
	c.mu.Unlock()
	c.Invalidate()
	return nil
}

// span checks that [gpa, gpa+n) does not wrap.
func span(gpa GPA, n int) error {
	if n > 0 && gpa+GPA(n)-1 < gpa {
		return fmt.Errorf("memory: map cache: [%#x+%d] wraps: %w", gpa, n, ErrUnmapped)
	}
	return nil
}

// Read implements Accessor: it copies len(p) bytes of guest memory at gpa
// into p. On a hit it takes no lock and does not allocate.
func (c *MapCache) Read(gpa GPA, p []byte) error { return c.copyAt(gpa, p, false) }

// Write implements Accessor: it copies p into guest memory at gpa. On a
// hit it takes no lock and does not allocate.
func (c *MapCache) Write(gpa GPA, p []byte) error { return c.copyAt(gpa, p, true) }

// copyAt copies between p and guest memory at gpa, bucket by bucket,
// holding each bucket only for the copy.
func (c *MapCache) copyAt(g GPA, p []byte, write bool) error {
	if err := span(g, len(p)); err != nil {
		return err
	}
	gpa := uint64(g)
	for len(p) > 0 {
		b, err := c.get(gpa>>c.shift, copyUnit, copyMask)
		if err != nil {
			return err
		}
		off := gpa & (c.size - 1)
		n := min(uint64(len(p)), c.size-off)
		if err := b.check(off, n); err != nil {
			c.put(b, copyUnit)
			return err
		}
		if write {
			copy(b.mem[off:], p[:n])
			// Marked after the copy and before the reference is
			// dropped: a Collect that misses this mark runs before
			// the copy is complete, and the next one reports it.
			c.dirty.Mark(GPA(gpa), n)
		} else {
			copy(p[:n], b.mem[off:])
		}
		c.put(b, copyUnit)
		p = p[n:]
		gpa += n
	}
	return nil
}

// Region is a pinned range of guest memory: descriptor rings (virtio
// queues, AHCI command lists, NVMe queues) and DMA that must not copy
// (readv/writev straight into guest RAM). Its mappings stay valid until
// Release, even across Invalidate. Every write through it is recorded in
// the cache's DirtyLog: WriteAt and the atomic stores mark the bytes they
// wrote; a caller writing through WritableSegments marks with MarkDirty,
// and Release marks the whole region once more as a backstop. A Region is
// not safe for concurrent Release; its other methods may be called
// concurrently, and none of them allocates.
type Region struct {
	c        *MapCache
	gpa      GPA
	n        int
	first    uint64 // offset of the region's first byte in buckets[0]
	buckets  []*bucket
	segs     [][]byte
	written  atomic.Bool // WritableSegments was called: Release marks the whole region dirty
	released atomic.Bool
}

// Pin maps [gpa, gpa+n) and holds it until the returned Region's Release.
// It fails with an error wrapping ErrUnmapped if the range wraps or
// touches a hole. Pin allocates the Region.
func (c *MapCache) Pin(gpa GPA, n int) (*Region, error) {
	if n <= 0 {
		return nil, fmt.Errorf("memory: map cache: pin [%#x+%d]: empty range: %w", gpa, n, ErrUnmapped)
	}
	if err := span(gpa, n); err != nil {
		return nil, err
	}
	first, last := uint64(gpa)>>c.shift, (uint64(gpa)+uint64(n)-1)>>c.shift
	r := &Region{c: c, gpa: gpa, n: n, first: uint64(gpa) & (c.size - 1), buckets: make([]*bucket, 0, last-first+1), segs: make([][]byte, 0, last-first+1)}
	for rest, a := uint64(n), uint64(gpa); rest > 0; {
		// Pins are not waited for by Invalidate, so take the pin
		// reference directly: no window in which Invalidate waits on a
		// half-built Region.
		b, err := c.get(a>>c.shift, pinUnit, pinMask)
		if err != nil {
			r.Release()
			return nil, err
		}
		r.buckets = append(r.buckets, b)
		off := a & (c.size - 1)
		k := min(rest, c.size-off)
		if err := b.check(off, k); err != nil {
			r.Release()
			return nil, err
		}
		r.segs = append(r.segs, b.mem[off:off+k:off+k])
		rest -= k
		a += k
	}
	return r, nil
}

// GPA returns the first guest-physical address of the region.
func (r *Region) GPA() GPA { return r.gpa }

// Len returns the length of the region in bytes.
func (r *Region) Len() int { return r.n }

// Segments returns the region as slices of mapped guest memory, in order,
// for reading; their lengths add up to Len. The guest may change the bytes
// at any time. The slices must not be written (use WritableSegments) and
// must not be used after Release.
func (r *Region) Segments() [][]byte { return r.segs }

// WritableSegments returns the segments as Segments does, for writing
// (readv into guest RAM). The caller reports what it wrote with MarkDirty
// once the bytes are in place; Release marks the whole region dirty again,
// so nothing written before Release can be missed by a Collect after it.
func (r *Region) WritableSegments() [][]byte {
	r.written.Store(true)
	return r.segs
}

// MarkDirty records in the cache's DirtyLog that the region's bytes
// [off, off+n) were written through WritableSegments. Out-of-range parts
// are ignored.
func (r *Region) MarkDirty(off, n int) {
	if off < 0 || n <= 0 || off >= r.n {
		return
	}
	r.c.dirty.Mark(r.gpa+GPA(off), uint64(min(n, r.n-off)))
}

// ReadAt copies bytes of the region at offset off into p (io.ReaderAt).
func (r *Region) ReadAt(p []byte, off int64) (int, error) {
	return r.xfer(p, off, false)
}

// WriteAt copies p into the region at offset off (io.WriterAt).
func (r *Region) WriteAt(p []byte, off int64) (int, error) {
	return r.xfer(p, off, true)
}

func (r *Region) xfer(p []byte, off int64, write bool) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if off < 0 || off > int64(r.n) {
		return 0, fmt.Errorf("memory: region: offset %d outside %d bytes", off, r.n)
	}
	start := off // region offset of p[0]
	done := 0
	for _, s := range r.segs {
		if off >= int64(len(s)) {
			off -= int64(len(s))
			continue
		}
		var k int
		if write {
			k = copy(s[off:], p[done:])
		} else {
			k = copy(p[done:], s[off:])
		}
		done += k
		off = 0
		if done == len(p) {
			break
		}
	}
	if write {
		r.c.dirty.Mark(r.gpa+GPA(start), uint64(done))
	}
	if done == len(p) {
		return done, nil
	}
	if write {
		return done, io.ErrShortWrite
	}
	return done, io.EOF
}

// Release drops the pin. It is idempotent. If the region's segments were
// handed out for writing, the whole region is marked dirty first.
func (r *Region) Release() {
	if r.released.Swap(true) {
		return
	}
	if r.written.Load() {
		r.c.dirty.Mark(r.gpa, uint64(r.n))
	}
	for _, b := range r.buckets {
		r.c.put(b, pinUnit)
	}
	r.segs = nil
}
