package bench

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
	"godm/ioreq"

	"golang.org/x/sys/unix"
)

// loop is an ioreq server written the way QEMU's Xen support is
// (hw/xen/xen-hvm-common.c: cpu_handle_ioreq, cpu_get_ioreq): one thread
// blocks on the event-channel fd, reads ONE pending port per wake-up, unmasks
// it, takes the global lock, drains the buffered ring, handles the vCPU's
// request and notifies, then goes back to sleep. It uses godm's own pieces
// for everything but the design — the same ioreq.SharedPage slots, the same
// ioreq.Dispatcher over the same devices.Bus, the same event-channel handle —
// so that comparing it with ioreq.Server isolates the design.
//
// Two variants measure the simulator instead: nullBlock is the same loop
// answering at once without dispatching; nullPoll spins on the slots (never
// blocking) and answers at once. What they cost is the simulated hypervisor
// and the event channels, not the device model.
//
// (QEMU arms a 100 ms timer when the buffered port fires instead of draining
// at once; the loop drains at once, which favours it.)
type loop struct {
	dmc     *dm.Client
	id      dm.ServerID
	exists  bool
	pages   *foreign.Mapping
	sp      *ioreq.SharedPage
	ring    *ioreq.Ring
	disp    *ioreq.Dispatcher
	h       *evtchn.Handle
	mode    design
	bufPort evtchn.Port
	// slotOf maps a local port to its vCPU slot index + 1 (0: none).
	slotOf  []int
	ports   []evtchn.Port // local port of each vCPU
	bound   []evtchn.Port
	scratch []byte
	bql     sync.Mutex // QEMU's global lock, held while handling
	st      ioreq.Stats
	handled atomic.Uint64 // synchronous requests answered
	stopMu  sync.Mutex    // guards stopFd against close
	stopFd  int
}

// wake makes a blocked serve return.
func (l *loop) wake() {
	l.stopMu.Lock()
	defer l.stopMu.Unlock()
	if l.stopFd >= 0 {
		one := [8]byte{1}
		unix.Write(l.stopFd, one[:])
	}
}

// newLoop creates, maps, enables and binds an ioreq server for dom with
// vcpus slots and claims the bus's ranges.
func newLoop(p *privcmd.Handle, k kernel.Kernel, dom hyp.DomID, vcpus int, bus *devices.Bus, t ioreq.Targets, mode design) (_ *loop, err error) {
	l := &loop{dmc: dm.New(p, dom), mode: mode, scratch: make([]byte, 4096), stopFd: -1}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.close())
		}
	}()
	if l.id, err = l.dmc.CreateIOReqServer(xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC); err != nil {
		return nil, fmt.Errorf("bench: loop: %w", err)
	}
	l.exists = true
	l.pages, err = foreign.MapResource(p, dom, xenabi.XENMEM_resource_ioreq_server, uint32(l.id),
		xenabi.XENMEM_resource_ioreq_server_frame_bufioreq, 2)
	if err != nil {
		return nil, fmt.Errorf("bench: loop: mapping pages: %w", err)
	}
	b := l.pages.Bytes()
	if l.ring, err = ioreq.NewRing(b[:xenabi.XEN_PAGE_SIZE]); err != nil {
		return nil, err
	}
	if l.sp, err = ioreq.NewSharedPage(b[xenabi.XEN_PAGE_SIZE:], vcpus); err != nil {
		return nil, err
	}
	info, err := l.dmc.GetIOReqServerInfo(l.id, true)
	if err != nil {
		return nil, fmt.Errorf("bench: loop: %w", err)
	}
	if t.PIO == nil {
		t.PIO, t.MMIO, t.PCI = bus.PIO, bus.MMIO, bus.PCI
	}
	l.disp = ioreq.NewDispatcher(t)
	if err := l.dmc.SetIOReqServerState(l.id, true); err != nil {
		return nil, fmt.Errorf("bench: loop: %w", err)
	}
	if l.h, err = evtchn.Open(k); err != nil {
		return nil, fmt.Errorf("bench: loop: %w", err)
	}
	for v := range vcpus {
		port, err := l.h.BindInterdomain(dom, evtchn.Port(l.sp.Slot(v).VPEport()))
		if err != nil {
			return nil, fmt.Errorf("bench: loop: binding vCPU %d: %w", v, err)
		}
		l.bound = append(l.bound, port)
		l.ports = append(l.ports, port)
		l.setSlot(port, v+1)
	}
	if l.bufPort, err = l.h.BindInterdomain(dom, evtchn.Port(info.BufIOReqPort)); err != nil {
		return nil, fmt.Errorf("bench: loop: binding the buffered port: %w", err)
	}
	l.bound = append(l.bound, l.bufPort)
	for _, r := range bus.PIO.Ranges() {
		if err := l.dmc.MapIORange(l.id, dm.PortRange, r.Base, r.Base+r.Size-1); err != nil {
			return nil, fmt.Errorf("bench: loop: %w", err)
		}
	}
	for _, r := range bus.MMIO.Ranges() {
		if err := l.dmc.MapIORange(l.id, dm.MemoryRange, r.Base, r.Base+r.Size-1); err != nil {
			return nil, fmt.Errorf("bench: loop: %w", err)
		}
	}
	for _, f := range bus.PCI.Functions() {
		if err := l.dmc.MapPCIDev(l.id, f.Seg(), f.Bus(), f.Dev(), f.Fn()); err != nil {
			return nil, fmt.Errorf("bench: loop: %w", err)
		}
	}
	if l.stopFd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("bench: loop: eventfd: %w", err)
	}
	return l, nil
}

func (l *loop) setSlot(p evtchn.Port, v int) {
	for int(p) >= len(l.slotOf) {
		l.slotOf = append(l.slotOf, 0)
	}
	l.slotOf[p] = v
}

// serve runs the loop on a locked OS thread until ctx ends.
func (l *loop) serve(ctx context.Context) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	stop := context.AfterFunc(ctx, l.wake)
	defer stop()
	if l.mode == nullPoll {
		return l.spin(ctx)
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("bench: loop: epoll_create1: %w", err)
	}
	defer unix.Close(epfd)
	for _, fd := range []int{l.h.Fd(), l.stopFd} {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return fmt.Errorf("bench: loop: epoll_ctl: %w", err)
		}
	}
	var events [2]unix.EpollEvent
	var pending [1]evtchn.Port
	for {
		n, err := unix.EpollWait(epfd, events[:], -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("bench: loop: epoll_wait: %w", err)
		}
		for _, e := range events[:n] {
			if int(e.Fd) == l.stopFd {
				return nil
			}
		}
		// One port per wake-up, as xenevtchn_pending reads one.
		got, err := l.h.Pending(pending[:])
		if err != nil {
			return fmt.Errorf("bench: loop: reading ports: %w", err)
		}
		if got == 0 {
			continue
		}
		p := pending[0]
		if err := l.h.Unmask(p); err != nil {
			return fmt.Errorf("bench: loop: unmask: %w", err)
		}
		l.bql.Lock()
		// A vCPU's port: its request (buffered writes first); the
		// buffered port: the ring.
		if v := l.slotOf[min(int(p), len(l.slotOf)-1)]; v == 0 || !l.handle(v-1) {
			l.ring.Drain(l.disp, l.scratch, &l.st)
		}
		l.bql.Unlock()
	}
}

// handle answers vCPU v's request, if it has one. As in QEMU's
// cpu_handle_ioreq, the request is claimed before the buffered ring is
// drained: every buffered write Xen queued before the request is then in
// the ring, and is handled first.
func (l *loop) handle(v int) bool {
	s := l.sp.Slot(v)
	var r ioreq.Request
	word, ok := s.Claim(&r)
	if !ok {
		return false
	}
	l.ring.Drain(l.disp, l.scratch, &l.st) // at most a ring's worth: everything queued before r
	data, writeData := ^uint64(0), false
	if l.mode == classic {
		data, writeData = l.disp.Handle(&r, l.scratch, &l.st)
	} else if r.Read && !r.DataIsPtr {
		writeData = true
	}
	s.Respond(word, data, writeData)
	l.handled.Add(1)
	l.h.Notify(l.ports[v])
	return true
}

// spin is nullPoll: poll every slot, never block; after a short idle
// stretch, give the CPU to other threads between polls as the spinning
// vCPUs and the floor do (spinPause), and yield the P after a long one (on
// a locked thread that is a hand-off between threads, so it is rare).
func (l *loop) spin(ctx context.Context) error {
	for idle := 0; ; idle++ {
		found := false
		for v := range l.ports {
			if l.sp.Slot(v).Ready() && l.handle(v) {
				found = true
			}
		}
		if !l.ring.Empty() {
			l.ring.Drain(l.disp, l.scratch, &l.st)
			found = true
		}
		if found {
			idle = 0
			continue
		}
		spinPause(idle)
		if idle%4096 == 4095 {
			if ctx.Err() != nil {
				return nil
			}
			if idle >= 1<<16 {
				runtime.Gosched()
			}
		}
	}
}

// close disables, unbinds, destroys and unmaps. Call after serve returned.
func (l *loop) close() error {
	var errs []error
	if l.exists {
		errs = append(errs, l.dmc.SetIOReqServerState(l.id, false))
	}
	if l.h != nil {
		for _, p := range l.bound {
			errs = append(errs, l.h.Unbind(p))
		}
		errs = append(errs, l.h.Close())
		l.h = nil
	}
	if l.exists {
		errs = append(errs, l.dmc.DestroyIOReqServer(l.id))
		l.exists = false
	}
	if l.pages != nil {
		errs = append(errs, l.pages.Close())
		l.pages = nil
	}
	l.stopMu.Lock()
	if l.stopFd >= 0 {
		unix.Close(l.stopFd)
		l.stopFd = -1
	}
	l.stopMu.Unlock()
	return errors.Join(errs...)
}
