package block

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
)

// qcow2Image reads and writes a qcow2 image (v2 and v3). Metadata
// updates are ordered so that a crash at any point leaves at worst leaked
// clusters: data, then refcounts, then (after a barrier under the cache
// modes that need one) the L2 entry, then the L1 entry; a cluster is freed
// (refcount decremented) only after the last reference to it is gone.
type qcow2Image struct {
	h       *hostFile
	hdr     *qcowHeader
	backing image // nil: unallocated clusters read as zeros
	bsize   int64

	cbits   uint   // cluster bits
	cs      int64  // cluster size
	l2bits  uint   // log2 entries per L2 table
	esz     int64  // L2 entry size (8, 16 with extended L2)
	sbits   uint   // subcluster bits (extended L2)
	rbbits  uint   // log2 refcount entries per refcount block
	rbits   uint   // bits per refcount
	rmax    uint64 // largest refcount
	csShift uint   // compressed descriptor: size field shift
	csMask  uint64
	coMask  uint64
	size    int64

	mu   sync.Mutex // metadata: L1, refcount table, caches, allocation
	l1   []uint64
	rt   []uint64
	l2c  *tableCache
	rbc  *tableCache
	next int64  // allocation cursor (cluster aligned)
	cow  []byte // one cluster, for allocating writes (under mu)
	l2nb []byte // one cluster, a new L2 table (under mu)
	olds [maxRun]uint64

	zmu   sync.Mutex // compressed clusters
	zin   []byte
	zout  []byte
	zkey  uint64 // L2 entry whose cluster zout holds (0: none)
	zread io.ReadCloser
	zbuf  bytes.Reader
}

const (
	maxBackingDepth = 16
	cacheBytes      = 8 << 20 // per cache (L2 and refcount), at least 4 slots
)

func openQcow2(h *hostFile, writable bool, depth int, opener func(name, format string, depth int) (image, error)) (*qcow2Image, error) {
	fsize, err := h.size()
	if err != nil {
		return nil, err
	}
	first := make([]byte, min(fsize, 2<<20))
	if err := h.readAt(first, 0); err != nil {
		return nil, err
	}
	hdr, err := parseQcowHeader(first, fsize, writable)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h.path, err)
	}
	q := &qcow2Image{h: h, hdr: hdr, cbits: uint(hdr.clusterBits), cs: int64(hdr.clusterSize()), size: int64(hdr.size)}
	if writable && h.cache.direct() && q.cs < h.offAlign {
		// An O_DIRECT metadata update is a read-modify-write of an aligned
		// block; a cluster smaller than that block would share it with a
		// data cluster written concurrently outside the metadata lock.
		return nil, unsupported("cache=%s with %d-byte clusters: the file's direct-I/O alignment is %d bytes", h.cache, q.cs, h.offAlign)
	}
	q.esz = 8
	if hdr.extL2() {
		q.esz = 16
		q.sbits = q.cbits - 5
	}
	q.l2bits = q.cbits - 3
	if hdr.extL2() {
		q.l2bits = q.cbits - 4
	}
	q.rbits = 1 << hdr.refOrder
	q.rbbits = q.cbits + 3 - uint(hdr.refOrder)
	q.rmax = 1<<q.rbits - 1
	if q.rbits == 64 {
		q.rmax = ^uint64(0)
	}
	q.csShift = 62 - (q.cbits - 8)
	q.csMask = 1<<(q.cbits-8) - 1
	q.coMask = 1<<q.csShift - 1
	be := binary.BigEndian
	// L1 and refcount tables: bounded by the header checks (32 and 8 MiB).
	l1raw := make([]byte, int64(hdr.l1Size)*8)
	if err := h.readFull(l1raw, int64(hdr.l1Off)); err != nil {
		return nil, err
	}
	q.l1 = make([]uint64, hdr.l1Size)
	for i := range q.l1 {
		q.l1[i] = be.Uint64(l1raw[i*8:])
	}
	rtraw := make([]byte, int64(hdr.rtClusters)*q.cs)
	if err := h.readFull(rtraw, int64(hdr.rtOff)); err != nil {
		return nil, err
	}
	q.rt = make([]uint64, len(rtraw)/8)
	for i := range q.rt {
		q.rt[i] = be.Uint64(rtraw[i*8:])
	}
	// Never more slots than tables the image can have.
	slots := max(4, cacheBytes/int(q.cs))
	q.l2c = newTableCache(min(slots, max(len(q.l1), 1)), int(q.cs))
	if writable {
		q.rbc = newTableCache(min(slots, len(q.rt)), int(q.cs))
		q.cow = alignedBuf(int(q.cs), 4096)
		q.l2nb = alignedBuf(int(q.cs), 4096)
		q.next = (fsize + q.cs - 1) &^ (q.cs - 1)
		if hdr.version == 3 && hdr.autoclear != 0 {
			// Autoclear features (e.g. persistent bitmaps) describe data
			// godm does not maintain: clear them, as QEMU does for the
			// ones it does not know (qcow2.txt "autoclear_features").
			var z [8]byte
			if err := h.writeAt(z[:], 88); err != nil {
				return nil, err
			}
			if err := h.barrier(); err != nil {
				return nil, err
			}
		}
	}
	if hdr.backingName != "" {
		if depth >= maxBackingDepth {
			return nil, fmt.Errorf("%s: backing chain deeper than %d images (a cycle?)", h.path, maxBackingDepth)
		}
		b, err := opener(hdr.backingName, hdr.backingFormat, depth+1)
		if err != nil {
			return nil, fmt.Errorf("%s: backing file: %w", h.path, err)
		}
		q.backing, q.bsize = b, b.virtualSize()
	}
	return q, nil
}

func (q *qcow2Image) virtualSize() int64 { return q.size }

func (q *qcow2Image) close() error {
	err := q.h.close()
	if q.backing != nil {
		if e := q.backing.close(); err == nil {
			err = e
		}
	}
	return err
}

func (q *qcow2Image) flush() error { return q.h.flush() }

// extent kinds of a guest range.
const (
	extData = iota
	extZero
	extBacking
	extCompressed
)

// l2Table returns the cached L2 table at off, loading it (mu held).
func (q *qcow2Image) l2Table(off int64) ([]byte, error) {
	if t := q.l2c.get(off); t != nil {
		return t, nil
	}
	if off%q.cs != 0 {
		return nil, corrupt("L2 table offset %#x not cluster aligned", off)
	}
	if q.metaOverlap(off, q.cs) {
		return nil, corrupt("L2 table at %#x overlaps the header or the L1/refcount tables", off)
	}
	i := q.l2c.victim()
	if err := q.h.readFull(q.l2c.data[i], off); err != nil {
		return nil, err
	}
	q.l2c.insert(i, off)
	return q.l2c.data[i], nil
}

// metaOverlap says whether [off, off+n) touches the header cluster, the
// L1 table, the refcount table or the snapshot table's first cluster.
func (q *qcow2Image) metaOverlap(off, n int64) bool {
	u, un := uint64(off), uint64(n)
	h := q.hdr
	return overlaps(u, un, 0, uint64(q.cs)) ||
		(h.l1Size > 0 && overlaps(u, un, h.l1Off, uint64(h.l1Size)*8)) ||
		overlaps(u, un, h.rtOff, uint64(h.rtClusters)*uint64(q.cs)) ||
		(h.nbSnapshots > 0 && overlaps(u, un, h.snapOff, uint64(q.cs)))
}

// lookup maps guest offset off (up to want bytes, not crossing a cluster)
// to an extent: its kind, the host offset (extData), the L2 entry
// (extCompressed) and its length. mu held.
func (q *qcow2Image) lookup(off, want int64) (kind int, host int64, entry uint64, n int64, err error) {
	in := off & (q.cs - 1)
	n = min(want, q.cs-in)
	l1i := off >> (q.cbits + q.l2bits)
	if l1i >= int64(len(q.l1)) {
		return 0, 0, 0, 0, corrupt("guest offset %#x beyond the L1 table", off)
	}
	l2off := int64(q.l1[l1i] & l1OffsetMask)
	if l2off == 0 {
		return extBacking, 0, 0, n, nil
	}
	t, err := q.l2Table(l2off)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	l2i := (off >> q.cbits) & (1<<q.l2bits - 1)
	e := binary.BigEndian.Uint64(t[l2i*q.esz:])
	if e&oflagCompr != 0 {
		return extCompressed, 0, e, n, nil
	}
	ho := int64(e & l2OffsetMask)
	if ho%q.cs != 0 {
		return 0, 0, 0, 0, corrupt("cluster offset %#x not aligned (L2 entry %#x)", ho, e)
	}
	if q.esz == 8 {
		switch {
		case e&oflagZero != 0:
			return extZero, 0, e, n, nil
		case ho == 0:
			return extBacking, 0, e, n, nil
		}
		return extData, ho + in, e, n, nil
	}
	// Extended L2: 32 subclusters, an allocation and a zero bitmap.
	bm := binary.BigEndian.Uint64(t[l2i*q.esz+8:])
	alloc, zero := uint32(bm), uint32(bm>>32)
	if alloc&zero != 0 || (ho == 0 && alloc != 0) {
		return 0, 0, 0, 0, corrupt("subcluster bitmap %#x for L2 entry %#x", bm, e)
	}
	sc := uint(in >> q.sbits)
	st := func(i uint) int {
		switch {
		case alloc&(1<<i) != 0:
			return extData
		case zero&(1<<i) != 0:
			return extZero
		}
		return extBacking
	}
	k := st(sc)
	end := (int64(sc) + 1) << q.sbits
	for i := sc + 1; i < 32 && end < in+n && st(i) == k; i++ {
		end += 1 << q.sbits
	}
	n = min(n, end-in)
	if k == extData {
		return extData, ho + in, e, n, nil
	}
	return k, 0, e, n, nil
}

func (q *qcow2Image) readAt(p []byte, off int64) error {
	for len(p) > 0 {
		q.mu.Lock()
		kind, host, e, n, err := q.lookup(off, int64(len(p)))
		q.mu.Unlock()
		if err != nil {
			return err
		}
		switch kind {
		case extData:
			err = q.h.readAt(p[:n], host)
		case extZero:
			clear(p[:n])
		case extBacking:
			err = q.readBacking(p[:n], off)
		case extCompressed:
			err = q.readCompressed(p[:n], off, e)
		}
		if err != nil {
			return err
		}
		p, off = p[n:], off+n
	}
	return nil
}

// readBacking reads from the backing image; beyond its size, zeros.
func (q *qcow2Image) readBacking(p []byte, off int64) error {
	if q.backing == nil || off >= q.bsize {
		clear(p)
		return nil
	}
	n := min(int64(len(p)), q.bsize-off)
	if err := q.backing.readAt(p[:n], off); err != nil {
		return err
	}
	clear(p[n:])
	return nil
}

// readCompressed inflates the compressed cluster of L2 entry e (raw
// deflate, QEMU block/qcow2-threads.c) and copies the part at off.
func (q *qcow2Image) readCompressed(p []byte, off int64, e uint64) error {
	q.zmu.Lock()
	defer q.zmu.Unlock()
	if err := q.inflate(e); err != nil {
		return err
	}
	copy(p, q.zout[off&(q.cs-1):])
	return nil
}

// inflate fills zout with the cluster of compressed L2 entry e (zmu held).
func (q *qcow2Image) inflate(e uint64) error {
	if q.zkey == e && q.zout != nil {
		return nil
	}
	q.zkey = 0
	co := int64(e & q.coMask)
	nsec := int64((e>>q.csShift)&q.csMask) + 1
	csize := nsec*512 - co&511
	if co == 0 || csize <= 0 {
		return corrupt("compressed cluster descriptor %#x", e)
	}
	if q.zout == nil {
		q.zout = make([]byte, q.cs)
		q.zin = make([]byte, q.cs+1024)
	}
	csize = min(csize, int64(len(q.zin)))
	in := q.zin[:csize]
	if err := q.h.readAt(in, co); err != nil { // beyond EOF: zeros, as QEMU
		return err
	}
	q.zbuf.Reset(in)
	if q.zread == nil {
		q.zread = flate.NewReader(&q.zbuf)
	} else if err := q.zread.(flate.Resetter).Reset(&q.zbuf, nil); err != nil {
		return err
	}
	// QEMU accepts a stream that fills the cluster, ended or not.
	if _, err := io.ReadFull(q.zread, q.zout); err != nil {
		return corrupt("compressed cluster at %#x: %v", co, err)
	}
	q.zkey = e
	return nil
}

// writeAt writes p at guest offset off: in place where the cluster is
// allocated and owned (COPIED), else through allocation.
func (q *qcow2Image) writeAt(p []byte, off int64) error {
	for len(p) > 0 {
		n := min(int64(len(p)), q.cs-off&(q.cs-1))
		q.mu.Lock()
		host, ok, err := q.inPlace(off, n)
		q.mu.Unlock()
		if err != nil {
			return err
		}
		if ok {
			err = q.h.writeAt(p[:n], host)
		} else {
			q.mu.Lock()
			if q.esz == 16 {
				err = q.subWrite(p[:n], off)
			} else if off&(q.cs-1) == 0 && int64(len(p)) >= 2*q.cs {
				n, err = q.allocRun(p, off)
			} else {
				err = q.allocWrite(p[:n], off)
			}
			q.mu.Unlock()
		}
		if err != nil {
			return err
		}
		p, off = p[n:], off+n
	}
	return nil
}

// inPlace returns the host offset for guest off if its cluster can be
// written in place (mu held).
func (q *qcow2Image) inPlace(off, n int64) (int64, bool, error) {
	kind, host, e, run, err := q.lookup(off, n)
	if err != nil || kind != extData || e&oflagCopied == 0 || run < n {
		return 0, false, err
	}
	base := host &^ (q.cs - 1)
	if q.metaOverlap(base, q.cs) {
		return 0, false, corrupt("data cluster at %#x overlaps metadata", base)
	}
	if base >= q.next {
		// Allocated clusters lie inside the file (reads of a hostile
		// offset beyond it see zeros, as in QEMU; writes are refused
		// rather than growing the file to it).
		return 0, false, corrupt("data cluster at %#x beyond the end of the image", base)
	}
	return host, true, nil
}

// l2For returns the L2 table offset of l1 index l1i for an update (0 if
// none yet); a shared L2 table (no COPIED flag) is refused.
func (q *qcow2Image) l2For(l1i int64) (int64, error) {
	if l1i >= int64(len(q.l1)) {
		return 0, corrupt("L1 index %d beyond the table", l1i)
	}
	e := q.l1[l1i]
	off := int64(e & l1OffsetMask)
	if off != 0 && e&oflagCopied == 0 {
		return 0, unsupported("writing to a shared L2 table (L1 entry %#x without COPIED)", e)
	}
	return off, nil
}

// allocWrite writes p (inside one cluster) at guest off into a newly
// allocated cluster holding the old contents around it (mu held).
func (q *qcow2Image) allocWrite(p []byte, off int64) error {
	host, ok, err := q.inPlace(off, int64(len(p))) // another writer may have allocated it meanwhile
	if err != nil {
		return err
	}
	if ok {
		return q.h.writeAt(p, host)
	}
	base := off &^ (q.cs - 1)
	kind, _, old, _, err := q.lookup(base, q.cs)
	if err != nil {
		return err
	}
	// The old contents of the whole cluster (extended L2 is never written).
	switch {
	case int64(len(p)) == q.cs:
	case kind == extCompressed:
		q.zmu.Lock()
		err = q.inflate(old)
		if err == nil {
			copy(q.cow, q.zout)
		}
		q.zmu.Unlock()
	case kind == extBacking:
		err = q.readBacking(q.cow, base)
	case kind == extZero:
		clear(q.cow)
	case kind == extData: // allocated but shared (not COPIED)
		err = q.h.readAt(q.cow, int64(old&l2OffsetMask))
	}
	if err != nil {
		return err
	}
	copy(q.cow[off-base:], p)
	return q.installCluster(base, q.cow, old)
}

// installCluster writes a full cluster of data for guest cluster base
// into a new host cluster and points the L2 entry at it; old is the
// previous L2 entry, whose clusters are freed afterwards (mu held).
func (q *qcow2Image) installCluster(base int64, data []byte, old uint64) error {
	l1i := base >> (q.cbits + q.l2bits)
	l2off, err := q.l2For(l1i)
	if err != nil {
		return err
	}
	dc, err := q.allocCluster()
	if err != nil {
		return err
	}
	if err := q.h.writeAt(data, dc); err != nil {
		return err
	}
	if err := q.addRef(dc, 1); err != nil {
		return err
	}
	return q.setEntry(base, l2off, uint64(dc)|oflagCopied, old)
}

// setEntry makes the L2 entry of guest cluster base newE (allocating the
// L2 table if l2off is 0), then frees what old referenced (mu held). The
// new entry's data and refcounts are already written.
func (q *qcow2Image) setEntry(base, l2off int64, newE, old uint64) error {
	return q.setEntryBm(base, l2off, newE, allAlloc, old)
}

// allAlloc is the subcluster bitmap of a fully allocated cluster.
const allAlloc = 0xffffffff

// setEntryBm is setEntry with the subcluster bitmap of extended L2
// entries (ignored for 8-byte entries).
func (q *qcow2Image) setEntryBm(base, l2off int64, newE, bm, old uint64) error {
	l1i := base >> (q.cbits + q.l2bits)
	l2i := (base >> q.cbits) & (1<<q.l2bits - 1)
	be := binary.BigEndian
	if l2off == 0 {
		nt, err := q.allocCluster()
		if err != nil {
			return err
		}
		clear(q.l2nb)
		be.PutUint64(q.l2nb[l2i*q.esz:], newE)
		if q.esz == 16 {
			be.PutUint64(q.l2nb[l2i*16+8:], bm)
		}
		if err := q.h.writeAt(q.l2nb, nt); err != nil {
			return err
		}
		if err := q.addRef(nt, 1); err != nil {
			return err
		}
		if err := q.h.barrier(); err != nil {
			return err
		}
		var b [8]byte
		e := uint64(nt) | oflagCopied
		be.PutUint64(b[:], e)
		if err := q.h.writeAt(b[:], int64(q.hdr.l1Off)+l1i*8); err != nil {
			return err
		}
		q.l1[l1i] = e
		i := q.l2c.victim()
		copy(q.l2c.data[i], q.l2nb)
		q.l2c.insert(i, nt)
	} else {
		t, err := q.l2Table(l2off)
		if err != nil {
			return err
		}
		if err := q.h.barrier(); err != nil {
			return err
		}
		var b [16]byte
		be.PutUint64(b[:], newE)
		be.PutUint64(b[8:], bm)
		if err := q.h.writeAt(b[:q.esz], l2off+l2i*q.esz); err != nil {
			q.l2c.drop(l2off)
			return err
		}
		copy(t[l2i*q.esz:], b[:q.esz])
	}
	return q.free(old)
}

// maxRun bounds the clusters one allocating run covers.
const maxRun = 256

// allocRun writes whole clusters from p at cluster-aligned guest off into
// newly allocated, contiguous host clusters: one data write, their
// refcounts, one barrier, one write of their L2 entries, then the old
// clusters freed. It returns the bytes written; when a run is not
// possible it writes one cluster through allocWrite (mu held).
func (q *qcow2Image) allocRun(p []byte, off int64) (int64, error) {
	l1i := off >> (q.cbits + q.l2bits)
	l2off, err := q.l2For(l1i)
	if err != nil {
		return 0, err
	}
	l2i := (off >> q.cbits) & (1<<q.l2bits - 1)
	m := min(int64(len(p))>>q.cbits, 1<<q.l2bits-l2i, maxRun)
	if l2off == 0 || q.esz != 8 || m < 2 {
		return q.cs, q.allocWrite(p[:q.cs], off)
	}
	t, err := q.l2Table(l2off)
	if err != nil {
		return 0, err
	}
	// Clusters not written in place, and free host clusters at the end.
	var k int64
	for k = 0; k < m; k++ {
		e := binary.BigEndian.Uint64(t[(l2i+k)*8:])
		if e&oflagCompr == 0 && e&oflagZero == 0 && e&l2OffsetMask != 0 && e&oflagCopied != 0 {
			break // allocated and owned: in place
		}
		if uint64(q.next+(k+1)*q.cs) >= 1<<56 {
			break
		}
		if r, err := q.refcount(q.next + k*q.cs); err != nil || r != 0 {
			if err != nil {
				return 0, err
			}
			break
		}
		q.olds[k] = e
	}
	if k < 2 {
		return q.cs, q.allocWrite(p[:q.cs], off)
	}
	start := q.next
	q.next += k * q.cs
	if err := q.h.writeAt(p[:k*q.cs], start); err != nil {
		return 0, err
	}
	for i := int64(0); i < k; i++ {
		if err := q.addRef(start+i*q.cs, 1); err != nil {
			return 0, err
		}
	}
	if err := q.h.barrier(); err != nil {
		return 0, err
	}
	if t, err = q.l2Table(l2off); err != nil {
		return 0, err
	}
	for i := int64(0); i < k; i++ {
		binary.BigEndian.PutUint64(t[(l2i+i)*8:], uint64(start+i*q.cs)|oflagCopied)
	}
	if err := q.h.writeAt(t[l2i*8:(l2i+k)*8], l2off+l2i*8); err != nil {
		q.l2c.drop(l2off) // the cached copy no longer matches the file
		return 0, err
	}
	for i := int64(0); i < k; i++ {
		if err := q.free(q.olds[i]); err != nil {
			return 0, err
		}
	}
	return k * q.cs, nil
}

// free drops the references of an L2 entry that is no longer used.
func (q *qcow2Image) free(e uint64) error {
	var first, last int64
	switch {
	case e&oflagCompr != 0:
		co := int64(e & q.coMask)
		nsec := int64((e>>q.csShift)&q.csMask) + 1
		first = co &^ (q.cs - 1)
		last = (co&^511 + nsec*512 - 1) &^ (q.cs - 1)
	case e&l2OffsetMask != 0:
		first = int64(e & l2OffsetMask)
		last = first
	default:
		return nil
	}
	if err := q.h.barrier(); err != nil {
		return err
	}
	for c := first; c <= last; c += q.cs {
		if err := q.addRef(c, -1); err != nil {
			return err
		}
	}
	return nil
}

// allocCluster returns a free host cluster at the end of the image
// (freed clusters are not reused: a leak, never a double use).
func (q *qcow2Image) allocCluster() (int64, error) {
	for tries := 0; tries < 1<<16; tries++ {
		c := q.next
		if uint64(c) >= 1<<56 {
			return 0, fmt.Errorf("qcow2: %s: image full (host offset %#x)", q.h.path, c)
		}
		q.next += q.cs
		r, err := q.refcount(c)
		if err != nil {
			return 0, err
		}
		if r == 0 {
			return c, nil
		}
	}
	return 0, corrupt("no free cluster after the end of the file (refcounts claim clusters beyond it)")
}

// refBlock returns the refcount block covering host cluster c, or nil if
// none is allocated (mu held).
func (q *qcow2Image) refBlock(c int64) ([]byte, int64, error) {
	ri := (c >> q.cbits) >> q.rbbits
	if ri >= int64(len(q.rt)) {
		return nil, 0, nil
	}
	rb := int64(q.rt[ri] & rtOffsetMask)
	if rb == 0 {
		return nil, 0, nil
	}
	if rb%q.cs != 0 || q.metaOverlap(rb, q.cs) {
		return nil, 0, corrupt("refcount block offset %#x", rb)
	}
	if t := q.rbc.get(rb); t != nil {
		return t, rb, nil
	}
	i := q.rbc.victim()
	if err := q.h.readFull(q.rbc.data[i], rb); err != nil {
		return nil, 0, err
	}
	q.rbc.insert(i, rb)
	return q.rbc.data[i], rb, nil
}

func (q *qcow2Image) refcount(c int64) (uint64, error) {
	t, _, err := q.refBlock(c)
	if t == nil || err != nil {
		return 0, err
	}
	return getRef(t, uint64((c>>q.cbits)&(1<<q.rbbits-1)), q.rbits), nil
}

// getRef and putRef read and write entry i of a refcount block of
// refcount width bits (qcow2.txt: big-endian entries; below 8 bits,
// packed from the least significant bit of each byte).
func getRef(t []byte, i uint64, bits uint) uint64 {
	switch bits {
	case 8:
		return uint64(t[i])
	case 16:
		return uint64(binary.BigEndian.Uint16(t[i*2:]))
	case 32:
		return uint64(binary.BigEndian.Uint32(t[i*4:]))
	case 64:
		return binary.BigEndian.Uint64(t[i*8:])
	}
	bit := i * uint64(bits)
	return uint64(t[bit/8]>>(bit%8)) & (1<<bits - 1)
}

func putRef(t []byte, i uint64, bits uint, v uint64) {
	switch bits {
	case 8:
		t[i] = byte(v)
	case 16:
		binary.BigEndian.PutUint16(t[i*2:], uint16(v))
	case 32:
		binary.BigEndian.PutUint32(t[i*4:], uint32(v))
	case 64:
		binary.BigEndian.PutUint64(t[i*8:], v)
	default:
		bit := i * uint64(bits)
		m := byte(1<<bits-1) << (bit % 8)
		t[bit/8] = t[bit/8]&^m | byte(v)<<(bit%8)&m
	}
}

// addRef changes host cluster c's refcount by delta, allocating the
// refcount block first if needed (mu held).
func (q *qcow2Image) addRef(c int64, delta int) error {
	return q.addRefDepth(c, delta, 0)
}

func (q *qcow2Image) addRefDepth(c int64, delta int, depth int) error {
	if depth > 4 {
		return corrupt("refcount block allocation does not converge")
	}
	t, rb, err := q.refBlock(c)
	if err != nil {
		return err
	}
	if t == nil {
		if delta < 0 {
			return corrupt("freeing cluster %#x without a refcount block", c)
		}
		if t, rb, err = q.newRefBlock(c, depth); err != nil {
			return err
		}
	}
	i := uint64((c >> q.cbits) & (1<<q.rbbits - 1))
	v := getRef(t, i, q.rbits)
	switch {
	case delta > 0 && v >= q.rmax:
		return corrupt("refcount overflow for cluster %#x", c)
	case delta < 0 && v == 0:
		return corrupt("refcount underflow for cluster %#x", c)
	}
	putRef(t, i, q.rbits, uint64(int64(v)+int64(delta)))
	// Write back the aligned 8 bytes holding the entry.
	w := int64(i*uint64(q.rbits)/8) &^ 7
	return q.h.writeAt(t[w:w+8], rb+w)
}

// newRefBlock allocates the refcount block covering host cluster c: a
// zeroed cluster at the end of the file counting itself if it lies in its
// own range, else counted by another block; written, then (after a
// barrier) entered in the refcount table.
func (q *qcow2Image) newRefBlock(c int64, depth int) ([]byte, int64, error) {
	ri := (c >> q.cbits) >> q.rbbits
	if ri >= int64(len(q.rt)) {
		if err := q.growRefTable(ri); err != nil {
			return nil, 0, err
		}
		if t, rb, err := q.refBlock(c); t != nil || err != nil {
			return t, rb, err // the growth created it
		}
	}
	nb, err := q.allocCluster()
	if err != nil {
		return nil, 0, err
	}
	self := (nb>>q.cbits)>>q.rbbits == ri
	if !self {
		// Counted by another block (before the slot below is taken: this
		// may use the cache).
		if err := q.addRefDepth(nb, 1, depth+1); err != nil {
			return nil, 0, err
		}
	}
	i := q.rbc.victim()
	t := q.rbc.data[i]
	clear(t)
	if self {
		putRef(t, uint64((nb>>q.cbits)&(1<<q.rbbits-1)), q.rbits, 1)
	}
	if err := q.h.writeAt(t, nb); err != nil {
		return nil, 0, err
	}
	if err := q.h.barrier(); err != nil {
		return nil, 0, err
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(nb))
	if err := q.h.writeAt(b[:], int64(q.hdr.rtOff)+ri*8); err != nil {
		return nil, 0, err
	}
	q.rt[ri] = uint64(nb)
	q.rbc.insert(i, nb)
	return t, nb, nil
}

// zeroRange makes whole clusters read as zeros: v3 zero flag (the data
// cluster freed), v2 unallocated when there is no backing file. Partial
// clusters, and v2 clusters over a backing file, are written with zeros
// if force, else left alone (a discard).
func (q *qcow2Image) zeroRange(off, n int64, force bool) error {
	for n > 0 {
		k := min(n, q.cs-off&(q.cs-1))
		whole := k == q.cs
		var err error
		if whole && (q.hdr.version == 3 || q.backing == nil) {
			q.mu.Lock()
			err = q.zeroCluster(off)
			q.mu.Unlock()
		} else if force {
			err = q.writeZeroBytes(off, k)
		}
		if err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

func (q *qcow2Image) writeZeroBytes(off, n int64) error {
	for n > 0 {
		k := min(n, int64(len(zeroBuf)))
		if err := q.writeAt(zeroBuf[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}

func (q *qcow2Image) zeroCluster(base int64) error {
	kind, _, old, _, err := q.lookup(base, q.cs)
	if err != nil {
		return err
	}
	if q.esz == 8 && (kind == extZero && old&l2OffsetMask == 0 || kind == extBacking && q.backing == nil && old == 0) {
		return nil // already reads as zeros, nothing allocated
	}
	l2off, err := q.l2For(base >> (q.cbits + q.l2bits))
	if err != nil {
		return err
	}
	var newE uint64
	if q.esz == 16 {
		return q.setEntryBm(base, l2off, 0, allAlloc<<32, old) // every subcluster reads as zeros
	}
	if q.hdr.version == 3 {
		newE = oflagZero
	}
	return q.setEntry(base, l2off, newE, old)
}

func (q *qcow2Image) discard(off, n int64) error { return q.zeroRange(off, n, false) }
func (q *qcow2Image) writeZeroes(off, n int64, unmap bool) error {
	return q.zeroRange(off, n, true)
}

// growRefTable replaces the refcount table by a larger one covering
// refcount table index ri: the new table (old entries copied) and any
// refcount blocks it needs for itself are written at the end of the file,
// their refcounts set, then — after a barrier — the header is switched to
// it with one write, then the old table's clusters are freed. A crash
// before the switch leaves unreferenced or leaked clusters only.
func (q *qcow2Image) growRefTable(ri int64) error {
	entries := max(int64(len(q.rt))*2, ri+1+16)
	per := q.cs / 8
	tc := (entries + per - 1) / per
	if tc*q.cs > maxRefTableBytes {
		return unsupported("refcount table would exceed %d bytes", maxRefTableBytes)
	}
	entries = tc * per
	nt := make([]uint64, entries)
	copy(nt, q.rt)
	// The table's clusters, then the blocks they need, at the end.
	start := q.next
	for c := start; c < start+tc*q.cs; c += q.cs {
		if r, err := q.refcount(c); err != nil || r != 0 {
			if err == nil {
				err = corrupt("refcounts claim clusters beyond the end of the file")
			}
			return err
		}
	}
	end := start + tc*q.cs
	newBlocks := map[int64][]byte{} // refcount table index → block contents
	var order []int64
	need := []int64{}
	for c := start; c < end; c += q.cs {
		need = append(need, c)
	}
	for i := 0; i < len(need); i++ {
		c := need[i]
		bi := (c >> q.cbits) >> q.rbbits
		if bi >= entries {
			return unsupported("refcount table growth does not cover its own blocks")
		}
		if bi < int64(len(q.rt)) && q.rt[bi] != 0 {
			if err := q.addRef(c, 1); err != nil {
				return err
			}
			continue
		}
		blk, ok := newBlocks[bi]
		if !ok {
			blk = alignedBuf(int(q.cs), 4096)
			newBlocks[bi] = blk
			order = append(order, bi)
			nt[bi] = uint64(end)
			need = append(need, end)
			end += q.cs
		}
		j := uint64((c >> q.cbits) & (1<<q.rbbits - 1))
		putRef(blk, j, q.rbits, getRef(blk, j, q.rbits)+1)
	}
	q.next = end
	for _, bi := range order {
		if err := q.h.writeAt(newBlocks[bi], int64(nt[bi])); err != nil {
			return err
		}
	}
	raw := alignedBuf(int(tc*q.cs), 4096)
	for i, e := range nt {
		binary.BigEndian.PutUint64(raw[i*8:], e)
	}
	if err := q.h.writeAt(raw, start); err != nil {
		return err
	}
	if err := q.h.barrier(); err != nil {
		return err
	}
	var hb [12]byte
	binary.BigEndian.PutUint64(hb[:], uint64(start))
	binary.BigEndian.PutUint32(hb[8:], uint32(tc))
	if err := q.h.writeAt(hb[:], 48); err != nil {
		return err
	}
	if err := q.h.barrier(); err != nil {
		return err
	}
	oldOff, oldClusters := int64(q.hdr.rtOff), int64(q.hdr.rtClusters)
	q.rt = nt
	q.hdr.rtOff, q.hdr.rtClusters = uint64(start), uint32(tc)
	for c := oldOff; c < oldOff+oldClusters*q.cs; c += q.cs {
		if err := q.addRef(c, -1); err != nil {
			return err
		}
	}
	return nil
}

// subWrite writes p (inside one cluster) at guest off in an image with
// extended L2 entries (mu held). A compressed cluster is rewritten whole;
// otherwise only the touched subclusters are written — into the
// cluster's host cluster, allocated now if it has none — with the parts
// of partially covered, unallocated subclusters filled from their old
// contents (zeros or the backing file); then, after a barrier, their
// allocation bits are set and zero bits cleared (qcow2.txt, "Extended L2
// Entries"). Allocated partial subclusters are not read back: only the
// new bytes are written there.
func (q *qcow2Image) subWrite(p []byte, off int64) error {
	n := int64(len(p))
	if host, ok, err := q.inPlace(off, n); err != nil || ok {
		if err != nil {
			return err
		}
		return q.h.writeAt(p, host)
	}
	base := off &^ (q.cs - 1)
	in := off - base
	l1i := base >> (q.cbits + q.l2bits)
	l2i := (base >> q.cbits) & (1<<q.l2bits - 1)
	l2off, err := q.l2For(l1i)
	if err != nil {
		return err
	}
	var e, bm uint64
	if l2off != 0 {
		t, err := q.l2Table(l2off)
		if err != nil {
			return err
		}
		e, bm = binary.BigEndian.Uint64(t[l2i*16:]), binary.BigEndian.Uint64(t[l2i*16+8:])
	}
	if e&oflagCompr != 0 {
		return q.allocWrite(p, off)
	}
	if e&oflagCopied == 0 && e&l2OffsetMask != 0 {
		return unsupported("writing to a shared cluster (L2 entry %#x without COPIED)", e)
	}
	alloc, zero := uint32(bm), uint32(bm>>32)
	if alloc&zero != 0 {
		return corrupt("subcluster bitmap %#x", bm)
	}
	host := int64(e & l2OffsetMask)
	fresh := host == 0
	if fresh {
		if alloc != 0 {
			return corrupt("subcluster bitmap %#x of an unallocated cluster", bm)
		}
		if host, err = q.allocCluster(); err != nil {
			return err
		}
	} else if q.metaOverlap(host, q.cs) || host >= q.next {
		return corrupt("data cluster at %#x overlaps metadata or lies beyond the image", host)
	}
	scs := int64(1) << q.sbits
	first, last := uint(in>>q.sbits), uint((in+n-1)>>q.sbits)
	start, end := in, in+n
	if alloc&(1<<first) == 0 {
		start = int64(first) * scs
	}
	if alloc&(1<<last) == 0 {
		end = int64(last+1) * scs
	}
	fill := func(from, to int64, sc uint) error {
		if from >= to {
			return nil
		}
		if zero&(1<<sc) != 0 {
			clear(q.cow[from:to])
			return nil
		}
		return q.readBacking(q.cow[from:to], base+from)
	}
	if err := fill(start, in, first); err != nil {
		return err
	}
	if err := fill(in+n, end, last); err != nil {
		return err
	}
	copy(q.cow[in:], p)
	if err := q.h.writeAt(q.cow[start:end], host+start); err != nil {
		return err
	}
	if fresh {
		if err := q.addRef(host, 1); err != nil {
			return err
		}
	}
	var bits uint32
	for i := first; i <= last; i++ {
		bits |= 1 << i
	}
	alloc |= bits
	zero &^= bits
	return q.setEntryBm(base, l2off, uint64(host)|oflagCopied, uint64(zero)<<32|uint64(alloc), 0)
}
