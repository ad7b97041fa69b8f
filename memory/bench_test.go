package memory

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkMapCache_Hit measures a copy that hits the cache (the DMA fast
// path): one lookup, one reference taken and dropped, one copy.
func BenchmarkMapCache_Hit(b *testing.B) {
	c, err := NewMapCache(FromBytes(pattern(8<<20)), MapCacheConfig{})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4096)
	if err := c.Read(0x100000, buf); err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{8, 64, 4096} {
		b.Run(fmt.Sprintf("read/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				if err := c.Read(0x100040, buf[:n]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("write/8", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Write(0x100040, buf[:8]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("read/8/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			p := make([]byte, 8)
			for pb.Next() {
				if err := c.Read(0x100040, p); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("pin/64", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r, err := c.Pin(0x100040, 64)
			if err != nil {
				b.Fatal(err)
			}
			r.Release()
		}
	})
	log, err := NewDirtyLog(8 << 20)
	if err != nil {
		b.Fatal(err)
	}
	cd, err := NewMapCache(FromBytes(pattern(8<<20)), MapCacheConfig{Dirty: log})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("write/8/dirty-log", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := cd.Write(0x100040, buf[:8]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchWorkload runs a DMA-like workload over guest memory: a mix of
// sequential 64 KiB transfers (block I/O) and random 2 KiB ones (network
// buffers, descriptors), with a working set larger than the cache bound.
func benchWorkload(b *testing.B, m Mapper, shift uint, guest, bound uint64) {
	c, err := NewMapCache(m, MapCacheConfig{BucketShift: shift, MaxBytes: bound})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 64<<10)
	seq := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		var gpa uint64
		var n int
		if rng.IntN(2) == 0 {
			gpa, n = seq, len(buf)
			seq = (seq + uint64(n)) % guest
		} else {
			gpa, n = rng.Uint64N(guest-2048), 2048
		}
		if err := c.Read(GPA(gpa), buf[:n]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(c.Stats().Maps)/float64(b.N), "maps/op")
}
