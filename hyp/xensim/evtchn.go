package xensim

import (
	"encoding/binary"
	"fmt"
	"sync"

	"godm/hyp"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

type portState uint8

const (
	portUnbound portState = iota + 1
	portInterdomain
)

// evPort is one event channel of a domain (struct evtchn).
type evPort struct {
	state      portState
	remoteDom  hyp.DomID // unbound: who may bind; interdomain: the peer
	remotePort uint32

	// Consumer: a process's evtchn file, or Xen itself (an ioreq port:
	// vcpu is the vCPU it wakes; nil for the buffered-io port).
	file  *evtchnFile
	xen   bool
	vcpu  *VCPU
	srv   *server
	owner hyp.DomID // domain holding the port

	// Delivery state of a file-bound port (guarded by file.mu): Xen's
	// pending bit and Linux's per-port enabled flag.
	pending bool
	enabled bool

	// ioev are privcmd ioeventfd handlers sharing the port's interrupt
	// (guarded by Sim.mu).
	ioev []ioevHook
}

// allocPortLocked allocates the lowest free port of d (get_free_port).
func (s *Sim) allocPortLocked(d *Domain) (uint32, *evPort, error) {
	for p := 1; p < maxPorts; p++ {
		if p >= len(d.ports) {
			d.ports = append(d.ports, make([]*evPort, len(d.ports))...)
		}
		if d.ports[p] == nil {
			e := &evPort{owner: d.id}
			d.ports[p] = e
			return uint32(p), e, nil
		}
	}
	return 0, nil, unix.ENOSPC
}

func (d *Domain) port(p uint32) *evPort {
	if int(p) >= len(d.ports) {
		return nil
	}
	return d.ports[p]
}

// allocXenPort is alloc_unbound_xen_event_channel: a port of d, consumed
// by Xen, that domain remote may bind to.
func (s *Sim) allocXenPort(d *Domain, remote hyp.DomID, v *VCPU, srv *server) (uint32, error) {
	p, e, err := s.allocPortLocked(d)
	if err != nil {
		return 0, err
	}
	e.state, e.remoteDom, e.xen, e.vcpu, e.srv = portUnbound, remote, true, v, srv
	return p, nil
}

// closePortLocked is evtchn_close: the peer of an interdomain channel
// goes back to unbound, waiting for this domain.
func (s *Sim) closePortLocked(d *Domain, p uint32) {
	e := d.port(p)
	if e == nil {
		return
	}
	if e.state == portInterdomain {
		if rd := s.domains[e.remoteDom]; rd != nil {
			if re := rd.port(e.remotePort); re != nil && re.state == portInterdomain &&
				re.remoteDom == d.id && re.remotePort == p {
				re.state, re.remoteDom, re.remotePort = portUnbound, d.id, 0
			}
		}
	}
	if f := e.file; f != nil {
		f.mu.Lock()
		delete(f.ports, p)
		f.mu.Unlock()
	}
	d.ports[p] = nil
}

// bindInterdomainLocked is evtchn_bind_interdomain from domain ld.
func (s *Sim) bindInterdomainLocked(ld *Domain, rdom hyp.DomID, rport uint32) (uint32, *evPort, error) {
	if rdom == xenabi.DOMID_SELF {
		rdom = ld.id
	}
	rd := s.domains[rdom]
	if rd == nil {
		return 0, nil, unix.ESRCH
	}
	re := rd.port(rport)
	if re == nil {
		return 0, nil, unix.EINVAL
	}
	if re.state != portUnbound || re.remoteDom != ld.id {
		return 0, nil, unix.EINVAL
	}
	lp, le, err := s.allocPortLocked(ld)
	if err != nil {
		return 0, nil, err
	}
	le.state, le.remoteDom, le.remotePort = portInterdomain, rdom, rport
	re.state, re.remoteDom, re.remotePort = portInterdomain, ld.id, lp
	return lp, le, nil
}

// setPending marks a port pending and delivers it to its consumer
// (evtchn_port_set_pending). Called with s.mu held (shared is enough).
func (s *Sim) setPending(d *Domain, p uint32, e *evPort) {
	switch {
	case e.file != nil:
		e.file.deliver(p, e)
	case e.xen:
		if e.vcpu != nil {
			e.vcpu.dmNotified(e.srv)
		}
	default:
		s.record(Event{Kind: EventGuestNotify, Dom: d.id, Data: uint64(p)})
	}
}

// send is evtchn_send from port p of domain d. Called with s.mu held
// (shared is enough).
func (s *Sim) send(d *Domain, p uint32) error {
	e := d.port(p)
	if e == nil {
		return unix.EINVAL
	}
	switch e.state {
	case portInterdomain:
		rd := s.domains[e.remoteDom]
		if rd == nil {
			return nil
		}
		if re := rd.port(e.remotePort); re != nil {
			s.setPending(rd, e.remotePort, re)
		}
	case portUnbound:
		// silently dropped
	}
	return nil
}

// xenNotify is notify_via_xen_event_channel: Xen signals the peer of its
// port p in d. Called with s.mu held (shared is enough).
func (s *Sim) xenNotify(d *Domain, p uint32) {
	e := d.port(p)
	if e == nil || e.state != portInterdomain {
		return
	}
	if rd := s.domains[e.remoteDom]; rd != nil {
		if re := rd.port(e.remotePort); re != nil {
			s.setPending(rd, e.remotePort, re)
		}
	}
}

// dmNotified runs when the device model notifies this vCPU's ioreq port.
func (v *VCPU) dmNotified(srv *server) {
	if g := v.gen.Load(); srv != nil && int(v.id) < len(srv.waiting) && !srv.waiting[v.id].Load() && srv.pages != nil {
		slot := srv.slot(v.id)
		// Only a snapshot no post or completion raced with counts.
		if st := (loadStateWord(slot) >> 16) & xenabi.IoreqStateMask; st != xenabi.STATE_IOREQ_NONE && v.gen.Load() == g {
			v.d.s.violation(v.d.id, v.id, "device model set state %d in the slot of idle vCPU %d (server %d)", st, v.id, srv.id)
		}
	}
	v.kick()
}

// evtchnRing is how many pending ports a file queues before overflow
// (Linux grows its ring up to the number of event channels).
const evtchnRing = maxPorts

// evtchnFile is an open /dev/xen/evtchn (drivers/xen/evtchn.c).
type evtchnFile struct {
	s        *Sim
	caller   hyp.DomID
	nonblock bool
	efd      int // eventfd: readable exactly while the ring is non-empty

	mu         sync.Mutex
	ports      map[uint32]*evPort
	ring       [evtchnRing]uint32
	cons, prod uint32
	overflow   bool
	restrict   int32 // -1: unrestricted
	closed     bool
	wake       chan struct{}
	efdBuf     [8]byte
}

func (s *Sim) newEvtchnFile(caller hyp.DomID, flags int) (*evtchnFile, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("xensim: evtchn eventfd: %w", err)
	}
	return &evtchnFile{s: s, caller: caller, nonblock: flags&unix.O_NONBLOCK != 0, efd: efd,
		ports: make(map[uint32]*evPort), restrict: -1, wake: make(chan struct{}, 1)}, nil
}

// deliver is the Linux upcall for a pending port: queue it and mask it
// until user space writes it back; while masked, Xen's pending bit
// stays set.
func (f *evtchnFile) deliver(p uint32, e *evPort) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.ports[p] != e {
		return
	}
	if !e.enabled {
		if !e.pending { // a masked port stays pending: no write, no cache-line transfer
			e.pending = true
		}
		return
	}
	// Shared handlers (privcmd ioeventfd) run before the port is queued
	// for user space, so the device model never sees a request the
	// kernel is completing.
	if len(e.ioev) > 0 {
		f.s.runIOEventFDs(p, e)
	}
	f.queueLocked(p, e)
}

func (f *evtchnFile) queueLocked(p uint32, e *evPort) {
	e.enabled = false
	e.pending = false
	if f.prod-f.cons >= evtchnRing {
		f.overflow = true
		f.signalLocked()
		return
	}
	f.ring[f.prod%evtchnRing] = p
	f.prod++
	if f.prod-f.cons == 1 {
		f.signalLocked()
	}
}

// signalLocked makes the eventfd readable and wakes blocking readers.
func (f *evtchnFile) signalLocked() {
	binary.LittleEndian.PutUint64(f.efdBuf[:], 1)
	unix.Write(f.efd, f.efdBuf[:])
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// drainLocked makes the eventfd unreadable.
func (f *evtchnFile) drainLocked() {
	unix.Read(f.efd, f.efdBuf[:])
}

// Read returns pending ports as native-endian uint32s.
func (f *evtchnFile) Read(b []byte) (int, error) {
	n := len(b) &^ 3
	if n == 0 {
		return 0, nil
	}
	if n > pageSize {
		n = pageSize
	}
	for {
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			return 0, unix.EBADF
		}
		if f.overflow {
			f.mu.Unlock()
			return 0, unix.EFBIG
		}
		if f.prod != f.cons {
			break
		}
		f.mu.Unlock()
		if f.nonblock {
			return 0, unix.EAGAIN
		}
		<-f.wake
	}
	defer f.mu.Unlock()
	got := 0
	for f.cons != f.prod && got+4 <= n {
		binary.NativeEndian.PutUint32(b[got:], f.ring[f.cons%evtchnRing])
		f.cons++
		got += 4
	}
	if f.cons == f.prod {
		f.drainLocked()
	}
	return got, nil
}

// Write unmasks the ports written (native-endian uint32s); a port that
// became pending while masked is delivered again at once.
func (f *evtchnFile) Write(b []byte) (int, error) {
	n := len(b) &^ 3
	if n == 0 {
		return 0, nil
	}
	if n > pageSize {
		n = pageSize
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return 0, unix.EBADF
	}
	var redeliver []uint32
	for i := 0; i < n; i += 4 {
		p := binary.NativeEndian.Uint32(b[i:])
		e := f.ports[p]
		if e == nil || e.enabled {
			continue
		}
		e.enabled = true
		if e.pending {
			if len(e.ioev) == 0 {
				f.queueLocked(p, e)
				continue
			}
			e.pending = false
			redeliver = append(redeliver, p)
		}
	}
	f.mu.Unlock()
	// Ports with shared handlers are redelivered through the full upcall
	// path, which needs the hypervisor lock (taken before f.mu).
	for _, p := range redeliver {
		s := f.s
		s.mu.RLock()
		if d := s.domains[f.caller]; d != nil {
			if e := d.port(p); e != nil && e.file == f {
				f.deliver(p, e)
			}
		}
		s.mu.RUnlock()
	}
	return n, nil
}

func (f *evtchnFile) Mmap(int64, int, int) ([]byte, error) { return nil, unix.ENODEV }
func (f *evtchnFile) Munmap([]byte) error                  { return unix.EINVAL }
func (f *evtchnFile) Fd() int                              { return f.efd }

// Close unbinds every port of the file and closes the eventfd.
func (f *evtchnFile) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	ports := make([]uint32, 0, len(f.ports))
	for p := range f.ports {
		ports = append(ports, p)
	}
	close(f.wake)
	f.mu.Unlock()
	s := f.s
	s.mu.Lock()
	if d := s.domains[f.caller]; d != nil {
		for _, p := range ports {
			if e := d.port(p); e != nil && e.file == f {
				s.closePortLocked(d, p)
			}
		}
	}
	s.mu.Unlock()
	s.forgetFile(f)
	return unix.Close(f.efd)
}

// bindLocked attaches a new port to the file, enabled (evtchn_bind_to_user).
func (f *evtchnFile) bindLocked(p uint32, e *evPort) {
	f.mu.Lock()
	e.file = f
	e.enabled = true
	f.ports[p] = e
	f.mu.Unlock()
}

func (f *evtchnFile) ioctl(req uint, arg []byte) (uintptr, error) {
	s := f.s
	switch req {
	case xenabi.IOCTL_EVTCHN_NOTIFY:
		if len(arg) < 4 {
			return 0, unix.EFAULT
		}
		p := binary.NativeEndian.Uint32(arg)
		// The port is the file's while the caller's domain has it bound
		// to the file (bindLocked and closePortLocked change both under
		// the exclusive lock), so the shared lock is enough to find it:
		// the notify, which wakes vCPUs, does not take the file's lock
		// the vCPUs' own notifications take.
		s.mu.RLock()
		defer s.mu.RUnlock()
		d := s.domains[f.caller]
		if d == nil {
			return 0, unix.ENOTCONN
		}
		if e := d.port(p); e == nil || e.file != f {
			return 0, unix.ENOTCONN // find_evtchn found nothing
		}
		return 0, s.send(d, p)
	case xenabi.IOCTL_EVTCHN_BIND_INTERDOMAIN:
		if len(arg) < 8 {
			return 0, unix.EFAULT
		}
		rdom := binary.NativeEndian.Uint32(arg)
		rport := binary.NativeEndian.Uint32(arg[4:])
		f.mu.Lock()
		r := f.restrict
		f.mu.Unlock()
		if r >= 0 && uint32(r) != rdom {
			return 0, unix.EACCES
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		d := s.domains[f.caller]
		if d == nil {
			return 0, unix.ESRCH
		}
		if rdom > 0xffff {
			return 0, unix.ESRCH
		}
		lp, le, err := s.bindInterdomainLocked(d, hyp.DomID(rdom), rport)
		if err != nil {
			return 0, err
		}
		f.bindLocked(lp, le)
		// Xen conservatively marks the new local port pending
		// (xen/common/event_channel.c:evtchn_bind_interdomain).
		s.setPending(d, lp, le)
		return uintptr(lp), nil
	case xenabi.IOCTL_EVTCHN_BIND_UNBOUND_PORT:
		if len(arg) < 4 {
			return 0, unix.EFAULT
		}
		rdom := binary.NativeEndian.Uint32(arg)
		f.mu.Lock()
		r := f.restrict
		f.mu.Unlock()
		if r >= 0 {
			return 0, unix.EACCES
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		d := s.domains[f.caller]
		if d == nil {
			return 0, unix.ESRCH
		}
		if rdom == xenabi.DOMID_SELF {
			rdom = uint32(d.id)
		}
		if rdom > 0xffff || s.domains[hyp.DomID(rdom)] == nil {
			return 0, unix.ESRCH
		}
		p, e, err := s.allocPortLocked(d)
		if err != nil {
			return 0, err
		}
		e.state, e.remoteDom = portUnbound, hyp.DomID(rdom)
		f.bindLocked(p, e)
		return uintptr(p), nil
	case xenabi.IOCTL_EVTCHN_UNBIND:
		if len(arg) < 4 {
			return 0, unix.EFAULT
		}
		p := binary.NativeEndian.Uint32(arg)
		if p >= maxPorts {
			return 0, unix.EINVAL
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		d := s.domains[f.caller]
		f.mu.Lock()
		e := f.ports[p]
		f.mu.Unlock()
		if e == nil || d == nil || d.port(p) != e {
			return 0, unix.ENOTCONN
		}
		s.closePortLocked(d, p)
		return 0, nil
	case xenabi.IOCTL_EVTCHN_RESET:
		f.mu.Lock()
		f.cons, f.prod, f.overflow = 0, 0, false
		f.drainLocked()
		f.mu.Unlock()
		return 0, nil
	case xenabi.IOCTL_EVTCHN_RESTRICT_DOMID:
		if len(arg) < 2 {
			return 0, unix.EFAULT
		}
		dom := binary.NativeEndian.Uint16(arg)
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.restrict >= 0 {
			return 0, unix.EACCES
		}
		if dom == 0 || dom >= xenabi.DOMID_FIRST_RESERVED {
			return 0, unix.EINVAL
		}
		f.restrict = int32(dom)
		return 0, nil
	case xenabi.IOCTL_EVTCHN_BIND_VIRQ:
		return 0, unix.ENOSYS // VIRQs are not simulated
	}
	return 0, unix.ENOSYS // what Linux's evtchn answers unknown requests
}

// AllocUnboundPort allocates a port of the guest that domain remote may
// bind (EVTCHNOP_alloc_unbound from inside the guest). Notifications
// arriving on it are recorded as EventGuestNotify.
func (d *Domain) AllocUnboundPort(remote hyp.DomID) (uint32, error) {
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if d.dead {
		return 0, fmt.Errorf("xensim: %v: alloc unbound: %w", d.id, hyp.ErrClosed)
	}
	if s.domains[remote] == nil {
		return 0, fmt.Errorf("xensim: %v: alloc unbound for %v: %w", d.id, remote, unix.ESRCH)
	}
	p, e, err := s.allocPortLocked(d)
	if err != nil {
		return 0, fmt.Errorf("xensim: %v: alloc unbound: %w", d.id, err)
	}
	e.state, e.remoteDom = portUnbound, remote
	return p, nil
}

// BindInterdomain binds a new guest port to port remotePort of domain
// remote, which must be unbound and offered to this guest
// (EVTCHNOP_bind_interdomain from inside the guest).
func (d *Domain) BindInterdomain(remote hyp.DomID, remotePort uint32) (uint32, error) {
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if d.dead {
		return 0, fmt.Errorf("xensim: %v: bind interdomain: %w", d.id, hyp.ErrClosed)
	}
	p, e, err := s.bindInterdomainLocked(d, remote, remotePort)
	if err != nil {
		return 0, fmt.Errorf("xensim: %v: bind %v port %d: %w", d.id, remote, remotePort, err)
	}
	s.setPending(d, p, e)
	return p, nil
}

// Notify sends an event from guest port p (EVTCHNOP_send).
func (d *Domain) Notify(p uint32) error {
	s := d.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if d.dead {
		return fmt.Errorf("xensim: %v: notify: %w", d.id, hyp.ErrClosed)
	}
	if e := d.port(p); e == nil || e.xen {
		return fmt.Errorf("xensim: %v: notify port %d: %w", d.id, p, unix.EINVAL)
	}
	if err := s.send(d, p); err != nil {
		return fmt.Errorf("xensim: %v: notify port %d: %w", d.id, p, err)
	}
	return nil
}
