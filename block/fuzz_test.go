package block

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// FuzzQcowHeader: any first cluster gets a header or an error, never a
// panic; an accepted header's tables are bounded and inside the file.
func FuzzQcowHeader(f *testing.F) {
	f.Add(tinyQcow2(1<<20, 16, 3)[:4096], int64(1<<20), false)
	f.Add(tinyQcow2(1<<30, 9, 2)[:512], int64(4096), true)
	f.Fuzz(func(t *testing.T, buf []byte, fileSize int64, writable bool) {
		h, err := parseQcowHeader(buf, fileSize, writable)
		if err != nil {
			return
		}
		if uint64(h.l1Size)*8 > maxL1Bytes || uint64(h.rtClusters)*h.clusterSize() > maxRefTableBytes {
			t.Fatalf("unbounded tables accepted: %+v", h)
		}
		if h.l1Size > 0 && h.l1Off+uint64(h.l1Size)*8 > uint64(fileSize) {
			t.Fatalf("L1 beyond the file accepted: %+v", h)
		}
		if writable && (h.incompat&(incDirty|incCorrupt|incDataFile) != 0 || h.nbSnapshots != 0) {
			t.Fatalf("writable with incompatible features %#x", h.incompat)
		}
	})
}

// FuzzQcowTables: a valid header over fuzzed L1, refcount table,
// refcount block and L2 contents; reading the whole disk, writing,
// zeroing and flushing end in errors or success, never a panic or hang.
func FuzzQcowTables(f *testing.F) {
	seed := make([]byte, 4*512)
	binary.BigEndian.PutUint64(seed[0:], 4*512|oflagCopied) // L1[0] → cluster 4
	binary.BigEndian.PutUint64(seed[512:], 3*512)           // reftable[0]
	f.Add(seed, []byte{1, 0, 0, 0, 0, 0, 0x40, 0x80, 0, 0, 0, 0, 0, 0, 0xa, 0})
	f.Add(make([]byte, 2048), make([]byte, 64))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, tables []byte, l2 []byte) { runTables(t, dir, tables, l2) })
}

func runTables(t *testing.T, dir string, tables []byte, l2 []byte) {
	{
		img := tinyQcow2(64<<10, 9, 3)
		copy(img[512:], tables) // L1, reftable, refblock (cluster 1..3)
		if len(l2) > 512 {
			l2 = l2[:512]
		}
		img = append(img, make([]byte, 512)...) // cluster 4: an L2 table
		copy(img[4*512:], l2)
		p := filepath.Join(dir, "f.qcow2")
		if err := os.WriteFile(p, img, 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := Open(p, Options{Format: "qcow2", Cache: CacheUnsafe, NoLock: true})
		if err != nil {
			return
		}
		defer d.Close()
		buf := make([]byte, 64<<10)
		_ = d.ReadAt(buf, 0)
		_ = d.WriteAt(buf[:1000], 300)
		_ = d.WriteZeroes(1024, 4096, true)
		_ = d.Discard(0, 8192)
		_ = d.ReadAt(buf, 0)
		_ = d.Flush()
		if fi, err := os.Stat(p); err == nil && fi.Size() > 64<<20 {
			t.Fatalf("image grew to %d bytes", fi.Size())
		}
	}
}

// FuzzRefcount: putRef then getRef returns the value (masked to the
// width) and leaves every other entry of the block alone, for every
// refcount width.
func FuzzRefcount(f *testing.F) {
	f.Add(uint8(4), uint16(3), uint64(7), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, order uint8, idx uint16, v uint64, init []byte) {
		bits := uint(1) << (order % 7)
		blk := make([]byte, 512)
		copy(blk, init)
		n := uint64(512*8) / uint64(bits)
		i := uint64(idx) % n
		before := make([]uint64, n)
		for j := range before {
			before[j] = getRef(blk, uint64(j), bits)
		}
		mask := uint64(1)<<bits - 1
		if bits == 64 {
			mask = ^uint64(0)
		}
		putRef(blk, i, bits, v&mask)
		for j := range before {
			got := getRef(blk, uint64(j), bits)
			want := before[j]
			if uint64(j) == i {
				want = v & mask
			}
			if got != want {
				t.Fatalf("bits %d entry %d (wrote %d): %#x, want %#x", bits, j, i, got, want)
			}
		}
	})
}
