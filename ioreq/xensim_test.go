package ioreq_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"godm/devices"
	"godm/hyp"
	"godm/hyp/dm"
	"godm/hyp/foreign"
	"godm/hyp/kernel"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"
	"godm/internal/testfake"
	"godm/ioreq"
	"godm/memory"

	"golang.org/x/sys/unix"
)

const ramSize = 16 << 20

// pattern is what the test devices return for a read of addr.
func pattern(addr uint64, size uint8) uint64 {
	return (addr ^ 0x5a5a5a5a5a5a5a5a) & devices.SizeMask(size)
}

type write struct {
	Addr uint64
	Size uint8
	Val  uint64
}

// dev is a test device: reads return pattern(addr), writes are logged.
type dev struct {
	mu     sync.Mutex
	writes []write
	reads  atomic.Uint64
}

func (d *dev) Read(a devices.Access) uint64 {
	d.reads.Add(1)
	return pattern(a.Addr, a.Size)
}

func (d *dev) Write(a devices.Access, v uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.writes = append(d.writes, write{a.Addr, a.Size, v})
}

func (d *dev) log() []write {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.writes)
}

// counter counts the writes it has seen; reading it returns the count.
type counter struct{ n atomic.Uint64 }

func (c *counter) Read(devices.Access) uint64   { return c.n.Load() }
func (c *counter) Write(devices.Access, uint64) { c.n.Add(1) }

type rig struct {
	sim   *xensim.Sim
	dom   *xensim.Domain
	k     kernel.Kernel
	p     *privcmd.Handle
	bus   *devices.Bus
	cache *memory.MapCache
	srv   *ioreq.Server
	serve chan error
	stop  context.CancelFunc
}

type rigOpts struct {
	vcpus   int
	cfg     ioreq.Config
	kernel  func(kernel.Kernel) kernel.Kernel
	noServe bool
}

func newRig(t *testing.T, o rigOpts) *rig {
	t.Helper()
	if o.vcpus == 0 {
		o.vcpus = 2
	}
	xen := testfake.NewXen(t, xensim.Config{IOReqTimeout: 20 * time.Second}, xensim.DomainConfig{VCPUs: o.vcpus, RAM: []xensim.Region{{GPA: 0, Size: 0xa0000}, {GPA: 0x100000, Size: ramSize - 0x100000}}})
	sim, dom := xen.Sim, xen.Dom
	k := sim.Kernel(0)
	if o.kernel != nil {
		k = o.kernel(k)
	}
	p, err := privcmd.Open(k)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	r := &rig{sim: sim, dom: dom, k: k, p: p, bus: devices.NewBus()}
	domID := dom.ID()
	r.cache, err = memory.NewMapCache(memory.MapperFunc(func(gfns []uint64, w bool) (memory.Mapping, error) {
		return foreign.Map(p, domID, w, gfns)
	}), memory.MapCacheConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cache.Close() })
	cfg := o.cfg
	cfg.Dom = domID
	if cfg.Bus == nil {
		cfg.Bus = r.bus
	} else {
		r.bus = cfg.Bus
	}
	cfg.Targets.Memory = r.cache
	cfg.Targets.Invalidate = r.cache.Invalidate
	r.srv, err = ioreq.NewServer(p, k, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		for _, v := range sim.Violations() {
			t.Errorf("protocol violation: %v", v)
		}
	})
	if !o.noServe {
		r.startServe(t)
	}
	return r
}

func (r *rig) startServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	r.serve = make(chan error, 1)
	go func() { r.serve <- r.srv.Serve(ctx) }()
	t.Cleanup(cancel)
}

func (r *rig) counters() ioreq.Counters {
	var c ioreq.Counters
	r.srv.Stats(&c)
	return c
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestXenPIOAndMMIOEverySize(t *testing.T) {
	r := newRig(t, rigOpts{})
	pio, mmio := &dev{}, &dev{}
	must(t, r.bus.PIO.Register(0x510, 8, pio))
	must(t, r.bus.MMIO.Register(0xfebf0000, 0x1000, mmio))
	v := r.dom.VCPU(1)
	for _, size := range []int{1, 2, 4} {
		got, err := v.In(0x512, size)
		must(t, err)
		if want := pattern(0x512, uint8(size)); got != want {
			t.Errorf("In size %d = %#x, want %#x", size, got, want)
		}
		must(t, v.Out(0x514, size, 0x1122334455667788))
	}
	for _, size := range []int{1, 2, 4, 8} {
		got, err := v.MMIORead(0xfebf0010, size)
		must(t, err)
		if want := pattern(0xfebf0010, uint8(size)); got != want {
			t.Errorf("MMIORead size %d = %#x, want %#x", size, got, want)
		}
		must(t, v.MMIOWrite(0xfebf0020, size, 0x1122334455667788))
	}
	wantPIO := []write{{0x514, 1, 0x88}, {0x514, 2, 0x7788}, {0x514, 4, 0x55667788}}
	if got := pio.log(); !slices.Equal(got, wantPIO) {
		t.Errorf("PIO writes %+v, want %+v", got, wantPIO)
	}
	wantMMIO := []write{{0xfebf0020, 1, 0x88}, {0xfebf0020, 2, 0x7788}, {0xfebf0020, 4, 0x55667788}, {0xfebf0020, 8, 0x1122334455667788}}
	if got := mmio.log(); !slices.Equal(got, wantMMIO) {
		t.Errorf("MMIO writes %+v, want %+v", got, wantMMIO)
	}
	// A port nobody claimed never reaches the server: Xen answers ~0.
	got, err := v.In(0x600, 2)
	must(t, err)
	if got != 0xffff {
		t.Errorf("unclaimed In = %#x, want 0xffff", got)
	}
	c := r.counters()
	if c.Sync[ioreq.KindPIO] != 6 || c.Sync[ioreq.KindMMIO] != 8 {
		t.Errorf("counters PIO %d MMIO %d, want 6 8", c.Sync[ioreq.KindPIO], c.Sync[ioreq.KindMMIO])
	}
}

func TestXenRepBothDirections(t *testing.T) {
	r := newRig(t, rigOpts{})
	pio, mmio := &dev{}, &dev{}
	must(t, r.bus.PIO.Register(0x1f0, 8, pio))
	must(t, r.bus.MMIO.Register(0xfe000000, 0x10000, mmio))
	v := r.dom.VCPU(0)
	for _, df := range []bool{false, true} {
		// rep insw of 600 words into a buffer that crosses a page: each
		// word must equal the device's read pattern.
		const n = 600
		lo := uint64(0x10f00)
		start := lo
		if df {
			start = lo + 2*(n-1)
		}
		must(t, v.RepIns(0x1f0, 2, n, start, df))
		buf := make([]byte, 2*n)
		must(t, r.dom.ReadRAM(lo, buf))
		for i := range n {
			if got := binary.LittleEndian.Uint16(buf[2*i:]); uint64(got) != pattern(0x1f0, 2) {
				t.Fatalf("df=%v: ins word %d = %#x", df, i, got)
			}
		}
		// rep outsl from RAM: the device sees the elements in guest order.
		src := make([]byte, 4*n)
		for i := range n {
			binary.LittleEndian.PutUint32(src[4*i:], uint32(i))
		}
		must(t, r.dom.WriteRAM(0x20ffc, src))
		before := len(pio.log())
		ostart := uint64(0x20ffc)
		if df {
			ostart += 4 * (n - 1)
		}
		must(t, v.RepOuts(0x1f4, 4, n, ostart, df))
		got := pio.log()[before:]
		if len(got) != n {
			t.Fatalf("df=%v: %d outs elements, want %d", df, len(got), n)
		}
		for i, w := range got {
			want := uint64(i)
			if df {
				want = uint64(n - 1 - i)
			}
			if w.Val != want || w.Size != 4 || w.Addr != 0x1f4 {
				t.Fatalf("df=%v: outs element %d = %+v, want value %d", df, i, w, want)
			}
		}
		// rep movsq MMIO -> RAM and RAM -> MMIO.
		const q = 300
		mstart, rstart := uint64(0xfe000000), uint64(0x30ff8)
		if df {
			mstart, rstart = mstart+8*(q-1), rstart+8*(q-1)
		}
		must(t, v.RepMovs(mstart, 8, q, rstart, df, false))
		qb := make([]byte, 8*q)
		must(t, r.dom.ReadRAM(0x30ff8, qb))
		for i := range q {
			if got, want := binary.LittleEndian.Uint64(qb[8*i:]), pattern(0xfe000000+8*uint64(i), 8); got != want {
				t.Fatalf("df=%v: movs to RAM element %d = %#x, want %#x", df, i, got, want)
			}
		}
		before = len(mmio.log())
		must(t, v.RepMovs(mstart, 8, q, rstart, df, true))
		mw := mmio.log()[before:]
		if len(mw) != q {
			t.Fatalf("df=%v: %d movs writes, want %d", df, len(mw), q)
		}
		for _, w := range mw {
			if w.Val != pattern(w.Addr, 8) {
				t.Fatalf("df=%v: movs to MMIO %+v, want value %#x", df, w, pattern(w.Addr, 8))
			}
		}
	}
}

func TestXenRepIntoHole(t *testing.T) {
	r := newRig(t, rigOpts{})
	pio, mmio := &dev{}, &dev{}
	must(t, r.bus.PIO.Register(0x1f0, 8, pio))
	must(t, r.bus.MMIO.Register(0xfe000000, 0x1000, mmio))
	v := r.dom.VCPU(0)
	// The buffer lies in a hole above RAM: reads into it are dropped,
	// writes from it send all-ones; the guest still completes.
	hole := uint64(ramSize + 0x1000)
	must(t, v.RepIns(0x1f0, 4, 8, hole, false))
	must(t, v.RepOuts(0x1f0, 2, 4, hole, false))
	ws := pio.log()
	if len(ws) != 4 {
		t.Fatalf("outs from a hole: %d writes, want 4", len(ws))
	}
	for _, w := range ws {
		if w.Val != 0xffff {
			t.Fatalf("outs from a hole wrote %#x, want 0xffff", w.Val)
		}
	}
	if c := r.counters(); c.MemFaults != 12 {
		t.Fatalf("MemFaults = %d, want 12", c.MemFaults)
	}
}

func TestXenPCIConfig(t *testing.T) {
	r := newRig(t, rigOpts{})
	fn := &dev{}
	sbdf := devices.NewSBDF(0, 0, 4, 0)
	must(t, r.bus.PCI.Register(sbdf, fn))
	v := r.dom.VCPU(0)
	for _, size := range []int{1, 2, 4} {
		got, err := v.PCIConfigRead(uint32(sbdf), 0x10, size)
		must(t, err)
		if want := pattern(0x10, uint8(size)); got != want {
			t.Errorf("claimed config read size %d = %#x, want %#x", size, got, want)
		}
	}
	must(t, v.PCIConfigWrite(uint32(sbdf), 0x3c, 1, 0x0b))
	if got := fn.log(); !slices.Equal(got, []write{{0x3c, 1, 0x0b}}) {
		t.Errorf("config writes %+v", got)
	}
	other := devices.NewSBDF(0, 0, 5, 0)
	got, err := v.PCIConfigRead(uint32(other), 0, 4)
	must(t, err)
	if got != 0xffffffff {
		t.Errorf("unclaimed config read = %#x, want all-ones", got)
	}
	// Removing the function releases it in Xen too.
	must(t, r.bus.PCI.Unregister(sbdf))
	got, err = v.PCIConfigRead(uint32(sbdf), 0, 4)
	must(t, err)
	if got != 0xffffffff {
		t.Errorf("config read after unregister = %#x, want all-ones", got)
	}
	if c := r.counters(); c.Sync[ioreq.KindPCIConfig] != 4 {
		t.Errorf("PCI config requests %d, want 4", c.Sync[ioreq.KindPCIConfig])
	}
}

func TestXenBufferedBeforeSync(t *testing.T) {
	r := newRig(t, rigOpts{})
	vga := &counter{}
	must(t, r.bus.MMIO.Register(0xa0000, 0x20000, vga))
	v := r.dom.VCPU(0)
	for round := 1; round <= 50; round++ {
		for range 7 {
			res, err := v.BufferedWrite(xenabi.IOREQ_TYPE_COPY, 0xa0000, 2, 0x0741)
			must(t, err)
			if res != xensim.Buffered {
				t.Fatalf("buffered write delivered %v", res)
			}
		}
		// The synchronous read must observe every buffered write before it.
		got, err := v.MMIORead(0xa0000, 4)
		must(t, err)
		if got != uint64(7*round) {
			t.Fatalf("round %d: sync read saw %d writes, want %d", round, got, 7*round)
		}
	}
}

func TestXenBufferedQuadAndTimeOffset(t *testing.T) {
	r := newRig(t, rigOpts{})
	vga := &dev{}
	must(t, r.bus.MMIO.Register(0xa0000, 0x20000, vga))
	v := r.dom.VCPU(0)
	res, err := v.BufferedWrite(xenabi.IOREQ_TYPE_COPY, 0xa0008, 8, 0x8877665544332211)
	must(t, err)
	if res != xensim.Buffered {
		t.Fatalf("8-byte buffered write delivered %v", res)
	}
	if n := r.dom.SendTimeOffset(-3600); n != 0 {
		t.Fatalf("SendTimeOffset: %d servers failed", n)
	}
	// A synchronous request flushes the ring.
	if _, err := v.MMIORead(0xa0000, 1); err != nil {
		t.Fatal(err)
	}
	if got := vga.log(); !slices.Equal(got, []write{{0xa0008, 8, 0x8877665544332211}}) {
		t.Fatalf("writes %+v", got)
	}
	if got := r.srv.Dispatcher().TimeOffset(); got != -3600 {
		t.Fatalf("TimeOffset = %d, want -3600", got)
	}
}

func TestXenBufferedFloodDoesNotStarveSync(t *testing.T) {
	r := newRig(t, rigOpts{vcpus: 2})
	vga := &counter{}
	must(t, r.bus.MMIO.Register(0xa0000, 0x20000, vga))
	port := &dev{}
	must(t, r.bus.PIO.Register(0x510, 1, port))
	ctx, cancel := context.WithCancel(context.Background())
	var sent atomic.Uint64
	flood := make(chan error, 1)
	go func() {
		v := r.dom.VCPU(0)
		for ctx.Err() == nil {
			if _, err := v.BufferedWrite(xenabi.IOREQ_TYPE_COPY, 0xa0000, 4, 1); err != nil {
				flood <- err
				return
			}
			sent.Add(1)
		}
		flood <- nil
	}()
	v1 := r.dom.VCPU(1)
	for range 200 {
		if _, err := v1.In(0x510, 1); err != nil {
			cancel()
			t.Fatal(err)
		}
	}
	cancel()
	must(t, <-flood)
	// Flush whatever is left and check nothing was lost.
	_, err := r.dom.VCPU(0).MMIORead(0xa0000, 4)
	must(t, err)
	if got, want := vga.n.Load(), sent.Load(); got != want {
		t.Fatalf("device saw %d buffered writes, guest sent %d", got, want)
	}
}

func TestXenInvalidateWithDMAInFlight(t *testing.T) {
	r := newRig(t, rigOpts{})
	must(t, r.dom.WriteRAM(0x5000, []byte("dma payload")))
	region, err := r.cache.Pin(0x5000, 11) // a device's DMA in flight
	must(t, err)
	done := make(chan error, 1)
	go func() { done <- r.dom.VCPU(0).InvalidateMapCache() }()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("INVALIDATE did not complete while a DMA region was pinned")
	}
	buf := make([]byte, 11)
	if _, err := region.ReadAt(buf, 0); err != nil || string(buf) != "dma payload" {
		t.Fatalf("pinned region after invalidate: %q, %v", buf, err)
	}
	region.Release()
	if c := r.counters(); c.Sync[ioreq.KindInvalidate] != 1 {
		t.Fatalf("INVALIDATE requests %d, want 1", c.Sync[ioreq.KindInvalidate])
	}
	if s := r.cache.Stats(); s.Invalidations != 1 {
		t.Fatalf("map cache invalidations %d, want 1", s.Invalidations)
	}
}

// TestXenBARRelocationUnderLoad moves a BAR back and forth between two
// disjoint bases while another vCPU reads both. From the io-range DM ops
// the hypervisor accepted, every move claims the new range before it
// releases the old one (so Xen never routes neither); after each move a
// read at the new base reaches the device and a read at the old base is
// all-ones; at the end, with the load stopped, a read at the old base does
// not even reach godm (Xen answers it: the range is released).
func TestXenBARRelocationUnderLoad(t *testing.T) {
	log := &rangeLog{}
	r := newRig(t, rigOpts{vcpus: 2, kernel: func(k kernel.Kernel) kernel.Kernel { return rangeKernel{k, log} }})
	bar := &dev{}
	const a, b, size = 0xf0000000, 0xf1000000, 0x1000
	must(t, r.bus.MMIO.Register(a, size, bar))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	load := make(chan error, 1)
	var served [2]atomic.Int64 // device values seen at a and at b
	go func() {
		v := r.dom.VCPU(1)
		for ctx.Err() == nil {
			for i, base := range []uint64{a, b} {
				got, err := v.MMIORead(base+0x10, 4)
				if err != nil {
					load <- err
					return
				}
				switch got {
				case pattern(base+0x10, 4):
					served[i].Add(1)
				case 0xffffffff: // the other base is the BAR's now
				default:
					load <- fmt.Errorf("read at %#x = %#x: neither the device's value nor all-ones", base+0x10, got)
					return
				}
			}
		}
		load <- nil
	}()
	v := r.dom.VCPU(0)
	// Under CPU contention the load may not have run yet: start moving
	// once it has seen the device (bounded), and keep moving past
	// minMoves until it has seen both placements (bounded), so that the
	// moves really happen under load.
	deadline := time.Now().Add(20 * time.Second)
	for served[0].Load() == 0 && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	mark := len(log.snapshot())
	cur, next := uint64(a), uint64(b)
	const minMoves = 100
	moves := 0
	for ; moves < minMoves || (served[0].Load() == 0 || served[1].Load() == 0) && time.Now().Before(deadline); moves++ {
		i := moves
		must(t, r.bus.MMIO.Move(cur, next))
		cur, next = next, cur
		for _, c := range []struct {
			gpa  uint64
			want uint64
		}{
			{cur + 0x20, pattern(cur+0x20, 4)}, // the new base: the device
			{next + 0x20, 0xffffffff},          // the old base: released
		} {
			got, err := v.MMIORead(c.gpa, 4)
			must(t, err)
			if got != c.want {
				t.Fatalf("move %d: read at %#x after the move = %#x, want %#x", i, c.gpa, got, c.want)
			}
		}
	}
	cancel()
	must(t, <-load)

	// The hypervisor's view: per move, map the new range, then unmap the
	// old one, nothing in between.
	ops := log.snapshot()[mark:]
	if len(ops) != 2*moves {
		t.Fatalf("%d io-range ops for %d moves, want %d: %+v", len(ops), moves, 2*moves, ops)
	}
	from, to := uint64(a), uint64(b)
	for i := 0; i < moves; i++ {
		want := []rangeOp{
			{Map: true, Kind: xenabi.XEN_DMOP_IO_RANGE_MEMORY, Start: to, End: to + size - 1},
			{Map: false, Kind: xenabi.XEN_DMOP_IO_RANGE_MEMORY, Start: from, End: from + size - 1},
		}
		if got := ops[2*i : 2*i+2]; !slices.Equal(got, want) {
			t.Fatalf("move %d (%#x -> %#x): hypervisor saw %+v, want %+v (claim the new range before releasing the old)", i, from, to, got, want)
		}
		from, to = to, from
	}
	if served[0].Load() == 0 || served[1].Load() == 0 {
		t.Errorf("the load saw the device %d times at %#x and %d at %#x; want both placements served under load",
			served[0].Load(), a, served[1].Load(), b)
	}

	// With the load stopped: the final base reaches the device; the old
	// base is answered by Xen without a request to godm.
	before, missesBefore := r.counters().Sync[ioreq.KindMMIO], r.bus.MMIO.Stats().ReadMisses
	got, err := v.MMIORead(next+4, 4)
	must(t, err)
	if got != 0xffffffff {
		t.Fatalf("read at the old BAR = %#x, want all-ones", got)
	}
	if after, misses := r.counters().Sync[ioreq.KindMMIO], r.bus.MMIO.Stats().ReadMisses; after != before || misses != missesBefore {
		t.Fatalf("read at the old BAR reached godm (MMIO requests %d -> %d, misses %d -> %d): still claimed in Xen",
			before, after, missesBefore, misses)
	}
	got, err = v.MMIORead(cur+4, 4)
	must(t, err)
	if got != pattern(cur+4, 4) {
		t.Fatalf("read at the final BAR = %#x, want the device", got)
	}
}

func TestXenTeardownLeavesNothing(t *testing.T) {
	r := newRig(t, rigOpts{})
	must(t, r.bus.PIO.Register(0x510, 8, &dev{}))
	must(t, r.bus.PCI.Register(devices.NewSBDF(0, 0, 3, 0), &dev{}))
	must(t, r.srv.Close())
	select {
	case err := <-r.serve:
		// nil if Serve was running, ErrServing if Close came first.
		if err != nil && !errors.Is(err, ioreq.ErrServing) {
			t.Fatalf("Serve after Close: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
	must(t, r.srv.Close()) // idempotent
	destroyed := false
	for _, e := range r.sim.Events() {
		if e.Kind == xensim.EventIOReqServer && e.Detail == "destroy" {
			destroyed = true
		}
	}
	if !destroyed {
		t.Fatal("no ioreq server destroyed")
	}
	// The port is no longer claimed: Xen answers it.
	got, err := r.dom.VCPU(0).In(0x510, 1)
	must(t, err)
	if got != 0xff {
		t.Fatalf("In after teardown = %#x, want 0xff", got)
	}
	// Registering on the bus no longer reaches Xen (the listener is gone).
	must(t, r.bus.PIO.Register(0x520, 8, &dev{}))
	// All eight server slots are free again.
	var srvs []*ioreq.Server
	for i := range 8 {
		s, err := ioreq.NewServer(r.p, r.k, ioreq.Config{Dom: r.dom.ID(), VCPUs: 2})
		if err != nil {
			t.Fatalf("server %d after teardown: %v", i, err)
		}
		srvs = append(srvs, s)
	}
	for _, s := range srvs {
		must(t, s.Close())
	}
}

func TestXenSeveralServersPerDomain(t *testing.T) {
	r := newRig(t, rigOpts{vcpus: 2})
	d1 := &dev{}
	must(t, r.bus.PIO.Register(0x510, 4, d1))
	bus2 := devices.NewBus()
	d2 := &dev{}
	must(t, bus2.PIO.Register(0x520, 4, d2))
	s2, err := ioreq.NewServer(r.p, r.k, ioreq.Config{Dom: r.dom.ID(), Bus: bus2, BufIOReq: ioreq.BufOff})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s2.Serve(ctx) }()
	var wg sync.WaitGroup
	for vi := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := r.dom.VCPU(vi)
			for i := range 100 {
				must(t, v.Out(0x510, 1, uint64(i)))
				must(t, v.Out(0x520, 1, uint64(i)))
			}
		}()
	}
	wg.Wait()
	cancel()
	must(t, <-done)
	must(t, s2.Close())
	if len(d1.log()) != 200 || len(d2.log()) != 200 {
		t.Fatalf("server 1 saw %d writes, server 2 %d; want 200 each", len(d1.log()), len(d2.log()))
	}
}

func TestXenParallelVCPUs(t *testing.T) {
	for _, workers := range []int{1, 2, 4} {
		t.Run(strings.Repeat("w", workers), func(t *testing.T) {
			r := newRig(t, rigOpts{vcpus: 4, cfg: ioreq.Config{Workers: workers}})
			d := &dev{}
			must(t, r.bus.PIO.Register(0x510, 16, d))
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for vi := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					v := r.dom.VCPU(vi)
					port := uint16(0x510 + 4*vi)
					for i := range 200 {
						got, err := v.In(port, 2)
						if err == nil && got != pattern(uint64(port), 2) {
							err = errors.New("wrong value")
						}
						if err == nil {
							err = v.Out(port, 1, uint64(i))
						}
						if err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if got := len(d.log()); got != 800 {
				t.Fatalf("%d writes, want 800", got)
			}
		})
	}
}

func TestXenBlockingModeAndBufOff(t *testing.T) {
	r := newRig(t, rigOpts{cfg: ioreq.Config{BufIOReq: ioreq.BufOff, Worker: ioreq.WorkerConfig{Spin: -1}}})
	vga := &counter{}
	must(t, r.bus.MMIO.Register(0xa0000, 0x20000, vga))
	v := r.dom.VCPU(0)
	res, err := v.BufferedWrite(xenabi.IOREQ_TYPE_COPY, 0xa0000, 1, 1)
	must(t, err)
	if res != xensim.Synchronous {
		t.Fatalf("write without a buffered ring delivered %v, want synchronous", res)
	}
	for range 20 {
		_, err := v.MMIORead(0xa0000, 1)
		must(t, err)
	}
	if got := vga.n.Load(); got != 1 {
		t.Fatalf("device saw %d writes, want 1", got)
	}
}

func TestXenIRQBackend(t *testing.T) {
	r := newRig(t, rigOpts{})
	c := dm.New(r.p, r.dom.ID())
	isa := ioreq.NewISALine(c, 4)
	intx := ioreq.NewPCIIntxLine(c, devices.NewSBDF(0, 0, 3, 0), 0)
	msi := ioreq.NewMSI(c)
	mark := r.sim.LastSeq()
	for _, lv := range []bool{true, true, false, false, true} {
		isa.SetLevel(lv)
		intx.SetLevel(lv)
	}
	msi.SendMSI(0xfee00000, 0x4041)
	var kinds []xensim.EventKind
	for _, e := range r.sim.EventsSince(mark) {
		switch e.Kind {
		case xensim.EventISAIRQ, xensim.EventPCIIntx, xensim.EventMSI:
			kinds = append(kinds, e.Kind)
		}
	}
	want := []xensim.EventKind{
		xensim.EventISAIRQ, xensim.EventPCIIntx,
		xensim.EventISAIRQ, xensim.EventPCIIntx,
		xensim.EventISAIRQ, xensim.EventPCIIntx,
		xensim.EventMSI,
	}
	if !slices.Equal(kinds, want) {
		t.Fatalf("recorded %v, want %v", kinds, want)
	}
	if isa.Errors()+intx.Errors()+msi.Errors() != 0 {
		t.Fatal("irq backend reported errors")
	}
}

// noResourceKernel makes resource mapping unsupported, as on a kernel or
// Xen without IOCTL_PRIVCMD_MMAP_RESOURCE.
type noResourceKernel struct{ kernel.Kernel }

func (k noResourceKernel) Open(dev kernel.Device, flags int) (kernel.File, error) {
	f, err := k.Kernel.Open(dev, flags)
	if err != nil || dev != kernel.Privcmd {
		return f, err
	}
	return noResourceFile{f}, nil
}

func TestXenGFNFallback(t *testing.T) {
	r := newRig(t, rigOpts{kernel: func(k kernel.Kernel) kernel.Kernel { return noResourceKernel{k} }})
	d := &dev{}
	must(t, r.bus.PIO.Register(0x510, 4, d))
	vga := &counter{}
	must(t, r.bus.MMIO.Register(0xa0000, 0x20000, vga))
	v := r.dom.VCPU(0)
	got, err := v.In(0x511, 1)
	must(t, err)
	if got != pattern(0x511, 1) {
		t.Fatalf("In through gfn-mapped pages = %#x", got)
	}
	res, err := v.BufferedWrite(xenabi.IOREQ_TYPE_COPY, 0xa0000, 1, 1)
	must(t, err)
	if res != xensim.Buffered {
		t.Fatalf("buffered write %v", res)
	}
	if got, _ := v.MMIORead(0xa0000, 1); got != 1 {
		t.Fatalf("buffered write not seen through gfn-mapped ring: %d", got)
	}
}

func TestXenServeErrors(t *testing.T) {
	r := newRig(t, rigOpts{noServe: true})
	must(t, r.srv.Close())
	if err := r.srv.Serve(context.Background()); !errors.Is(err, ioreq.ErrServing) {
		t.Fatalf("Serve after Close: %v, want ErrServing", err)
	}
	_, err := ioreq.NewServer(r.p, r.k, ioreq.Config{Dom: hyp.DomID(999), VCPUs: 1})
	if err == nil {
		t.Fatal("NewServer for a missing domain succeeded")
	}
}

// BenchmarkXenRoundTrip measures a guest IN from a simulated vCPU to the
// device and back through xensim (slot, event channels, worker), for the
// worker's blocking and spinning modes and a vCPU that blocks (as Xen does)
// or spins on its slot.
func BenchmarkXenRoundTrip(b *testing.B) {
	modes := []struct {
		name     string
		spin     time.Duration
		vcpuSpin int
	}{
		{"block/vcpu-block", -1, 0},
		{"spin/vcpu-block", 0, 0},
		{"block/vcpu-spin", -1, 1000},
		{"spin/vcpu-spin", 0, 1000},
	}
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			xen := testfake.NewXen(b, xensim.Config{IOReqTimeout: 20 * time.Second, Spin: m.vcpuSpin}, testfake.RAM(1, 1<<20))
			sim, dom := xen.Sim, xen.Dom
			k := sim.Kernel(0)
			p, err := privcmd.Open(k)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			bus := devices.NewBus()
			if err := bus.PIO.Register(0x510, 4, &counter{}); err != nil {
				b.Fatal(err)
			}
			srv, err := ioreq.NewServer(p, k, ioreq.Config{Dom: dom.ID(), Bus: bus, Worker: ioreq.WorkerConfig{Spin: m.spin}})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go srv.Serve(ctx)
			v := dom.VCPU(0)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.In(0x510, 4); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			var c ioreq.Counters
			srv.Stats(&c)
			b.ReportMetric(float64(c.LatencyQuantile(0.5).Nanoseconds()), "p50-service-ns")
		})
	}
}

// BenchmarkXenThroughput drives 4 vCPUs in parallel through one server
// with 1, 2 or 4 workers, blocking or spinning; ns/op is per access
// (aggregate).
func BenchmarkXenThroughput(b *testing.B) {
	for _, workers := range []int{1, 2, 4} {
		for _, spin := range []time.Duration{-1, 0} {
			name := "block"
			if spin == 0 {
				name = "spin"
			}
			b.Run(strings.Repeat("w", workers)+"/"+name, func(b *testing.B) {
				xen := testfake.NewXen(b, xensim.Config{IOReqTimeout: 20 * time.Second}, testfake.RAM(4, 1<<20))
				sim, dom := xen.Sim, xen.Dom
				k := sim.Kernel(0)
				p, err := privcmd.Open(k)
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close()
				bus := devices.NewBus()
				if err := bus.PIO.Register(0x510, 4, &counter{}); err != nil {
					b.Fatal(err)
				}
				srv, err := ioreq.NewServer(p, k, ioreq.Config{Dom: dom.ID(), Bus: bus, Workers: workers,
					Worker: ioreq.WorkerConfig{Spin: spin}})
				if err != nil {
					b.Fatal(err)
				}
				defer srv.Close()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				go srv.Serve(ctx)
				b.ResetTimer()
				var wg sync.WaitGroup
				per := b.N/4 + 1
				for vi := range 4 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						v := dom.VCPU(vi)
						for range per {
							if _, err := v.In(0x510, 4); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
			})
		}
	}
}

func TestXenRoundTripZeroAlloc(t *testing.T) {
	r := newRig(t, rigOpts{vcpus: 1})
	must(t, r.bus.PIO.Register(0x510, 4, &counter{}))
	must(t, r.bus.MMIO.Register(0xfebf0000, 0x1000, &counter{}))
	c := dm.New(r.p, r.dom.ID())
	isa := ioreq.NewISALine(c, 5)
	msi := ioreq.NewMSI(c)
	v := r.dom.VCPU(0)
	lv := false
	step := func() {
		if _, err := v.In(0x510, 4); err != nil {
			t.Fatal(err)
		}
		if err := v.MMIOWrite(0xfebf0000, 4, 1); err != nil {
			t.Fatal(err)
		}
		lv = !lv
		isa.SetLevel(lv)
		msi.SendMSI(0xfee00000, 0x30)
	}
	for range 50 {
		step() // warm up buffers on both sides
	}
	// AllocsPerRun counts every goroutine's allocations: the worker, the
	// event channel, the DM ops and the simulator together.
	if allocs := testing.AllocsPerRun(200, step); allocs != 0 {
		t.Fatalf("%v allocations per round trip, want 0", allocs)
	}
}

// failingEvtchnKernel makes reads of the event-channel device fail once
// fail is set, as a dead or revoked event-channel device would.
type failingEvtchnKernel struct {
	kernel.Kernel
	fail *atomic.Bool
}

func (k failingEvtchnKernel) Open(d kernel.Device, flags int) (kernel.File, error) {
	f, err := k.Kernel.Open(d, flags)
	if err != nil || d != kernel.Evtchn {
		return f, err
	}
	return failingReadFile{f, k.fail}, nil
}

type failingReadFile struct {
	kernel.File
	fail *atomic.Bool
}

var errDeviceGone = errors.New("event-channel device gone")

func (f failingReadFile) Read(p []byte) (int, error) {
	if f.fail.Load() {
		return 0, errDeviceGone
	}
	return f.File.Read(p)
}

func TestXenServeReturnsOnEventChannelError(t *testing.T) {
	fail := &atomic.Bool{}
	r := newRig(t, rigOpts{vcpus: 1, cfg: ioreq.Config{Worker: ioreq.WorkerConfig{Spin: -1}},
		kernel: func(k kernel.Kernel) kernel.Kernel { return failingEvtchnKernel{k, fail} }})
	must(t, r.bus.PIO.Register(0x510, 4, &counter{}))
	_, err := r.dom.VCPU(0).In(0x510, 1)
	must(t, err)
	fail.Store(true)
	// The next event makes the worker read the device and fail.
	go r.dom.VCPU(0).In(0x510, 1)
	select {
	case err := <-r.serve:
		if !errors.Is(err, errDeviceGone) {
			t.Fatalf("Serve returned %v, want an error wrapping %v", err, errDeviceGone)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve did not return after the event channel failed")
	}
}

func TestXenBAROverlappingMove(t *testing.T) {
	r := newRig(t, rigOpts{})
	bar := &dev{}
	must(t, r.bus.MMIO.Register(0xf0000000, 0x1000, bar))
	must(t, r.bus.MMIO.Move(0xf0000000, 0xf0000800))
	v := r.dom.VCPU(0)
	tests := []struct {
		gpa  uint64
		want uint64
	}{
		{0xf0000000, 0xffffffff},             // released
		{0xf0000800, pattern(0xf0000800, 4)}, // claimed (was in both)
		{0xf0001400, pattern(0xf0001400, 4)}, // claimed (new part)
		{0xf0001800, 0xffffffff},             // past the end
	}
	for _, tt := range tests {
		got, err := v.MMIORead(tt.gpa, 4)
		must(t, err)
		if got != tt.want {
			t.Errorf("read %#x = %#x, want %#x", tt.gpa, got, tt.want)
		}
	}
}

// TestXenBAROverlappingMoveUnderLoad: while a BAR moves back and forth
// between two overlapping placements, an address inside both is served by
// the device at every moment: the shared part stays claimed in Xen
// throughout (no window where neither placement is served).
func TestXenBAROverlappingMoveUnderLoad(t *testing.T) {
	r := newRig(t, rigOpts{vcpus: 2})
	const a, b, shared = 0xf0000000, 0xf0000800, 0xf0000c00
	must(t, r.bus.MMIO.Register(a, 0x1000, &dev{}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	load := make(chan error, 1)
	var reads atomic.Int64
	go func() {
		v := r.dom.VCPU(1)
		n := 0
		for ; ctx.Err() == nil; n++ {
			reads.Add(1)
			got, err := v.MMIORead(shared, 4)
			if err != nil {
				load <- err
				return
			}
			if got != pattern(shared, 4) {
				load <- fmt.Errorf("read %d of the shared address = %#x, want the device's %#x", n, got, pattern(shared, 4))
				return
			}
		}
		load <- nil
	}()
	cur, next := uint64(a), uint64(b)
	deadline := time.Now().Add(10 * time.Second)
	for moves := 0; moves < 200 || reads.Load() < 2000; moves++ {
		if time.Now().After(deadline) {
			break // slow machine: what ran still proves the property
		}
		must(t, r.bus.MMIO.Move(cur, next))
		cur, next = next, cur
		select {
		case err := <-load:
			t.Fatal(err)
		default:
		}
	}
	cancel()
	must(t, <-load)
	if reads.Load() < 100 {
		t.Fatalf("only %d reads overlapped the moves", reads.Load())
	}
}

func TestXenCloseAfterDomainDeath(t *testing.T) {
	r := newRig(t, rigOpts{})
	must(t, r.bus.PIO.Register(0x510, 4, &counter{}))
	must(t, r.bus.PCI.Register(devices.NewSBDF(0, 0, 3, 0), &dev{}))
	must(t, r.dom.Close())
	// Claiming fails (the bus refuses the registration); releasing a claim
	// of a dead domain is no error.
	if err := r.bus.PIO.Register(0x600, 4, &counter{}); !errors.Is(err, devices.ErrListener) || !errors.Is(err, unix.ESRCH) {
		t.Fatalf("Register on a dead domain: %v, want ErrListener and ESRCH", err)
	}
	must(t, r.bus.PIO.Unregister(0x510))
	must(t, r.bus.PCI.Unregister(devices.NewSBDF(0, 0, 3, 0)))
	// The domain and its servers are gone: nothing is left to release,
	// and Close says so without an error.
	if err := r.srv.Close(); err != nil {
		t.Fatalf("Close after the domain died: %v", err)
	}
}

func TestXenServersForTwoDomains(t *testing.T) {
	r := newRig(t, rigOpts{vcpus: 1})
	d1 := &dev{}
	must(t, r.bus.PIO.Register(0x510, 4, d1))
	dom2, err := r.sim.CreateDomain(xensim.DomainConfig{VCPUs: 1, RAM: []xensim.Region{{GPA: 0, Size: 1 << 20}}})
	must(t, err)
	bus2 := devices.NewBus()
	d2 := &dev{}
	must(t, bus2.PIO.Register(0x510, 4, d2))
	s2, err := ioreq.NewServer(r.p, r.k, ioreq.Config{Dom: dom2.ID(), Bus: bus2})
	must(t, err)
	defer func() { must(t, s2.Close()) }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s2.Serve(ctx)
	must(t, r.dom.VCPU(0).Out(0x510, 1, 1))
	must(t, dom2.VCPU(0).Out(0x510, 1, 2))
	if got1, got2 := d1.log(), d2.log(); len(got1) != 1 || got1[0].Val != 1 || len(got2) != 1 || got2[0].Val != 2 {
		t.Fatalf("domain 1 device saw %+v, domain 2 device %+v", got1, got2)
	}
	var c ioreq.Counters
	if allocs := testing.AllocsPerRun(10, func() { s2.Stats(&c) }); allocs != 0 {
		t.Fatalf("Stats: %v allocations, want 0", allocs)
	}
	if c.Sync[ioreq.KindPIO] != 1 {
		t.Fatalf("server 2 counted %d PIO requests, want 1", c.Sync[ioreq.KindPIO])
	}
}

// TestXenControlSequence checks the order of the control operations
// against QEMU's xen_register_ioreq (XEN-FACTS.md §1.1): create, map, get
// the buffered port, enable (Xen writes vp_eport), bind each vCPU's port
// and the buffered one; and the teardown order: disable, unbind, destroy,
// unmap.
func TestXenControlSequence(t *testing.T) {
	var mu sync.Mutex
	var ops []string
	rec := func(k kernel.Kernel) kernel.Kernel { return recKernel{k, &mu, &ops} }
	r := newRig(t, rigOpts{vcpus: 2, kernel: rec, noServe: true})
	must(t, r.bus.PIO.Register(0x510, 4, &counter{}))
	must(t, r.srv.Close())
	dmop := func(n int) string { return "dm:" + strconv.Itoa(n) }
	want := []string{
		dmop(xenabi.XEN_DMOP_nr_vcpus), // Config.VCPUs is 0: ask Xen
		dmop(xenabi.XEN_DMOP_create_ioreq_server),
		"map-resource",
		dmop(xenabi.XEN_DMOP_get_ioreq_server_info),
		dmop(xenabi.XEN_DMOP_set_ioreq_server_state),
		"bind", "bind", "bind",
		dmop(xenabi.XEN_DMOP_map_io_range_to_ioreq_server),
		dmop(xenabi.XEN_DMOP_set_ioreq_server_state),
		"unbind", "unbind", "unbind",
		dmop(xenabi.XEN_DMOP_destroy_ioreq_server),
		"munmap",
	}
	mu.Lock()
	got := slices.Clone(ops)
	mu.Unlock()
	// Ignore the map cache's own mappings.
	got = slices.DeleteFunc(got, func(s string) bool { return s == "map-gfns" })
	if !slices.Equal(got, want) {
		t.Fatalf("control sequence\n got %v\nwant %v", got, want)
	}
}

func TestXenSetEnabled(t *testing.T) {
	r := newRig(t, rigOpts{vcpus: 1})
	must(t, r.bus.PIO.Register(0x510, 4, &dev{}))
	v := r.dom.VCPU(0)
	for _, tt := range []struct {
		on   bool
		want uint64
	}{
		{false, 0xff},
		{true, pattern(0x510, 1)},
		{false, 0xff},
		{true, pattern(0x510, 1)},
	} {
		must(t, r.srv.SetEnabled(tt.on))
		got, err := v.In(0x510, 1)
		must(t, err)
		if got != tt.want {
			t.Fatalf("enabled=%v: In = %#x, want %#x", tt.on, got, tt.want)
		}
	}
}

func TestXenFullPageOfVCPUs(t *testing.T) {
	r := newRig(t, rigOpts{vcpus: ioreq.MaxVCPUs, cfg: ioreq.Config{Workers: 3}})
	must(t, r.bus.PIO.Register(0x510, 4, &dev{}))
	for _, vi := range []int{0, 1, 63, 64, ioreq.MaxVCPUs - 1} {
		got, err := r.dom.VCPU(vi).In(0x511, 1)
		must(t, err)
		if got != pattern(0x511, 1) {
			t.Fatalf("vCPU %d: In = %#x", vi, got)
		}
	}
}
