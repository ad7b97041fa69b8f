package memory

import (
	"fmt"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// mmapMapper maps pages of a memfd with MAP_POPULATE: like privcmd's
// mmapbatch, which installs a PTE for every requested page at map time, a
// map costs a system call plus work per page, and an unmap tears it down.
// It stands in for foreign mappings when measuring the bucket size.
type mmapMapper struct {
	fd    int
	pages uint64
}

func newMmapMapper(tb testing.TB, size uint64) *mmapMapper {
	fd, err := unix.MemfdCreate("godm-bench-guest", 0)
	if err != nil {
		tb.Skipf("memfd_create: %v (bucket-size benchmark needs it)", err)
	}
	tb.Cleanup(func() { unix.Close(fd) })
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		tb.Fatal(err)
	}
	// Allocate the guest's pages up front, so that maps measure page-table
	// set-up and not first-touch allocation (guest RAM exists already).
	if err := unix.Fallocate(fd, 0, 0, int64(size)); err != nil {
		tb.Skipf("fallocate: %v", err)
	}
	return &mmapMapper{fd: fd, pages: size / PageSize}
}

func (m *mmapMapper) MapPages(gfns []uint64, writable bool) (Mapping, error) {
	n := uint64(len(gfns))
	if gfns[0] >= m.pages {
		return nil, fmt.Errorf("mmap mapper: gfn %#x beyond guest", gfns[0])
	}
	n = min(n, m.pages-gfns[0])
	b, err := unix.Mmap(m.fd, int64(gfns[0]*PageSize), int(n*PageSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap mapper: %w", err)
	}
	return &mmapMapping{b: b, n: int(n)}, nil
}

type mmapMapping struct {
	once sync.Once
	b    []byte
	n    int
}

func (m *mmapMapping) Bytes() []byte { return m.b }

func (m *mmapMapping) PageErr(i int) error {
	if i >= m.n {
		return ErrFakeHole
	}
	return nil
}

func (m *mmapMapping) Close() (err error) {
	m.once.Do(func() { err = unix.Munmap(m.b) })
	return err
}

// BenchmarkMapCache_BucketSize measures the bucket size against the cost
// of real mappings (mmap with MAP_POPULATE of a 256 MiB memfd guest) on a
// mixed DMA workload, with the cache bounded to 1/4 (thrashing) or all
// (warm) of the guest.
//
//	go test -run XXX -bench BucketSize -benchtime 50000x ./memory
func BenchmarkMapCache_BucketSize(b *testing.B) {
	const guest = 256 << 20
	m := newMmapMapper(b, guest)
	for _, bound := range []uint64{guest / 4, guest} {
		for _, shift := range []uint{16, 18, 20, 21, 22} {
			b.Run(fmt.Sprintf("bound=%dMiB/bucket=%dKiB", bound>>20, 1<<shift>>10), func(b *testing.B) {
				benchWorkload(b, m, shift, guest, bound)
			})
		}
	}
}
