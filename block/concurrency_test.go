package block

import (
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// Four writers through one queue, each owning every fourth 512-byte
// sector: they race on the same clusters (copy-on-write from the backing
// file, allocation, subclusters) but never on the same bytes, so every
// sector must end up as its owner wrote it, and qemu-img check must
// accept the image.
func TestConcurrentSectorWriters(t *testing.T) {
	needQemuImg(t)
	for _, opts := range []string{"cluster_size=4096", "cluster_size=65536,extended_l2=on", "compat=0.10,cluster_size=8192"} {
		t.Run(opts, func(t *testing.T) {
			dir := t.TempDir()
			const size = 1 << 20
			base := filepath.Join(dir, "base.raw")
			model := randomRaw(t, base, size, 11)
			img := filepath.Join(dir, "c.qcow2")
			qemu(t, "qemu-img", "create", "-f", "qcow2", "-o", opts, "-b", "base.raw", "-F", "raw", img, fmt.Sprint(size))
			d, err := Open(img, Options{Format: "qcow2", Cache: CacheUnsafe})
			if err != nil {
				t.Fatal(err)
			}
			q := NewQueue(d, 16, 4)
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					done := make(chan *Request, 4)
					reqs := make([]Request, 4)
					for i := range reqs {
						reqs[i] = Request{Op: OpWrite, Bufs: [][]byte{make([]byte, 512)}, Done: func(r *Request) { done <- r }}
					}
					inflight := 0
					for s := w; s < size/512; s += 4 {
						if s%16 == 15 {
							continue // left to the backing file: copy-on-write must keep it
						}
						var r *Request
						if inflight < len(reqs) {
							r = &reqs[inflight]
							inflight++
						} else {
							r = <-done
							if r.Err != nil {
								t.Error(r.Err)
								return
							}
						}
						for i := range r.Bufs[0] {
							r.Bufs[0][i] = byte(w*64 + s)
						}
						r.Off = int64(s) * 512
						for q.Submit(r) == ErrQueueFull {
							runtime.Gosched() // the other writers hold the slots
						}
					}
					for ; inflight > 0; inflight-- {
						if r := <-done; r.Err != nil {
							t.Error(r.Err)
						}
					}
				}(w)
			}
			wg.Wait()
			q.Close()
			for s := 0; s < size/512; s++ {
				if s%16 == 15 {
					continue
				}
				for i := s * 512; i < s*512+512; i++ {
					model[i] = byte((s%4)*64 + s)
				}
			}
			got := make([]byte, size)
			if err := d.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			d.Close()
			sameBytes(t, "godm", got, model)
			qemuCheck(t, img, false)
			sameBytes(t, "qemu-img", qemuRaw(t, img, "qcow2"), model)
		})
	}
}
