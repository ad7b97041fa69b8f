package ioreq_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"godm/devices"
	"godm/hyp"
	"godm/hyp/dm"
	"godm/hyp/foreign"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"
	"godm/internal/testfake"
	"godm/ioreq"
	"godm/memory"
)

// outs sends n bytes of guest RAM at gpa to the logging device at port
// with one rep outsb (the server reads them through its map cache) and
// returns what the device received.
func outs(t *testing.T, v *xensim.VCPU, d *dev, port uint16, gpa uint64, n int) []byte {
	t.Helper()
	before := len(d.log())
	must(t, v.RepOuts(port, 1, uint32(n), gpa, false))
	ws := d.log()[before:]
	got := make([]byte, len(ws))
	for i, w := range ws {
		got[i] = byte(w.Val)
	}
	return got
}

// decreaseReservation removes gfn from dom's p2m with
// XENMEM_decrease_reservation, as a balloon driver does (struct
// xen_memory_reservation: extent_start, nr_extents, extent_order,
// mem_flags, domid; xen/include/public/memory.h).
func decreaseReservation(t *testing.T, p *privcmd.Handle, dom hyp.DomID, gfn uint64) {
	t.Helper()
	b, err := p.Buffers().Alloc(4096)
	must(t, err)
	defer b.Free()
	m := b.Bytes()
	clear(m[:512])
	binary.LittleEndian.PutUint64(m[256:], gfn)
	binary.LittleEndian.PutUint64(m[0:], b.Addr()+256)
	binary.LittleEndian.PutUint64(m[8:], 1)
	binary.LittleEndian.PutUint16(m[24:], uint16(dom))
	n, err := p.Hypercall(xenabi.HYPERVISOR_memory_op, [5]uint64{xenabi.XENMEM_decrease_reservation, b.Addr()})
	must(t, err)
	if n != 1 {
		t.Fatalf("decrease_reservation of gfn %#x: %d extents done, want 1", gfn, n)
	}
}

// TestXenInvalidateAfterP2MChange changes the guest's p2m under the map
// cache (relocate_memory moves another page to the address;
// decrease_reservation leaves a hole). Until Xen's INVALIDATE the cache
// keeps its mapping (as Xen's foreign mapping keeps the page); after it,
// the next DMA maps afresh and sees the new page or the hole, never the
// stale page; a region pinned before keeps a valid view of the old page
// until its release, which unmaps it.
func TestXenInvalidateAfterP2MChange(t *testing.T) {
	const x, y = 0x5000, 0x9000 // in the same 1 MiB bucket
	oldPage, newPage := []byte("old-page"), []byte("new-page")
	allOnes := bytes.Repeat([]byte{0xff}, len(oldPage))
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, r *rig)
		// invalidate delivers Xen's INVALIDATE to the servers.
		invalidate func(t *testing.T, v *xensim.VCPU)
		want       []byte // through the server's DMA; nil: a hole
	}{
		{
			name: "relocate_memory",
			change: func(t *testing.T, r *rig) {
				must(t, dm.New(r.p, r.dom.ID()).RelocateMemory(1, y>>12, x>>12))
			},
			invalidate: func(t *testing.T, v *xensim.VCPU) { must(t, v.InvalidateMapCache()) },
			want:       newPage,
		},
		{
			name:   "decrease_reservation",
			change: func(t *testing.T, r *rig) { decreaseReservation(t, r.p, r.dom.ID(), x>>12) },
			// Xen owes the invalidation and sends it when the guest's
			// hypercall completes.
			invalidate: func(t *testing.T, v *xensim.VCPU) {
				sent, err := v.GuestHypercall()
				must(t, err)
				if !sent {
					t.Fatal("no INVALIDATE after decrease_reservation")
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, rigOpts{vcpus: 1})
			d := &dev{}
			must(t, r.bus.PIO.Register(0x510, 1, d))
			v := r.dom.VCPU(0)
			must(t, r.dom.WriteRAM(x, oldPage))
			must(t, r.dom.WriteRAM(y, newPage))
			if got := outs(t, v, d, 0x510, x, len(oldPage)); !bytes.Equal(got, oldPage) {
				t.Fatalf("DMA before the change = %q, want %q", got, oldPage)
			}
			pin, err := r.cache.Pin(x, len(oldPage)) // a DMA in flight
			must(t, err)
			defer pin.Release()

			tc.change(t, r)
			// Xen has not asked yet: the cache still shows the page it
			// mapped (what makes INVALIDATE necessary).
			buf := make([]byte, len(oldPage))
			if err := r.cache.Read(x, buf); err != nil || !bytes.Equal(buf, oldPage) {
				t.Fatalf("cache before INVALIDATE = %q, %v; want the mapped %q", buf, err, oldPage)
			}

			tc.invalidate(t, v)
			if c := r.counters(); c.Sync[ioreq.KindInvalidate] != 1 {
				t.Fatalf("INVALIDATE requests = %d, want 1", c.Sync[ioreq.KindInvalidate])
			}

			faults := r.counters().MemFaults
			got := outs(t, v, d, 0x510, x, len(oldPage))
			err = r.cache.Read(x, buf)
			if tc.want != nil {
				if !bytes.Equal(got, tc.want) || err != nil || !bytes.Equal(buf, tc.want) {
					t.Fatalf("after INVALIDATE: DMA %q, cache %q (%v); want %q, never the stale %q", got, buf, err, tc.want, oldPage)
				}
			} else {
				if !bytes.Equal(got, allOnes) || !errors.Is(err, memory.ErrUnmapped) {
					t.Fatalf("after INVALIDATE: DMA %q, cache error %v; want all-ones from the hole and ErrUnmapped", got, err)
				}
				if c := r.counters(); c.MemFaults != faults+uint64(len(oldPage)) {
					t.Fatalf("MemFaults %d -> %d, want %d more", faults, c.MemFaults, len(oldPage))
				}
			}

			// The pinned user: still the old page, still mapped.
			if n, err := pin.ReadAt(buf, 0); n != len(buf) || err != nil || !bytes.Equal(buf, oldPage) {
				t.Fatalf("pinned view after INVALIDATE = %q, %d, %v; want %q", buf, n, err, oldPage)
			}
			if live := r.cache.Stats().Live; live != 2 {
				t.Fatalf("live buckets with the pin held = %d, want 2 (the pinned old one and the new one)", live)
			}
			pin.Release()
			if live := r.cache.Stats().Live; live != 1 {
				t.Fatalf("live buckets after Release = %d, want 1 (the pinned one unmapped)", live)
			}
		})
	}
}

// tagDev is a test device whose reads return pattern(addr) ^ tag, so that
// a read tells which process's device answered; writes are logged.
type tagDev struct {
	dev
	tag uint64
}

func (d *tagDev) Read(a devices.Access) uint64 {
	return (d.dev.Read(a) ^ d.tag) & devices.SizeMask(a.Size)
}

// process is what one godm process on a domain holds: its own privcmd
// and event-channel handles (opened from its own view of the kernel), its
// own map cache over its own foreign mappings, its own bus and ioreq
// server.
type process struct {
	p     *privcmd.Handle
	cache *memory.MapCache
	bus   *devices.Bus
	srv   *ioreq.Server
	pio   *tagDev
	cfg   *tagDev
	mmio  *tagDev
	stop  context.CancelFunc
	serve chan error
}

func startProcess(t *testing.T, sim *xensim.Sim, dom hyp.DomID, tag uint64, port uint16, bar uint64, sbdf devices.SBDF) *process {
	t.Helper()
	k := sim.Kernel(0) // a separate set of device files, as another process opens
	p, err := privcmd.Open(k)
	must(t, err)
	// A device model restricts its privcmd handle to its guest
	// (IOCTL_PRIVCMD_RESTRICT), as QEMU does.
	must(t, p.Restrict(dom))
	pr := &process{p: p, bus: devices.NewBus(), pio: &tagDev{tag: tag}, cfg: &tagDev{tag: tag}, mmio: &tagDev{tag: tag}}
	pr.cache, err = memory.NewMapCache(memory.MapperFunc(func(gfns []uint64, w bool) (memory.Mapping, error) {
		return foreign.Map(p, dom, w, gfns)
	}), memory.MapCacheConfig{})
	must(t, err)
	pr.srv, err = ioreq.NewServer(p, k, ioreq.Config{Dom: dom, Bus: pr.bus,
		Targets: ioreq.Targets{Memory: pr.cache, Invalidate: pr.cache.Invalidate}})
	must(t, err)
	must(t, pr.bus.PIO.Register(uint64(port), 4, pr.pio))
	must(t, pr.bus.MMIO.Register(bar, 0x1000, pr.mmio))
	must(t, pr.bus.PCI.Register(sbdf, pr.cfg))
	ctx, cancel := context.WithCancel(context.Background())
	pr.stop = cancel
	pr.serve = make(chan error, 1)
	go func() { pr.serve <- pr.srv.Serve(ctx) }()
	t.Cleanup(func() { pr.exit(t) })
	return pr
}

// exit is the process going away: serving stops, the server is torn
// down, the mappings and handles are closed. It is idempotent.
func (pr *process) exit(t *testing.T) {
	if pr.stop == nil {
		return
	}
	pr.stop()
	pr.stop = nil
	select {
	case err := <-pr.serve:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("Serve did not return within 20s of its cancel")
	}
	if err := pr.srv.Close(); err != nil {
		t.Errorf("server Close: %v", err)
	}
	pr.cache.Close()
	if err := pr.p.Close(); err != nil {
		t.Errorf("privcmd Close: %v", err)
	}
}

func (pr *process) counters() ioreq.Counters {
	var c ioreq.Counters
	pr.srv.Stats(&c)
	return c
}

// TestXenSeveralProcessesOnOneDomain: two godm processes (independently
// opened handles, own map caches, own servers and devices) serve one
// domain. Guest accesses reach the right one, DMA goes through each
// one's own mappings, INVALIDATE reaches both, and when one exits under
// load the other keeps serving while the departed one's ranges go back to
// Xen.
func TestXenSeveralProcessesOnOneDomain(t *testing.T) {
	xen := testfake.NewXen(t, xensim.Config{IOReqTimeout: 20 * time.Second},
		xensim.DomainConfig{VCPUs: 2, RAM: []xensim.Region{{GPA: 0, Size: 0xa0000}, {GPA: 0x100000, Size: ramSize - 0x100000}}})
	sim, domain := xen.Sim, xen.Dom
	dom := domain.ID()
	type placement struct {
		tag  uint64
		port uint16
		bar  uint64
		sbdf devices.SBDF
	}
	places := []placement{
		{0x1111111111111111, 0x510, 0xf0000000, devices.NewSBDF(0, 0, 3, 0)},
		{0x2222222222222222, 0x520, 0xf1000000, devices.NewSBDF(0, 0, 4, 0)},
	}
	procs := []*process{
		startProcess(t, sim, dom, places[0].tag, places[0].port, places[0].bar, places[0].sbdf),
		startProcess(t, sim, dom, places[1].tag, places[1].port, places[1].bar, places[1].sbdf),
	}
	if procs[0].srv.ID() == procs[1].srv.ID() {
		t.Fatalf("both processes got ioreq server %d", procs[0].srv.ID())
	}
	v := domain.VCPU(0)
	must(t, domain.WriteRAM(0x7000, []byte("dma-data")))

	// check reads every placement from v: served ones answer with their
	// process's tag, gone ones with all-ones (Xen).
	check := func(stage string, served []bool) {
		t.Helper()
		for i, pl := range places {
			type access struct {
				what string
				read func() (uint64, error)
				addr uint64 // as the device sees it
				size uint8
			}
			for _, a := range []access{
				{"port", func() (uint64, error) { return v.In(pl.port, 2) }, uint64(pl.port), 2},
				{"MMIO", func() (uint64, error) { return v.MMIORead(pl.bar+8, 4) }, pl.bar + 8, 4},
				{"PCI config", func() (uint64, error) { return v.PCIConfigRead(uint32(pl.sbdf), 0x40, 4) }, 0x40, 4},
			} {
				got, err := a.read()
				must(t, err)
				want := devices.SizeMask(a.size) // Xen: nobody claims it
				if served[i] {
					want &= pattern(a.addr, a.size) ^ pl.tag
				}
				if got != want {
					t.Errorf("%s: process %d's %s = %#x, want %#x", stage, i, a.what, got, want)
				}
			}
		}
	}
	check("both serving", []bool{true, true})

	// DMA through each process's own foreign mappings.
	for i, pr := range procs {
		before := len(pr.pio.log())
		must(t, v.RepOuts(places[i].port, 1, 8, 0x7000, false))
		var got []byte
		for _, w := range pr.pio.log()[before:] {
			got = append(got, byte(w.Val))
		}
		if string(got) != "dma-data" {
			t.Errorf("process %d's device received %q by rep outsb, want %q", i, got, "dma-data")
		}
		if st := pr.cache.Stats(); st.Maps == 0 {
			t.Errorf("process %d's map cache mapped nothing", i)
		}
	}

	// Xen broadcasts INVALIDATE to every server: each process drops its
	// own mappings.
	must(t, v.InvalidateMapCache())
	for i, pr := range procs {
		if c := pr.counters(); c.Sync[ioreq.KindInvalidate] != 1 {
			t.Errorf("process %d saw %d INVALIDATE requests, want 1", i, c.Sync[ioreq.KindInvalidate])
		}
		if st := pr.cache.Stats(); st.Invalidations != 1 || st.Live != 0 {
			t.Errorf("process %d's cache after INVALIDATE: %+v, want 1 invalidation and nothing live", i, st)
		}
	}

	// Process 0 exits while vCPU 1 keeps process 1 busy.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	load := make(chan error, 1)
	var loaded atomic.Int64
	go func() {
		w := domain.VCPU(1)
		want := (pattern(uint64(places[1].port), 2) ^ places[1].tag) & 0xffff
		for ctx.Err() == nil {
			got, err := w.In(places[1].port, 2)
			if err == nil && got != want {
				err = fmt.Errorf("process 1's port = %#x during process 0's exit, want %#x", got, want)
			}
			if err != nil {
				load <- err
				return
			}
			loaded.Add(1)
		}
		load <- nil
	}()
	mark := sim.LastSeq()
	atExit := loaded.Load()
	procs[0].exit(t)
	for loaded.Load() < atExit+100 {
		select {
		case err := <-load:
			t.Fatalf("load stopped: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	must(t, <-load)

	var destroyed []uint16
	for _, e := range sim.EventsSince(mark) {
		if e.Kind == xensim.EventIOReqServer && e.Detail == "destroy" {
			destroyed = append(destroyed, e.Server)
		}
	}
	if len(destroyed) != 1 || destroyed[0] != uint16(procs[0].srv.ID()) {
		t.Fatalf("servers destroyed by process 0's exit: %v, want only its own %d", destroyed, procs[0].srv.ID())
	}
	check("after process 0 exited", []bool{false, true})
	// Process 1's DMA still works, through its own mappings.
	before := len(procs[1].pio.log())
	must(t, v.RepOuts(places[1].port, 1, 8, 0x7000, false))
	if n := len(procs[1].pio.log()) - before; n != 8 {
		t.Fatalf("process 1's device received %d bytes after process 0 exited, want 8", n)
	}

	procs[1].exit(t)
	check("after both exited", []bool{false, false})
	for _, e := range sim.Violations() {
		t.Errorf("protocol violation: %v", e)
	}
}

// TestXenRepZeroAllocRealComponents: rep PIO in/out and MMIO<->RAM
// copies allocate nothing with the real components: devices.Space for the
// devices and memory.MapCache over xensim's foreign mappings for guest
// RAM, first through the dispatcher alone, then on the whole round trip
// (simulated vCPU, ioreq page, event channel, worker).
func TestXenRepZeroAllocRealComponents(t *testing.T) {
	r := newRig(t, rigOpts{vcpus: 1})
	must(t, r.bus.PIO.Register(0x1f0, 8, &counter{}))
	must(t, r.bus.MMIO.Register(0xfe000000, 0x10000, &counter{}))
	d := ioreq.NewDispatcher(ioreq.Targets{PIO: r.bus.PIO, MMIO: r.bus.MMIO, PCI: r.bus.PCI, Memory: r.cache, Invalidate: func() {}})
	scratch := make([]byte, 4096)
	var st ioreq.Stats
	const bucketEdge = 0x200000 // 1 MiB buckets: crossing one maps two
	for _, tc := range []struct {
		name string
		req  ioreq.Request
	}{
		{"rep insw", ioreq.Request{Type: ioreq.TypePIO, Addr: 0x1f0, Size: 2, Count: 600, Read: true, DataIsPtr: true, Data: 0x10f00}},
		{"rep insl df", ioreq.Request{Type: ioreq.TypePIO, Addr: 0x1f0, Size: 4, Count: 300, Read: true, DataIsPtr: true, DF: true, Data: 0x11100}},
		{"rep outsb", ioreq.Request{Type: ioreq.TypePIO, Addr: 0x1f0, Size: 1, Count: 4096, DataIsPtr: true, Data: 0x20000}},
		{"rep outsl df", ioreq.Request{Type: ioreq.TypePIO, Addr: 0x1f4, Size: 4, Count: 64, DataIsPtr: true, DF: true, Data: 0x21000}},
		{"rep outsw across buckets", ioreq.Request{Type: ioreq.TypePIO, Addr: 0x1f0, Size: 2, Count: 16, DataIsPtr: true, Data: bucketEdge - 8}},
		{"movsq MMIO to RAM", ioreq.Request{Type: ioreq.TypeCopy, Addr: 0xfe000000, Size: 8, Count: 512, Read: true, DataIsPtr: true, Data: 0x30000}},
		{"movsq MMIO to RAM across buckets df", ioreq.Request{Type: ioreq.TypeCopy, Addr: 0xfe000800, Size: 8, Count: 8, Read: true, DataIsPtr: true, DF: true, Data: bucketEdge + 16}},
		{"movsd RAM to MMIO", ioreq.Request{Type: ioreq.TypeCopy, Addr: 0xfe000000, Size: 4, Count: 1024, DataIsPtr: true, Data: 0x40000}},
		{"movsb RAM to MMIO df", ioreq.Request{Type: ioreq.TypeCopy, Addr: 0xfe00ffff, Size: 1, Count: 4096, DataIsPtr: true, DF: true, Data: 0x50fff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req
			for range 3 {
				d.Handle(&req, scratch, &st) // map the buckets
			}
			if allocs := testing.AllocsPerRun(100, func() { d.Handle(&req, scratch, &st) }); allocs != 0 {
				t.Fatalf("%v allocations per request, want 0", allocs)
			}
		})
	}
	var c ioreq.Counters
	st.Snapshot(&c)
	if c.MemFaults != 0 {
		t.Fatalf("MemFaults = %d: the copies did not reach guest RAM", c.MemFaults)
	}
	if s := r.cache.Stats(); s.Maps == 0 || s.Maps != uint64(s.Live) {
		t.Fatalf("map cache %+v: want every bucket mapped once and still live", s)
	}

	// The whole round trip, every goroutine's allocations counted.
	v := r.dom.VCPU(0)
	step := func() {
		must(t, v.RepIns(0x1f0, 2, 600, 0x10f00, false))
		must(t, v.RepOuts(0x1f4, 4, 64, 0x21000+4*63, true))
		must(t, v.RepMovs(0xfe000000, 8, 256, 0x30000, false, false))
		must(t, v.RepMovs(0xfe000000, 4, 512, 0x40000, false, true))
	}
	for range 20 {
		step()
	}
	if allocs := testing.AllocsPerRun(50, step); allocs != 0 {
		t.Fatalf("%v allocations per round of rep requests through xensim, want 0", allocs)
	}
	if c := r.counters(); c.MemFaults != 0 || c.Reps == 0 {
		t.Fatalf("server counters: %d mem faults, %d rep elements; want 0 and > 0", c.MemFaults, c.Reps)
	}
}

// TestXenInvalidateOrderingUnderDMA: one vCPU keeps reading a guest page
// by rep outsb while another moves a new page under it (relocate_memory)
// and sends INVALIDATE, generation after generation, with two workers so
// that the DMA and the invalidation run in parallel. A DMA that starts
// after an INVALIDATE completed never shows a page older than the one
// that INVALIDATE announced.
func TestXenInvalidateOrderingUnderDMA(t *testing.T) {
	r := newRig(t, rigOpts{vcpus: 2, cfg: ioreq.Config{Workers: 2}})
	d := &dev{}
	must(t, r.bus.PIO.Register(0x510, 1, d))
	const x = 0x200000    // the page the DMA reads
	const pool = 0x300000 // fresh pages, one per generation
	page := func(g byte) []byte { return bytes.Repeat([]byte{g}, 4096) }
	must(t, r.dom.WriteRAM(x, page(1)))
	c := dm.New(r.p, r.dom.ID())
	var published atomic.Uint32
	published.Store(1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	load := make(chan error, 1)
	var dmas atomic.Int64
	go func() {
		v := r.dom.VCPU(1)
		for n := 0; ctx.Err() == nil; n++ {
			floor := byte(published.Load())
			before := len(d.log())
			if err := v.RepOuts(0x510, 1, 8, x+uint64(n%64)*8, false); err != nil {
				load <- err
				return
			}
			for _, w := range d.log()[before:] {
				if byte(w.Val) < floor {
					load <- fmt.Errorf("DMA %d saw generation %d after the INVALIDATE of generation %d completed", n, w.Val, floor)
					return
				}
			}
			dmas.Add(1)
		}
		load <- nil
	}()
	v := r.dom.VCPU(0)
	const gens = 60
	for g := byte(2); g < 2+gens; g++ {
		src := uint64(pool) + uint64(g)*4096
		must(t, r.dom.WriteRAM(src, page(g)))
		must(t, c.RelocateMemory(1, src>>12, x>>12))
		must(t, v.InvalidateMapCache())
		published.Store(uint32(g))
		select {
		case err := <-load:
			t.Fatal(err)
		default:
		}
	}
	// Let the load see the last generation.
	for at := dmas.Load(); dmas.Load() < at+10; {
		select {
		case err := <-load:
			t.Fatalf("load stopped: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	must(t, <-load)
	if n := r.counters().Sync[ioreq.KindInvalidate]; n != gens {
		t.Fatalf("%d INVALIDATE requests, want %d", n, gens)
	}
	t.Logf("%d DMAs overlapped %d generations", dmas.Load(), gens)
}
