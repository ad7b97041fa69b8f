package ioreq

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"godm/devices"
	"godm/hyp"
	"godm/hyp/dm"
	"godm/hyp/evtchn"
	"godm/hyp/foreign"
	"godm/hyp/kernel"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// BufMode selects how the server handles buffered requests.
type BufMode uint8

// Buffered-request modes (HVM_IOREQSRV_BUFIOREQ_*, hvm_op.h).
const (
	// BufAtomic has Xen canonicalise the ring pointers with a 64-bit
	// cmpxchg; the default, as in QEMU.
	BufAtomic BufMode = iota
	// BufOff makes Xen send every request synchronously.
	BufOff
)

// Config configures a Server.
type Config struct {
	// Dom is the guest domain.
	Dom hyp.DomID
	// VCPUs is the number of vCPU slots to serve; zero asks Xen
	// (XEN_DMOP_nr_vcpus).
	VCPUs int
	// Workers is the number of worker goroutines the vCPUs are sharded
	// over (vCPU i goes to worker i mod Workers); zero means DefaultWorkers.
	Workers int
	// BufIOReq selects the buffered-request mode.
	BufIOReq BufMode
	// Worker tunes the workers' polling.
	Worker WorkerConfig
	// Bus, if set, is served (its spaces become the PIO, MMIO and PCI
	// targets unless Targets sets them) and mirrored into Xen: the server
	// becomes the listener of its three spaces and claims every range and
	// PCI function registered in them, now and later. A bus serves one
	// server (a space has one listener); give each server its own bus.
	Bus *devices.Bus
	// Targets are the dispatch targets (memory, invalidation hook, and
	// spaces when Bus is nil).
	Targets Targets
}

// DefaultWorkers returns the default number of workers for vcpus vCPUs:
// one per vCPU up to half the usable CPUs (the other half is left to the
// guest's vCPUs and to device back ends). On 2 CPUs that is one worker,
// which BenchmarkXenThroughput measured fastest there (4 vCPUs: one
// spinning worker about 4 µs per access; two 6-10 µs, four 25-35 µs,
// competing with the vCPUs for the CPUs).
func DefaultWorkers(vcpus int) int {
	return max(1, min(vcpus, runtime.GOMAXPROCS(0)/2))
}

// Server is one ioreq server of a domain: the Xen objects (server id,
// mapped pages, bound event channels, claimed ranges) and the workers that
// serve them. Create with NewServer, run with Serve, release with Close.
type Server struct {
	dom    hyp.DomID
	dmc    *dm.Client
	id     dm.ServerID
	exists bool // the server exists in Xen: teardown destroys it
	bus    *devices.Bus
	pages  *foreign.Mapping
	sp     *SharedPage
	ring   *Ring
	disp   *Dispatcher

	handles []*evtchn.Handle
	bound   []boundPort
	workers []*worker
	gate    *pauseGate

	serving  atomic.Bool
	mu       sync.Mutex // guards cancel, done, closed, unmapErr
	cancel   context.CancelFunc
	done     chan struct{}
	closed   bool
	unmapErr error // first failed unmap reported by a listener callback
}

type boundPort struct {
	h    *evtchn.Handle
	port evtchn.Port
}

// NewServer creates an ioreq server for cfg.Dom and binds it: create
// (XEN_DMOP_create_ioreq_server), map its pages as a resource (falling
// back to the gfns of XEN_DMOP_get_ioreq_server_info and a foreign map when
// resource mapping is not supported), enable, bind each vCPU's event
// channel and the buffered one, and claim the bus's ranges. k opens the
// event-channel device (one handle per worker). On failure everything done
// so far is undone.
func NewServer(p *privcmd.Handle, k kernel.Kernel, cfg Config) (_ *Server, err error) {
	s := &Server{dom: cfg.Dom, dmc: dm.New(p, cfg.Dom), bus: cfg.Bus, gate: newPauseGate()}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.teardown(s.exists))
		}
	}()
	vcpus := cfg.VCPUs
	if vcpus == 0 {
		n, err := s.dmc.NrVCPUs()
		if err != nil {
			return nil, fmt.Errorf("ioreq: %v: %w", cfg.Dom, err)
		}
		vcpus = int(n)
	}
	if vcpus <= 0 || vcpus > MaxVCPUs {
		return nil, fmt.Errorf("ioreq: %v: %d vCPUs (1..%d): %w", cfg.Dom, vcpus, MaxVCPUs, unix.EINVAL)
	}
	mode := uint8(xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC)
	if cfg.BufIOReq == BufOff {
		mode = xenabi.HVM_IOREQSRV_BUFIOREQ_OFF
	}
	id, err := s.dmc.CreateIOReqServer(mode)
	if err != nil {
		return nil, fmt.Errorf("ioreq: %v: %w", cfg.Dom, err)
	}
	s.id, s.exists = id, true
	buffered := mode != xenabi.HVM_IOREQSRV_BUFIOREQ_OFF

	// Map the pages. Resource frames: bufioreq = 0, ioreq(0) = 1
	// (xen/include/public/memory.h); with buffering both at once.
	var ioreqPage, bufPage []byte
	first, num := uint32(xenabi.XENMEM_resource_ioreq_server_frame_ioreq0), 1
	if buffered {
		first, num = xenabi.XENMEM_resource_ioreq_server_frame_bufioreq, 2
	}
	m, err := foreign.MapResource(p, cfg.Dom, xenabi.XENMEM_resource_ioreq_server, uint32(id), first, num)
	switch {
	case err == nil:
		s.pages = m
		b := m.Bytes()
		ioreqPage = b[(num-1)*xenabi.XEN_PAGE_SIZE:]
		if buffered {
			bufPage = b[:xenabi.XEN_PAGE_SIZE]
		}
	case errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, hyp.ErrNotSupported):
		info, err := s.dmc.GetIOReqServerInfo(id, false)
		if err != nil {
			return nil, fmt.Errorf("ioreq: %v server %d: %w", cfg.Dom, id, err)
		}
		gfns := []uint64{info.IOReqGFN}
		if buffered {
			gfns = append(gfns, info.BufIOReqGFN)
		}
		m, err := foreign.Map(p, cfg.Dom, true, gfns)
		if err != nil {
			return nil, fmt.Errorf("ioreq: %v server %d: mapping ioreq gfns: %w", cfg.Dom, id, err)
		}
		s.pages = m
		for i := range gfns {
			if err := m.PageErr(i); err != nil {
				return nil, fmt.Errorf("ioreq: %v server %d: mapping ioreq gfn %#x: %w", cfg.Dom, id, gfns[i], err)
			}
		}
		b := m.Bytes()
		ioreqPage = b[:xenabi.XEN_PAGE_SIZE]
		if buffered {
			bufPage = b[xenabi.XEN_PAGE_SIZE:]
		}
	default:
		return nil, fmt.Errorf("ioreq: %v server %d: mapping pages: %w", cfg.Dom, id, err)
	}
	if s.sp, err = NewSharedPage(ioreqPage, vcpus); err != nil {
		return nil, err
	}
	if buffered {
		if s.ring, err = NewRing(bufPage); err != nil {
			return nil, err
		}
	}
	info, err := s.dmc.GetIOReqServerInfo(id, true)
	if err != nil {
		return nil, fmt.Errorf("ioreq: %v server %d: %w", cfg.Dom, id, err)
	}

	// Targets.
	t := cfg.Targets
	if cfg.Bus != nil {
		if t.PIO == nil {
			t.PIO = cfg.Bus.PIO
		}
		if t.MMIO == nil {
			t.MMIO = cfg.Bus.MMIO
		}
		if t.PCI == nil {
			t.PCI = cfg.Bus.PCI
		}
	}
	s.disp = NewDispatcher(t)

	// Enable: Xen writes each vCPU's vp_eport into its slot now
	// (hvm_update_ioreq_evtchn in xen/common/ioreq.c).
	if err := s.dmc.SetIOReqServerState(id, true); err != nil {
		return nil, fmt.Errorf("ioreq: %v server %d: %w", cfg.Dom, id, err)
	}

	// One event-channel handle per worker; vCPU i to worker i mod n.
	nw := cfg.Workers
	if nw <= 0 {
		nw = DefaultWorkers(vcpus)
	}
	nw = min(nw, vcpus)
	for range nw {
		h, err := evtchn.Open(k)
		if err != nil {
			return nil, fmt.Errorf("ioreq: %v server %d: %w", cfg.Dom, id, err)
		}
		s.handles = append(s.handles, h)
		w := newWorker(s.disp, newEvAdapter(h), s.ring, cfg.Worker)
		w.gate = s.gate
		s.workers = append(s.workers, w)
	}
	for v := range vcpus {
		slot := s.sp.Slot(v)
		h := s.handles[v%nw]
		port, err := h.BindInterdomain(cfg.Dom, evtchn.Port(slot.VPEport()))
		if err != nil {
			return nil, fmt.Errorf("ioreq: %v server %d: binding vCPU %d's event channel: %w", cfg.Dom, id, v, err)
		}
		s.bound = append(s.bound, boundPort{h, port})
		s.workers[v%nw].addSlot(slot, uint32(port))
	}
	if buffered {
		port, err := s.handles[0].BindInterdomain(cfg.Dom, evtchn.Port(info.BufIOReqPort))
		if err != nil {
			return nil, fmt.Errorf("ioreq: %v server %d: binding the buffered event channel: %w", cfg.Dom, id, err)
		}
		s.bound = append(s.bound, boundPort{s.handles[0], port})
	}

	if cfg.Bus != nil {
		if err := s.attachBus(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// attachBus claims the bus's current ranges and listens for later ones.
// Attach replays and subscribes atomically, so a range registered
// concurrently is neither missed nor claimed twice (Xen would answer the
// second claim with EEXIST). On failure the caller destroys the server,
// which releases whatever was claimed.
func (s *Server) attachBus() error {
	if err := s.bus.PIO.Attach(s); err != nil {
		return err
	}
	if err := s.bus.MMIO.Attach(s); err != nil {
		s.detachBus()
		return err
	}
	if err := s.bus.PCI.Attach(s); err != nil {
		s.detachBus()
		return err
	}
	return nil
}

func (s *Server) detachBus() {
	if s.bus == nil {
		return
	}
	s.bus.PIO.SetListener(nil)
	s.bus.MMIO.SetListener(nil)
	s.bus.PCI.SetListener(nil)
}

// SetEnabled enables or disables the server in Xen
// (XEN_DMOP_set_ioreq_server_state). NewServer enables it; a disabled
// server receives no requests (Xen routes its ranges to other servers or
// its null handler), as QEMU does outside the RUNNING runstate. Its event
// channels, pages and claims stay in place.
func (s *Server) SetEnabled(on bool) error {
	if err := s.dmc.SetIOReqServerState(s.id, on); err != nil {
		return fmt.Errorf("ioreq: %v server %d: %w", s.dom, s.id, err)
	}
	return nil
}

// Restrict limits the server's event-channel handles to its domain
// (IOCTL_EVTCHN_RESTRICT_DOMID), as xentoolcore_restrict_all does for a
// deprivileged device model. Together with privcmd.Handle.Restrict on the
// handle the server was created with, nothing the process holds can reach
// another domain afterwards. It cannot be undone.
func (s *Server) Restrict() error {
	for _, h := range s.handles {
		if err := h.RestrictDomain(s.dom); err != nil {
			return fmt.Errorf("ioreq: %v server %d: %w", s.dom, s.id, err)
		}
	}
	return nil
}

// Pause stops the workers between requests: once it returns no worker
// takes a request (synchronous or buffered) until Resume. A request a
// worker was handling completes first. Requests arriving meanwhile wait
// in their slots (the vCPU stays blocked) and are served on Resume.
// Pausing a server that does not serve only makes its workers park as
// soon as they start. Pause and Resume do not nest.
func (s *Server) Pause() {
	s.gate.paused.Store(true)
	for _, w := range s.workers {
		if wt := w.wt.Load(); wt != nil {
			wt.nudge()
		}
	}
	s.gate.waitParked()
}

// Resume lets the workers take requests again.
func (s *Server) Resume() {
	s.gate.paused.Store(false)
	s.gate.broadcast()
}

// ID returns the server's id in Xen.
func (s *Server) ID() dm.ServerID { return s.id }

// Dispatcher returns the server's dispatcher (for its TimeOffset).
func (s *Server) Dispatcher() *Dispatcher { return s.disp }

// Stats adds the counters of every worker into dst without allocating.
func (s *Server) Stats(dst *Counters) {
	*dst = Counters{}
	for _, w := range s.workers {
		w.st.AddTo(dst)
	}
}

func (s *Server) kindOf(sp *devices.Space) (dm.RangeKind, bool) {
	switch {
	case s.bus == nil:
		return 0, false
	case sp == s.bus.PIO:
		return dm.PortRange, true
	case sp == s.bus.MMIO:
		return dm.MemoryRange, true
	}
	return 0, false
}

// RangeAdded implements devices.Listener: it claims [base, base+size) in
// Xen before the bus publishes the range. (A BAR move therefore claims the
// new range before the bus routes it, and RangeRemoved releases the old one
// after the bus stopped routing it.)
func (s *Server) RangeAdded(sp *devices.Space, base, size uint64) error {
	kind, ok := s.kindOf(sp)
	if !ok {
		return fmt.Errorf("ioreq: %v server %d: range in unknown space %v", s.dom, s.id, sp)
	}
	if err := s.dmc.MapIORange(s.id, kind, base, base+size-1); err != nil {
		return fmt.Errorf("ioreq: %v server %d: claiming %v [%#x, %#x]: %w", s.dom, s.id, kind, base, base+size-1, err)
	}
	return nil
}

// RangeRemoved implements devices.Listener: it releases the range in Xen.
// A failure is remembered and reported by Close.
func (s *Server) RangeRemoved(sp *devices.Space, base, size uint64) {
	kind, ok := s.kindOf(sp)
	if !ok {
		return
	}
	if err := s.dmc.UnmapIORange(s.id, kind, base, base+size-1); err != nil {
		s.noteUnmapErr(fmt.Errorf("ioreq: %v server %d: releasing %v [%#x, %#x]: %w", s.dom, s.id, kind, base, base+size-1, err))
	}
}

// PCIAdded implements devices.PCIListener: it claims the function's
// configuration space in Xen.
func (s *Server) PCIAdded(f devices.SBDF) error {
	if err := s.dmc.MapPCIDev(s.id, f.Seg(), f.Bus(), f.Dev(), f.Fn()); err != nil {
		return fmt.Errorf("ioreq: %v server %d: claiming PCI %v: %w", s.dom, s.id, f, err)
	}
	return nil
}

// PCIRemoved implements devices.PCIListener.
func (s *Server) PCIRemoved(f devices.SBDF) {
	if err := s.dmc.UnmapPCIDev(s.id, f.Seg(), f.Bus(), f.Dev(), f.Fn()); err != nil {
		s.noteUnmapErr(fmt.Errorf("ioreq: %v server %d: releasing PCI %v: %w", s.dom, s.id, f, err))
	}
}

func (s *Server) noteUnmapErr(err error) {
	if errors.Is(err, unix.ESRCH) {
		return // the domain is gone, and its claims with it
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unmapErr == nil {
		s.unmapErr = err
	}
}

// ErrServing is returned by Serve when the server is already serving or
// closed.
var ErrServing = errors.New("ioreq: server already serving or closed")

// Serve runs the workers until ctx is cancelled (it then returns nil) or a
// worker fails (event-channel error; it returns that error after stopping
// the others). It may be called once.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.closed || !s.serving.CompareAndSwap(false, true) {
		s.mu.Unlock()
		return ErrServing
	}
	ctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	done := make(chan struct{})
	s.done = done
	s.mu.Unlock()
	defer close(done)
	defer cancel()

	errs := make(chan error, len(s.workers))
	for _, w := range s.workers {
		go func() { errs <- w.run(ctx) }()
	}
	var first error
	for range s.workers {
		if err := <-errs; err != nil && first == nil {
			first = fmt.Errorf("ioreq: %v server %d: %w", s.dom, s.id, err)
			cancel()
		}
	}
	return first
}

// Close stops Serve (if running) and releases everything in the
// hypervisor: it stops mirroring the bus, disables the server, unbinds its
// event channels, destroys it and unmaps its pages. A domain that no
// longer exists (ESRCH) took its servers with it and is not an error.
// Close is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return s.teardown(true)
}

// serverGone reports whether a DM op on the server failed because Xen
// destroyed it with its domain (ESRCH: domain gone; ENOENT: dying).
func serverGone(err error) bool { return errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) }

// teardown undoes NewServer; destroy says a server exists in Xen.
func (s *Server) teardown(destroy bool) error {
	s.detachBus()
	var errs []error
	if destroy {
		// ESRCH: the domain is gone, and Xen destroyed its servers with it
		// (ioreq_server_destroy_all): nothing is left to disable. ENOENT:
		// the domain is dying and that already happened (domain_kill
		// relinquishes its resources while this process's mappings keep
		// the domain itself alive).
		if err := s.dmc.SetIOReqServerState(s.id, false); err != nil && !serverGone(err) {
			errs = append(errs, fmt.Errorf("ioreq: %v server %d: disable: %w", s.dom, s.id, err))
		}
	}
	for _, b := range s.bound {
		if err := b.h.Unbind(b.port); err != nil {
			errs = append(errs, fmt.Errorf("ioreq: %v server %d: %w", s.dom, s.id, err))
		}
	}
	s.bound = nil
	for _, h := range s.handles {
		if err := h.Close(); err != nil {
			errs = append(errs, fmt.Errorf("ioreq: %v server %d: %w", s.dom, s.id, err))
		}
	}
	s.handles = nil
	if destroy {
		if err := s.dmc.DestroyIOReqServer(s.id); err != nil && !serverGone(err) {
			errs = append(errs, fmt.Errorf("ioreq: %v server %d: destroy: %w", s.dom, s.id, err))
		}
	}
	if s.pages != nil {
		if err := s.pages.Close(); err != nil {
			errs = append(errs, fmt.Errorf("ioreq: %v server %d: unmapping pages: %w", s.dom, s.id, err))
		}
		s.pages = nil
	}
	s.mu.Lock()
	if s.unmapErr != nil {
		errs = append(errs, s.unmapErr)
		s.unmapErr = nil
	}
	s.mu.Unlock()
	return errors.Join(errs...)
}

// evAdapter adapts *evtchn.Handle to eventChannel without allocating.
type evAdapter struct {
	h   *evtchn.Handle
	buf []evtchn.Port
}

func newEvAdapter(h *evtchn.Handle) *evAdapter {
	return &evAdapter{h: h, buf: make([]evtchn.Port, maxPending)}
}

func (a *evAdapter) Pending(buf []uint32) (int, error) {
	n, err := a.h.Pending(a.buf[:min(len(buf), len(a.buf))])
	for i := range n {
		buf[i] = uint32(a.buf[i])
	}
	return n, err
}

func (a *evAdapter) Unmask(p uint32) error { return a.h.Unmask(evtchn.Port(p)) }
func (a *evAdapter) Notify(p uint32) error { return a.h.Notify(evtchn.Port(p)) }
func (a *evAdapter) Fd() int               { return a.h.Fd() }
