package xensim

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"godm/hyp"
	"godm/hyp/kernel"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// reqView is a request as the fake device model saw it in a slot.
type reqView struct {
	vcpu        int
	addr, data  uint64
	count, size uint32
	typ, dir    uint8
	df, ptr     bool
}

type bufEntry struct {
	typ, dir uint8
	size     int
	addr     uint32
	data     uint32
}

// fakeDM is a minimal device model written against the raw device files:
// one ioreq server, its frames mapped through MMAP_RESOURCE, one evtchn
// port per vCPU, and a loop answering requests with handle.
type fakeDM struct {
	t       testing.TB
	s       *Sim
	d       *Domain
	pc, ev  kernel.File
	id      uint16
	frames  []byte
	ioreq   []byte
	bufpg   []byte
	ports   []uint32 // local port per vCPU
	bufPort uint32
	handle  func(r reqView) uint64

	mu    sync.Mutex
	seen  []reqView
	bufs  []bufEntry
	done  chan struct{}
	bufCh chan struct{} // signalled when buffered entries arrive
	// serveHook, when set, replaces serve (misbehaving device models).
	serveHook func(vcpu int)
	// noDrain leaves the buffered ring alone (ring-full tests).
	noDrain atomic.Bool
}

func u16(v uint16) []byte { b := make([]byte, 2); binary.LittleEndian.PutUint16(b, v); return b }

func mustOpen(t testing.TB, k kernel.Kernel, dev kernel.Device, flags int) kernel.File {
	t.Helper()
	f, err := k.Open(dev, flags)
	if err != nil {
		t.Fatalf("open %v: %v", dev, err)
	}
	return f
}

func createServer(t testing.TB, pc kernel.File, dom uint16, bufMode uint8) uint16 {
	t.Helper()
	u, err := dmop(pc, dom, xenabi.XEN_DMOP_create_ioreq_server, []byte{bufMode})
	if err != nil {
		t.Fatalf("create ioreq server: %v", err)
	}
	return binary.LittleEndian.Uint16(u[4:])
}

func rangeOp(pc kernel.File, dom uint16, op uint32, id uint16, kind uint32, start, end uint64) error {
	u := make([]byte, 24)
	binary.LittleEndian.PutUint16(u, id)
	binary.LittleEndian.PutUint32(u[4:], kind)
	binary.LittleEndian.PutUint64(u[8:], start)
	binary.LittleEndian.PutUint64(u[16:], end)
	_, err := dmop(pc, dom, op, u)
	return err
}

func setState(pc kernel.File, dom uint16, id uint16, on bool) error {
	u := []byte{byte(id), byte(id >> 8), 0, 0}
	if on {
		u[2] = 1
	}
	_, err := dmop(pc, dom, xenabi.XEN_DMOP_set_ioreq_server_state, u)
	return err
}

// newFakeDM sets up a server on d with bufMode and starts its loop.
func newFakeDM(t testing.TB, s *Sim, d *Domain, bufMode uint8, handle func(reqView) uint64, opts ...func(*fakeDM)) *fakeDM {
	t.Helper()
	return newFakeDMIn(t, s, 0, d, bufMode, handle, opts...)
}

// noDrain makes the DM leave the buffered ring alone (ring-full tests).
// It must be set before the loop starts: a drain already under way would
// race with the test's writes.
func noDrain(dm *fakeDM) { dm.noDrain.Store(true) }

// newFakeDMIn is newFakeDM for a device model running in domain dmDom.
func newFakeDMIn(t testing.TB, s *Sim, dmDom hyp.DomID, d *Domain, bufMode uint8, handle func(reqView) uint64, opts ...func(*fakeDM)) *fakeDM {
	t.Helper()
	k := s.Kernel(dmDom)
	dm := &fakeDM{t: t, s: s, d: d, handle: handle, done: make(chan struct{}), bufCh: make(chan struct{}, 1)}
	dm.pc = mustOpen(t, k, kernel.Privcmd, 0)
	dm.ev = mustOpen(t, k, kernel.Evtchn, 0)
	dom := uint16(d.ID())
	dm.id = createServer(t, dm.pc, dom, bufMode)
	var err error
	dm.frames, err = dm.pc.Mmap(0, 2*pageSize, unix.PROT_READ|unix.PROT_WRITE)
	if err != nil {
		t.Fatal(err)
	}
	if bufMode != xenabi.HVM_IOREQSRV_BUFIOREQ_OFF {
		if _, err := rawMmapResource(dm.pc, dom, xenabi.XENMEM_resource_ioreq_server, uint32(dm.id), 0, 2, dm.frames); err != nil {
			t.Fatalf("map frames: %v", err)
		}
		dm.bufpg = dm.frames[:pageSize]
	} else if _, err := rawMmapResource(dm.pc, dom, xenabi.XENMEM_resource_ioreq_server, uint32(dm.id), 1, 1, dm.frames[pageSize:]); err != nil {
		t.Fatalf("map ioreq frame: %v", err)
	}
	dm.ioreq = dm.frames[pageSize:]
	if err := setState(dm.pc, dom, dm.id, true); err != nil {
		t.Fatalf("enable: %v", err)
	}
	for i := 0; i < d.NumVCPUs(); i++ {
		rp := atomic.LoadUint32(u32at(dm.ioreq, i*32+24))
		lp, err := evBindInterdomain(dm.ev, uint32(dom), rp)
		if err != nil {
			t.Fatalf("bind vcpu%d port %d: %v", i, rp, err)
		}
		dm.ports = append(dm.ports, lp)
	}
	if bufMode != xenabi.HVM_IOREQSRV_BUFIOREQ_OFF {
		u := make([]byte, 24)
		binary.LittleEndian.PutUint16(u, dm.id)
		binary.LittleEndian.PutUint16(u[2:], xenabi.XEN_DMOP_no_gfns)
		out, err := dmop(dm.pc, dom, xenabi.XEN_DMOP_get_ioreq_server_info, u)
		if err != nil {
			t.Fatalf("get info: %v", err)
		}
		dm.bufPort, err = evBindInterdomain(dm.ev, uint32(dom), binary.LittleEndian.Uint32(out[4:]))
		if err != nil {
			t.Fatalf("bind buffered port: %v", err)
		}
	}
	// Consume the pending-on-bind events now, so that the loop starts
	// with nothing spurious queued and tests may change its behaviour
	// before their first access.
	want := len(dm.ports)
	if dm.bufPort != 0 {
		want++
	}
	pb := make([]byte, 4)
	for i := 0; i < want; i++ {
		if n, err := dm.ev.Read(pb); err != nil || n != 4 {
			t.Fatalf("pending-on-bind event %d: %d, %v", i, n, err)
		}
		dm.ev.Write(pb)
	}
	for _, o := range opts {
		o(dm)
	}
	go dm.loop()
	t.Cleanup(dm.close)
	return dm
}

func (dm *fakeDM) close() {
	dm.ev.Close()
	<-dm.done
	dm.pc.Munmap(dm.frames)
	dm.pc.Close()
}

func (dm *fakeDM) loop() {
	defer close(dm.done)
	buf := make([]byte, 64*4)
	for {
		n, err := dm.ev.Read(buf)
		if err != nil {
			return
		}
		for i := 0; i+4 <= n; i += 4 {
			p := binary.NativeEndian.Uint32(buf[i:])
			dm.ev.Write(buf[i : i+4])
			if p == dm.bufPort {
				if !dm.noDrain.Load() {
					dm.drainBuffered()
				}
				continue
			}
			for v, lp := range dm.ports {
				if lp != p {
					continue
				}
				dm.mu.Lock()
				hook := dm.serveHook
				dm.mu.Unlock()
				if hook != nil {
					hook(v)
				} else {
					dm.serve(v)
				}
			}
		}
	}
}

func (dm *fakeDM) drainBuffered() {
	pg := dm.bufpg
	for {
		// Both pointers in one read, and read_pointer advanced with an
		// atomic add: Xen canonicalises them with a 64-bit cmpxchg at any
		// time (ATOMIC mode), which a plain store would undo.
		ptrs := atomic.LoadUint64(u64at(pg, 0))
		rp, wp := uint32(ptrs), uint32(ptrs>>32)
		if rp == wp || wp-rp > xenabi.IOREQ_BUFFER_SLOT_NUM {
			return
		}
		o := 8 + int(rp%xenabi.IOREQ_BUFFER_SLOT_NUM)*8
		w0 := atomic.LoadUint32(u32at(pg, o))
		e := bufEntry{typ: uint8(w0), dir: uint8(w0>>9) & 1, size: 1 << ((w0 >> 10) & 3),
			addr: w0 >> 12, data: atomic.LoadUint32(u32at(pg, o+4))}
		dm.mu.Lock()
		dm.bufs = append(dm.bufs, e)
		dm.mu.Unlock()
		select {
		case dm.bufCh <- struct{}{}:
		default:
		}
		atomic.AddUint32(u32at(pg, 0), 1)
	}
}

func (dm *fakeDM) serve(v int) {
	slot := dm.ioreq[v*32 : v*32+32]
	word := u32at(slot, 28)
	w := atomic.LoadUint32(word)
	if (w>>16)&0xf != xenabi.STATE_IOREQ_READY {
		return // spurious (e.g. the pending-on-bind event)
	}
	atomic.StoreUint32(word, w&^(0xf<<16)|xenabi.STATE_IOREQ_INPROCESS<<16)
	f := uint8(w >> 16)
	r := reqView{vcpu: v, addr: atomic.LoadUint64(u64at(slot, 0)), data: atomic.LoadUint64(u64at(slot, 8)),
		count: atomic.LoadUint32(u32at(slot, 16)), size: atomic.LoadUint32(u32at(slot, 20)),
		typ: uint8(w >> 24), dir: (f >> 5) & 1, df: f&xenabi.IoreqDFBit != 0, ptr: f&xenabi.IoreqDataIsPtrBit != 0}
	dm.mu.Lock()
	dm.seen = append(dm.seen, r)
	dm.mu.Unlock()
	if dm.handle != nil {
		if val := dm.handle(r); r.dir == xenabi.IOREQ_READ && !r.ptr {
			atomic.StoreUint64(u64at(slot, 8), val)
		}
	}
	atomic.StoreUint32(word, w&^(0xf<<16)|xenabi.STATE_IORESP_READY<<16)
	evNotify(dm.ev, &xenabi.IoctlEvtchnNotify{Port: dm.ports[v]})
}

func (dm *fakeDM) requests() []reqView {
	dm.mu.Lock()
	defer dm.mu.Unlock()
	return append([]reqView(nil), dm.seen...)
}

func (dm *fakeDM) buffered() []bufEntry {
	dm.mu.Lock()
	defer dm.mu.Unlock()
	return append([]bufEntry(nil), dm.bufs...)
}

// newSim returns a Sim closed at the end of the test, with one guest.
func newSim(t testing.TB, cfg Config, dc DomainConfig) (*Sim, *Domain) {
	t.Helper()
	if cfg.IOReqTimeout == 0 {
		// Generous: a loaded CI machine must not turn slowness into a
		// failure; a real hang still fails the test.
		cfg.IOReqTimeout = 30 * time.Second
	}
	s := New(cfg)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("sim close: %v", err)
		}
	})
	d, err := s.CreateDomain(dc)
	if err != nil {
		t.Fatalf("create domain: %v", err)
	}
	return s, d
}

func stdDomain() DomainConfig {
	return DomainConfig{VCPUs: 2, RAM: []Region{{GPA: 0, Size: 0xa0000}, {GPA: 0x100000, Size: 0x100000}}}
}

func isErrno(err error, want unix.Errno) bool {
	if want == 0 {
		return err == nil
	}
	return errors.Is(err, want)
}

// waitBuffered waits (bounded) until the DM has drained n buffered slots.
func (dm *fakeDM) waitBuffered(n int) []bufEntry {
	dm.t.Helper()
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	for {
		if got := dm.buffered(); len(got) >= n {
			return got
		}
		select {
		case <-dm.bufCh:
		case <-timer.C:
			dm.t.Fatalf("buffered entries %+v, want %d", dm.buffered(), n)
		}
	}
}

func notifyArg(p uint32) *xenabi.IoctlEvtchnNotify { return &xenabi.IoctlEvtchnNotify{Port: p} }

func (dm *fakeDM) setHook(f func(vcpu int)) {
	dm.mu.Lock()
	dm.serveHook = f
	dm.mu.Unlock()
}

func hypDom(d uint16) hyp.DomID { return hyp.DomID(d) }
