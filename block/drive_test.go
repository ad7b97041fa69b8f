package block

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func newRaw(t testing.TB, n int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "d.raw")
	if err := os.WriteFile(p, make([]byte, n), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func newTiny(t testing.TB, size uint64, cbits, version uint32) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "t.qcow2")
	if err := os.WriteFile(p, tinyQcow2(size, cbits, version), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOpenOptionsRefused(t *testing.T) {
	p := newRaw(t, 4096)
	for _, o := range []Options{{}, {Format: "vmdk"}, {Format: "raw", Cache: Cache(9)}} {
		if d, err := Open(p, o); err == nil {
			d.Close()
			t.Errorf("%+v opened", o)
		}
	}
	if _, err := ParseCache("bogus"); err == nil {
		t.Error("ParseCache(bogus) accepted")
	}
	for _, s := range []string{"writeback", "none", "unsafe", "directsync", "writethrough"} {
		c, err := ParseCache(s)
		if err != nil || c.String() != s {
			t.Errorf("ParseCache(%q) = %v, %v", s, c, err)
		}
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing"), Options{Format: "raw"}); err == nil {
		t.Error("missing file opened")
	}
	if _, err := Open(t.TempDir(), Options{Format: "raw"}); err == nil {
		t.Error("directory opened")
	}
}

// A second writer is refused with QEMU's message; readers coexist with
// each other but not with a writer; closing releases the lock.
func TestImageLocking(t *testing.T) {
	for _, format := range []string{"raw", "qcow2"} {
		p := newRaw(t, 1<<20)
		if format == "qcow2" {
			p = newTiny(t, 1<<20, 16, 3)
		}
		w, err := Open(p, Options{Format: format})
		if err != nil {
			t.Fatal(err)
		}
		_, err = Open(p, Options{Format: format})
		if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), `Failed to get "write" lock`) {
			t.Fatalf("%s second writer: %v", format, err)
		}
		if _, err := Open(p, Options{Format: format, ReadOnly: true}); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), `Failed to get shared "write" lock`) {
			t.Fatalf("%s reader beside a writer: %v", format, err)
		}
		w.Close()
		r1, err := Open(p, Options{Format: format, ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		r2, err := Open(p, Options{Format: format, ReadOnly: true})
		if err != nil {
			t.Fatalf("second reader: %v", err)
		}
		if _, err := Open(p, Options{Format: format}); !errors.Is(err, ErrLocked) {
			t.Fatalf("writer beside readers: %v", err)
		}
		r1.Close()
		r2.Close()
		w, err = Open(p, Options{Format: format})
		if err != nil {
			t.Fatalf("writer after the readers closed: %v", err)
		}
		w.Close()
	}
}

// godm's locks are QEMU's: qemu-io cannot open an image godm writes, and
// godm cannot open one qemu-io writes.
func TestLockInteropWithQemu(t *testing.T) {
	needQemuImg(t)
	p := newTiny(t, 1<<20, 16, 3)
	d, err := Open(p, Options{Format: "qcow2"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := execOut("qemu-io", "-f", "qcow2", "-c", "read 0 512", p)
	if err == nil || !strings.Contains(out, `Failed to get "write" lock`) {
		t.Fatalf("qemu-io beside godm's writer: err %v, %s", err, out)
	}
	d.Close()
	// And the other way: qemu-io holds the image open for writing (its
	// interactive prompt waits on stdin) and godm is refused.
	cmd := exec.Command("qemu-io", "-f", "qcow2", p)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	// Wait for the image to be open: qemu-io answers a command.
	fmt.Fprintln(stdin, "read 0 512")
	var got []byte
	for !strings.Contains(string(got), "read 512/512") {
		line := make([]byte, 256)
		n, err := stdout.Read(line)
		got = append(got, line[:n]...)
		if err != nil || len(got) > 4096 {
			t.Fatalf("qemu-io: %q %v", got, err)
		}
	}
	if _, err := Open(p, Options{Format: "qcow2"}); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), `Failed to get "write" lock`) {
		t.Fatalf("godm beside qemu-io's writer: %v", err)
	}
	if _, err := Open(p, Options{Format: "qcow2", ReadOnly: true}); !errors.Is(err, ErrLocked) {
		t.Fatalf("godm reader beside qemu-io's writer: %v", err)
	}
}

func TestReadOnlyAndRange(t *testing.T) {
	p := newRaw(t, 8192)
	d, err := Open(p, Options{Format: "raw", ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	b := make([]byte, 512)
	if err := d.WriteAt(b, 0); err != ErrReadOnly {
		t.Errorf("write on read-only: %v", err)
	}
	if err := d.WriteZeroes(0, 512, false); err != ErrReadOnly {
		t.Errorf("write zeroes on read-only: %v", err)
	}
	if err := d.Discard(0, 512); err != ErrReadOnly {
		t.Errorf("discard on read-only: %v", err)
	}
	for _, off := range []int64{-1, 8192 - 511, 1 << 62} {
		if err := d.ReadAt(b, off); err != ErrRange {
			t.Errorf("read at %d: %v", off, err)
		}
	}
	if d.Info().Size != 8192 || !d.Info().ReadOnly {
		t.Errorf("info %+v", d.Info())
	}
}

// Every cache mode reads back what it wrote, through unaligned buffers
// and offsets too (O_DIRECT modes bounce them); raw and qcow2.
func TestCacheModes(t *testing.T) {
	for _, c := range []Cache{CacheWriteback, CacheNone, CacheUnsafe, CacheDirectSync, CacheWritethrough} {
		for _, format := range []string{"raw", "qcow2"} {
			p := newRaw(t, 1<<20)
			if format == "qcow2" {
				p = newTiny(t, 1<<20, 12, 3)
			}
			d, err := Open(p, Options{Format: format, Cache: c})
			if err != nil {
				t.Fatalf("%v %s: %v", c, format, err)
			}
			if d.Info().WriteCache != (c != CacheDirectSync && c != CacheWritethrough) {
				t.Errorf("%v: WriteCache %v", c, d.Info().WriteCache)
			}
			aligned := alignedBuf(8192, 4096)
			odd := make([]byte, 1001)
			for i := range aligned {
				aligned[i] = byte(i * 7)
			}
			for i := range odd {
				odd[i] = byte(i*3 + 1)
			}
			if err := d.WriteV([][]byte{aligned}, 4096, true); err != nil {
				t.Fatalf("%v %s aligned write: %v", c, format, err)
			}
			if err := d.WriteV([][]byte{odd[:1], odd[1:]}, 20001, false); err != nil {
				t.Fatalf("%v %s unaligned write: %v", c, format, err)
			}
			if err := d.Flush(); err != nil {
				t.Fatal(err)
			}
			got := alignedBuf(8192, 4096)
			if err := d.ReadAt(got, 4096); err != nil || !bytes.Equal(got, aligned) {
				t.Fatalf("%v %s aligned read-back: %v", c, format, err)
			}
			g2 := make([]byte, 1001)
			if err := d.ReadV([][]byte{g2[:500], g2[500:]}, 20001); err != nil || !bytes.Equal(g2, odd) {
				t.Fatalf("%v %s unaligned read-back: %v", c, format, err)
			}
			d.Close()
		}
	}
}

func TestRawDiscardAndWriteZeroes(t *testing.T) {
	p := newRaw(t, 1<<20)
	d, err := Open(p, Options{Format: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ones := bytes.Repeat([]byte{0xff}, 1<<20)
	for _, unmap := range []bool{false, true} {
		if err := d.WriteAt(ones, 0); err != nil {
			t.Fatal(err)
		}
		if err := d.WriteZeroes(4096, 8192+100, unmap); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 1<<20)
		if err := d.ReadAt(got, 0); err != nil {
			t.Fatal(err)
		}
		want := bytes.Clone(ones)
		clear(want[4096 : 4096+8192+100])
		sameBytes(t, "write zeroes", got, want)
	}
	if err := d.Discard(0, 1<<20); err != nil {
		t.Fatal(err)
	}
}

// The queue bounds requests in flight, completes each once, refuses
// after Close, and a writer's completion sees its data.
func TestQueue(t *testing.T) {
	p := newTiny(t, 4<<20, 16, 3)
	d, err := Open(p, Options{Format: "qcow2"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// One worker, held in the first request's completion: the slot of a
	// completed request is free while its Done runs, the next four wait
	// in the queue and a sixth finds it full.
	q := NewQueue(d, 4, 1)
	block := make(chan struct{})
	entered := make(chan struct{}, 1)
	var done atomic.Int32
	reqs := make([]Request, 6)
	var wg sync.WaitGroup
	for i := range reqs {
		buf := bytes.Repeat([]byte{byte(i + 1)}, 4096)
		reqs[i] = Request{Op: OpWrite, Off: int64(i) * 65536, Bufs: [][]byte{buf}, Done: func(r *Request) {
			if r.Tag == 0 {
				entered <- struct{}{}
			}
			<-block
			if r.Err != nil {
				t.Errorf("request %d: %v", r.Tag, r.Err)
			}
			done.Add(1)
			wg.Done()
		}, Tag: uint64(i)}
	}
	wg.Add(5)
	if err := q.Submit(&reqs[0]); err != nil {
		t.Fatal(err)
	}
	<-entered
	for i := 1; i < 5; i++ {
		if err := q.Submit(&reqs[i]); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if err := q.Submit(&reqs[5]); err != ErrQueueFull {
		t.Fatalf("sixth request at depth 4: %v", err)
	}
	close(block)
	wg.Wait()
	q.Drain()
	if done.Load() != 5 {
		t.Fatalf("%d completions", done.Load())
	}
	got := make([]byte, 4096)
	for i := range 5 {
		if err := d.ReadAt(got, int64(i)*65536); err != nil || got[0] != byte(i+1) || got[4095] != byte(i+1) {
			t.Fatalf("request %d data: %v %d", i, err, got[0])
		}
	}
	var r Request
	r.Op = Op(99)
	ch := make(chan error, 1)
	r.Done = func(r *Request) { ch <- r.Err }
	if err := q.Submit(&r); err != nil {
		t.Fatal(err)
	}
	if err := <-ch; err != ErrBadRequest {
		t.Fatalf("bad op: %v", err)
	}
	for _, op := range []Op{OpFlush, OpDiscard, OpWriteZeroes} {
		r = Request{Op: op, Off: 0, Len: 65536, Done: r.Done}
		if err := q.Submit(&r); err != nil {
			t.Fatal(err)
		}
		if err := <-ch; err != nil {
			t.Fatalf("op %d: %v", op, err)
		}
	}
	if err := q.Submit(&Request{Op: OpRead}); err != ErrBadRequest {
		t.Fatalf("request without Done: %v", err)
	}
	q.Close()
	if err := q.Submit(&r); err != ErrClosed {
		t.Fatalf("submit after close: %v", err)
	}
}

// No allocation per request: raw and qcow2 (allocated clusters) reads and
// writes through the queue.
func TestQueueAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, format := range []string{"raw", "qcow2"} {
		p := newRaw(t, 4<<20)
		if format == "qcow2" {
			p = newTiny(t, 4<<20, 16, 3)
		}
		d, err := Open(p, Options{Format: format})
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		// Allocate the clusters first.
		for off := int64(0); off < 1<<20; off += 4096 {
			if err := d.WriteAt(buf, off); err != nil {
				t.Fatal(err)
			}
		}
		q := NewQueue(d, 8, 2)
		ch := make(chan struct{}, 1)
		r := &Request{Bufs: [][]byte{buf}, Done: func(*Request) { ch <- struct{}{} }}
		i := 0
		for _, op := range []Op{OpRead, OpWrite} {
			r.Op = op
			allocs := testing.AllocsPerRun(200, func() {
				r.Off = int64(i%256) * 4096
				i++
				if err := q.Submit(r); err != nil {
					t.Fatal(err)
				}
				<-ch
				if r.Err != nil {
					t.Fatal(r.Err)
				}
			})
			if allocs != 0 {
				t.Errorf("%s op %d: %v allocations per request", format, op, allocs)
			}
		}
		q.Close()
		d.Close()
	}
}

// Hostile images: each gets an error at open (or at the access that
// meets the bad table), never a crash, hang or huge allocation.
func TestHostileImages(t *testing.T) {
	be := binary.BigEndian
	base := tinyQcow2(1<<20, 12, 3)
	mut := func(f func(b []byte)) []byte { b := bytes.Clone(base); f(b); return b }
	cases := map[string][]byte{
		"short":             base[:50],
		"magic":             mut(func(b []byte) { b[0] = 'X' }),
		"version 4":         mut(func(b []byte) { be.PutUint32(b[4:], 4) }),
		"cluster bits 8":    mut(func(b []byte) { be.PutUint32(b[20:], 8) }),
		"cluster bits 30":   mut(func(b []byte) { be.PutUint32(b[20:], 30) }),
		"encrypted":         mut(func(b []byte) { be.PutUint32(b[32:], 1) }),
		"huge L1":           mut(func(b []byte) { be.PutUint32(b[36:], 0xffffffff) }),
		"L1 too small":      mut(func(b []byte) { be.PutUint64(b[24:], 1<<40) }),
		"huge size":         mut(func(b []byte) { be.PutUint64(b[24:], 1<<63) }),
		"L1 beyond EOF":     mut(func(b []byte) { be.PutUint64(b[40:], 1<<40) }),
		"L1 unaligned":      mut(func(b []byte) { be.PutUint64(b[40:], 4097) }),
		"L1 in header":      mut(func(b []byte) { be.PutUint64(b[40:], 0) }),
		"reftable huge":     mut(func(b []byte) { be.PutUint32(b[56:], 0xffffffff) }),
		"reftable none":     mut(func(b []byte) { be.PutUint32(b[56:], 0) }),
		"overlap":           mut(func(b []byte) { be.PutUint64(b[48:], 4096) }),
		"refcount order":    mut(func(b []byte) { be.PutUint32(b[96:], 7) }),
		"header length":     mut(func(b []byte) { be.PutUint32(b[100:], 1<<20) }),
		"unknown incompat":  mut(func(b []byte) { be.PutUint64(b[72:], 1<<40) }),
		"external data":     mut(func(b []byte) { be.PutUint64(b[72:], incDataFile) }),
		"zstd":              mut(func(b []byte) { be.PutUint64(b[72:], incCompType); be.PutUint32(b[100:], 112); b[104] = 1 }),
		"backing name long": mut(func(b []byte) { be.PutUint64(b[8:], 200); be.PutUint32(b[16:], 5000) }),
		"backing in header": mut(func(b []byte) { be.PutUint64(b[8:], 8); be.PutUint32(b[16:], 4) }),
		"extension overrun": mut(func(b []byte) { be.PutUint32(b[104:], extBackingFmt); be.PutUint32(b[108:], 1<<30) }),
		"snapshots bad":     mut(func(b []byte) { be.PutUint32(b[60:], 1); be.PutUint64(b[64:], 3) }),
	}
	for name, img := range cases {
		p := filepath.Join(t.TempDir(), "h.qcow2")
		os.WriteFile(p, img, 0o644)
		d, err := Open(p, Options{Format: "qcow2", ReadOnly: true})
		if err == nil {
			d.Close()
			t.Errorf("%s: opened", name)
		}
	}
	// Features refused for writing only.
	for name, img := range map[string][]byte{
		"dirty":     mut(func(b []byte) { be.PutUint64(b[72:], incDirty) }),
		"corrupt":   mut(func(b []byte) { be.PutUint64(b[72:], incCorrupt) }),
		"snapshots": mut(func(b []byte) { be.PutUint32(b[60:], 1); be.PutUint64(b[64:], 3*4096) }),
	} {
		p := filepath.Join(t.TempDir(), "h.qcow2")
		os.WriteFile(p, img, 0o644)
		if d, err := Open(p, Options{Format: "qcow2"}); err == nil {
			d.Close()
			t.Errorf("%s: opened for writing", name)
		} else if !strings.Contains(err.Error(), "qcow2") {
			t.Errorf("%s: unclear error %v", name, err)
		}
		d, err := Open(p, Options{Format: "qcow2", ReadOnly: true})
		if err != nil {
			t.Errorf("%s: read-only open: %v", name, err)
		} else {
			d.Close()
		}
	}
	// Tables that point outside the file or into metadata: errors at access.
	for name, f := range map[string]func(b []byte){
		"L2 beyond EOF":       func(b []byte) { be.PutUint64(b[4096:], 1<<40|oflagCopied) },
		"L2 unaligned":        func(b []byte) { be.PutUint64(b[4096:], 3*4096+8|oflagCopied) },
		"L2 is the header":    func(b []byte) { be.PutUint64(b[4096:], 4096*0+oflagCopied+512*0) },
		"L2 is the L1":        func(b []byte) { be.PutUint64(b[4096:], 4096|oflagCopied) },
		"refblock beyond EOF": func(b []byte) { be.PutUint64(b[2*4096:], 1<<40) },
	} {
		img := mut(f)
		if name == "L2 is the header" {
			be.PutUint64(img[4096:], 512|oflagCopied)
		}
		p := filepath.Join(t.TempDir(), "h.qcow2")
		os.WriteFile(p, img, 0o644)
		d, err := Open(p, Options{Format: "qcow2", Cache: CacheUnsafe})
		if err != nil {
			continue // refused at open: fine too
		}
		buf := make([]byte, 4096)
		rerr := d.ReadAt(buf, 0)
		werr := d.WriteAt(buf, 0)
		d.Close()
		if rerr == nil && werr == nil {
			t.Errorf("%s: read and write both succeeded", name)
		}
	}
}

// A backing chain that loops, or is too deep, is refused.
func TestBackingCycle(t *testing.T) {
	needQemuImg(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.qcow2"), filepath.Join(dir, "b.qcow2")
	qemu(t, "qemu-img", "create", "-f", "qcow2", a, "1M")
	qemu(t, "qemu-img", "create", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", b, "1M")
	qemu(t, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", a)
	_, err := Open(b, Options{Format: "qcow2", ReadOnly: true})
	if err == nil || !strings.Contains(err.Error(), "loops") {
		t.Fatalf("cycle: %v", err)
	}
	// A chain of 20 distinct files exceeds the depth limit.
	prev := filepath.Join(dir, "c0.qcow2")
	qemu(t, "qemu-img", "create", "-f", "qcow2", prev, "1M")
	for i := 1; i <= maxBackingDepth+2; i++ {
		next := filepath.Join(dir, "c"+itoa(i)+".qcow2")
		qemu(t, "qemu-img", "create", "-f", "qcow2", "-u", "-b", filepath.Base(prev), "-F", "qcow2", next, "1M")
		prev = next
	}
	if _, err := Open(prev, Options{Format: "qcow2", ReadOnly: true}); err == nil || !strings.Contains(err.Error(), "deeper") {
		t.Fatalf("deep chain: %v", err)
	}
}

func itoa(i int) string { return string(rune('0'+i/10)) + string(rune('0'+i%10)) }

// A refcount at its maximum is not incremented (refcount_bits=1 and 16).
func TestRefcountOverflow(t *testing.T) {
	for _, order := range []uint32{0, 4} {
		img := tinyQcow2(1<<20, 12, 3)
		binary.BigEndian.PutUint32(img[96:], order)
		rb := img[3*4096 : 4*4096]
		clear(rb)
		for i := range 4 {
			putRef(rb, uint64(i), 1<<order, 1)
		}
		putRef(rb, 4, 1<<order, 1<<(1<<order)-1) // cluster 4 (the next free one) at max
		p := filepath.Join(t.TempDir(), "o.qcow2")
		os.WriteFile(p, img, 0o644)
		d, err := Open(p, Options{Format: "qcow2", Cache: CacheUnsafe})
		if err != nil {
			t.Fatal(err)
		}
		qi := d.img.(*qcow2Image)
		qi.mu.Lock()
		err = qi.addRef(4*4096, 1)
		qi.mu.Unlock()
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "overflow") {
			t.Errorf("order %d: %v", order, err)
		}
		// The allocator skips the claimed cluster: a write still works.
		if err := d.WriteAt(make([]byte, 4096), 0); err != nil {
			t.Errorf("order %d write: %v", order, err)
		}
		d.Close()
	}
}

// cache=none with clusters smaller than the direct-I/O alignment is
// refused for writing (a metadata read-modify-write could race with a
// data write in the same block); otherwise it opens.
func TestDirectSmallClusters(t *testing.T) {
	p := newTiny(t, 1<<20, 9, 3)
	d, err := Open(p, Options{Format: "qcow2", Cache: CacheNone})
	h, herr := openHost(p, true, CacheNone)
	if herr != nil {
		t.Fatal(herr)
	}
	defer h.close()
	if h.offAlign > 512 {
		if err == nil || !strings.Contains(err.Error(), "alignment") {
			t.Fatalf("alignment %d: %v", h.offAlign, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("alignment %d: %v", h.offAlign, err)
	}
	d.Close()
}
