package virtioblk

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"godm/block"
	"godm/memory"
)

// BenchmarkVirtioBlk: 4 KiB random reads and writes over a 64 MiB raw
// file through the device (a driver in this process: descriptors, avail
// ring, legacy kick, used ring polled), at queue depth 1 and 32, next to
// the floor, plain pread/pwrite at the same offsets with the same
// concurrency (1 thread, or 2 for depth 32: the machine has 2 cores).
// ns/op is per request.
//
//	go test -run '^$' -bench VirtioBlk -benchtime 20000x -count 3 ./devices/virtioblk
func BenchmarkVirtioBlk(b *testing.B) {
	const size = 64 << 20
	path := filepath.Join(b.TempDir(), "bench.img")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	for off := 0; off < size; off += len(buf) {
		f.Write(buf)
	}
	f.Sync()
	for _, op := range []string{"randread", "randwrite"} {
		for _, qd := range []int{1, 32} {
			b.Run(fmt.Sprintf("godm/%s/qd%d", op, qd), func(b *testing.B) { benchDevice(b, path, op == "randwrite", qd) })
			b.Run(fmt.Sprintf("floor/%s/qd%d", op, qd), func(b *testing.B) { benchFloor(b, f, op == "randwrite", qd) })
		}
	}
	f.Close()
}

func benchDevice(b *testing.B, path string, write bool, qd int) {
	mem := make([]byte, memSize)
	mc, err := memory.NewMapCache(memory.FromBytes(mem), memory.MapCacheConfig{BucketShift: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer mc.Close()
	drv, err := block.Open(path, block.Options{Format: "raw"})
	if err != nil {
		b.Fatal(err)
	}
	defer drv.Close()
	d, err := New(Config{Memory: mc, Drive: drv})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	r := &rig{mem: mem, mc: mc, d: d, leg: d.Transport().LegacyRegs()}
	if r.ar, err = mc.Pin(availAt, 0x1000); err != nil {
		b.Fatal(err)
	}
	defer r.ar.Release()
	if r.ur, err = mc.Pin(usedAt, 0x1000); err != nil {
		b.Fatal(err)
	}
	defer r.ur.Release()
	r.legacy(0)
	typ := uint32(tIn)
	dflag := uint16(3)
	if write {
		typ, dflag = tOut, 1
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const sectors = (64 << 20) / 512
	// Request i: descriptors 3i..3i+2, header at bufBase+i*0x2000.
	var h [16]byte
	setHdr := func(i int) {
		binary.LittleEndian.PutUint32(h[0:], typ)
		binary.LittleEndian.PutUint64(h[8:], uint64(rng.IntN(sectors/8))*8)
		r.put(bufBase+uint64(i)*0x2000, h[:])
	}
	for i := range qd {
		a := uint64(bufBase + i*0x2000)
		r.desc(ringBase, uint16(3*i), a, 16, 1, uint16(3*i+1))
		r.desc(ringBase, uint16(3*i+1), bufBase+0x100000+uint64(i)*0x1000, 4096, dflag, uint16(3*i+2))
		r.desc(ringBase, uint16(3*i+2), a+0x800, 1, 2, 0)
	}
	b.ReportAllocs()
	b.ResetTimer()
	issued, done := 0, 0
	var seen uint16
	for i := 0; i < min(qd, b.N); i++ {
		setHdr(i)
		r.publish(uint16(3 * i))
		issued++
	}
	r.kick()
	for done < b.N {
		u, _ := r.ur.Load16(2)
		if u == seen {
			runtime.Gosched()
			continue
		}
		kick := false
		for ; seen != u; seen++ {
			done++
			id, _ := r.ur.Load32(4 + 8*int(seen%QueueSize))
			if issued < b.N {
				setHdr(int(id) / 3)
				r.publish(uint16(id))
				issued++
				kick = true
			}
		}
		if kick {
			r.kick()
		}
	}
}

func benchFloor(b *testing.B, f *os.File, write bool, qd int) {
	threads := 1
	if qd > 1 {
		threads = 2
	}
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N / threads
	for t := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(t), 2))
			p := make([]byte, 4096)
			for range per {
				off := int64(rng.IntN((64<<20)/4096)) * 4096
				if write {
					f.WriteAt(p, off)
				} else {
					f.ReadAt(p, off)
				}
			}
		}()
	}
	wg.Wait()
}
