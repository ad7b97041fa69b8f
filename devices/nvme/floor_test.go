package nvme

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"godm/devices"
	"godm/memory"
)

// BenchmarkNVMeVsFloor: 4 KiB random reads of the raw image through the
// controller (a driver in this process: SQ entries, one doorbell per
// batch, completions polled) at queue depth 1 and 31 (a 32-entry queue
// holds 31), alternating, batch by batch in the same loop, with the
// floor: plain pread of 4 KiB at random offsets of the same file, the
// same requests per batch, on 1 thread (qd1) or 2 (qd31: the machine has
// 2 cores). Reported per request: godm-ns and floor-ns, ratio (floor
// time / godm time: 1.0 is as fast as the floor, the goal is
// ≥ 0.8 at depth 32) and godm-allocs (testing.AllocsPerRun over a batch).
//
//	go test -run '^$' -bench NVMeVsFloor -benchtime 3000x -count 3 ./devices/nvme
func BenchmarkNVMeVsFloor(b *testing.B) {
	for _, qd := range []int{1, ioQ - 1} {
		b.Run(fmt.Sprintf("randread/qd%d", qd), func(b *testing.B) {
			r := newRig(b)
			r.enable()
			r.ioQueues(0)
			l := newLean(r)
			f, err := os.Open(r.path)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			const blocks = diskSize / 4096
			rng := rand.New(rand.NewPCG(7, uint64(qd)))
			batch := func() {
				for j := range qd {
					l.c.fillRW(oRead, uint64(rng.IntN(blocks))*8, 8, dataAt+uint64(j)*0x1000, 0)
					_ = l.r.mem.Write(memory.GPA(sq1At+uint64(l.tail)*64), l.c[:])
					l.tail = (l.tail + 1) % ioQ
				}
				l.h.Write(devices.Access{Offset: regDoorbell + 8, Size: 4}, uint64(l.tail))
				for range qd {
					for {
						_ = l.r.mem.Read(memory.GPA(cq1At+uint64(l.head)*16), l.e[:])
						if (l.e[14]&1 != 0) == l.ph {
							break
						}
						runtime.Gosched()
					}
					if st := uint16(l.e[14])>>1 | uint16(l.e[15])<<7; st != 0 {
						panic(fmt.Sprintf("status %#x", st))
					}
					l.head++
					if l.head == ioQ {
						l.head, l.ph = 0, !l.ph
					}
				}
				l.h.Write(devices.Access{Offset: regDoorbell + 12, Size: 4}, uint64(l.head))
			}
			threads := min(qd, 2)
			bufs := make([][]byte, threads)
			rngs := make([]*rand.Rand, threads)
			for i := range bufs {
				bufs[i] = make([]byte, 4096)
				rngs[i] = rand.New(rand.NewPCG(9, uint64(i)))
			}
			var wg sync.WaitGroup
			floor := func() {
				for t := range threads {
					n := qd / threads
					if t == 0 {
						n += qd % threads
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range n {
							if _, err := f.ReadAt(bufs[t], int64(rngs[t].IntN(blocks))*4096); err != nil {
								panic(err)
							}
						}
					}()
				}
				wg.Wait()
			}
			batch()
			allocs := testing.AllocsPerRun(20, batch)
			var tg, tf time.Duration
			b.ResetTimer()
			for b.Loop() {
				t0 := time.Now()
				batch()
				t1 := time.Now()
				floor()
				tg += t1.Sub(t0)
				tf += time.Since(t1)
			}
			n := float64(b.N * qd)
			b.ReportMetric(float64(tg.Nanoseconds())/n, "godm-ns/req")
			b.ReportMetric(float64(tf.Nanoseconds())/n, "floor-ns/req")
			b.ReportMetric(float64(tf)/float64(tg), "ratio")
			b.ReportMetric(allocs/float64(qd), "godm-allocs/req")
		})
	}
}
