package xensim

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"godm/hyp"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// This file simulates Linux's privcmd irqfd and ioeventfd (Linux >= 6.7,
// drivers/xen/privcmd.c), offered when Config.EventFDs is set. Eventfds
// are identified by their descriptor number (Linux compares the eventfd
// context, so a dup'ed descriptor would count as the same eventfd).

// virtioMMIOQueueNotify is VIRTIO_MMIO_QUEUE_NOTIFY and queueNotifyVQMask
// QUEUE_NOTIFY_VQ_MASK of privcmd's ioeventfd.
const (
	virtioMMIOQueueNotify = 0x50
	queueNotifyVQMask     = 0xffff
)

// irqfd issues a stored DM op each time its eventfd is signalled.
type irqfd struct {
	s      *Sim
	caller hyp.DomID
	dom    uint16
	op     []byte
	key    int // the caller's descriptor
	fd     int // our duplicate of it
	stop   int // eventfd that stops the worker
	done   chan struct{}
}

// eventFDs holds the irqfds and ioeventfd registrations of a Sim.
type eventFDs struct {
	mu     sync.Mutex
	irqfds map[int]*irqfd
	// kioreqs is guarded by Sim.mu (the delivery path reads the hooks
	// under it).
	kioreqs []*kioreq
}

func validFd(fd uint32) bool {
	if fd > 1<<31-1 {
		return false
	}
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

// irqfdIoctl is privcmd_ioctl_irqfd.
func (f *privcmdFile) irqfdIoctl(dmOp uint64, size, fd, flags uint32, dom uint16) error {
	if flags&^xenabi.PRIVCMD_IRQFD_FLAG_DEASSIGN != 0 {
		return unix.EINVAL
	}
	if r, _ := f.restricted(); r >= 0 && uint16(r) != dom {
		return unix.EPERM
	}
	if !validFd(fd) {
		return unix.EBADF
	}
	e := &f.s.efds
	if flags&xenabi.PRIVCMD_IRQFD_FLAG_DEASSIGN != 0 {
		e.mu.Lock()
		q := e.irqfds[int(fd)]
		delete(e.irqfds, int(fd))
		e.mu.Unlock()
		if q != nil {
			q.shutdown()
		}
		return nil // Linux answers 0 even for an unknown eventfd
	}
	if size == 0 || size > pageSize {
		return unix.EINVAL
	}
	src := userBytes(dmOp, uint64(size))
	if src == nil {
		return unix.EFAULT
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.irqfds == nil {
		e.irqfds = make(map[int]*irqfd)
	}
	if e.irqfds[int(fd)] != nil {
		return unix.EBUSY
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(dup)
		return err
	}
	q := &irqfd{s: f.s, caller: f.caller, dom: dom, op: append([]byte(nil), src...), key: int(fd),
		fd: dup, stop: stop, done: make(chan struct{})}
	e.irqfds[int(fd)] = q
	go q.run()
	return nil
}

// run injects the DM op whenever the eventfd is signalled, including a
// signal already pending at assignment.
func (q *irqfd) run() {
	defer close(q.done)
	pfd := []unix.PollFd{{Fd: int32(q.fd), Events: unix.POLLIN}, {Fd: int32(q.stop), Events: unix.POLLIN}}
	var cnt [8]byte
	op := make([]byte, len(q.op))
	for {
		pfd[0].Revents, pfd[1].Revents = 0, 0
		if _, err := unix.Poll(pfd, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			return
		}
		if pfd[1].Revents != 0 || pfd[0].Revents&(unix.POLLERR|unix.POLLNVAL) != 0 {
			return
		}
		if pfd[0].Revents&unix.POLLIN == 0 {
			continue
		}
		if _, err := unix.Read(q.fd, cnt[:]); err != nil {
			continue
		}
		copy(op, q.op)
		q.s.dmOp(q.caller, q.dom, [][]byte{op}) // errors are only logged by Linux
	}
}

func (q *irqfd) shutdown() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(q.stop, one[:])
	<-q.done
	unix.Close(q.fd)
	unix.Close(q.stop)
}

// kioreq is privcmd's per-ioreq-page state: the page, the ports bound to
// each vCPU and the registered ioeventfds.
type kioreq struct {
	dom    uint16
	vcpus  uint32
	uioreq uint64
	page   []byte
	owner  *Domain // the device model's domain (holds the ports)
	ports  []uint32
	evs    []ioeventfd
}

type ioeventfd struct {
	addr uint64
	len  uint32
	vq   uint32
	key  int
	fd   int
}

type ioevHook struct {
	k    *kioreq
	vcpu int
}

// ioeventfdIoctl is privcmd_ioctl_ioeventfd.
func (f *privcmdFile) ioeventfdIoctl(a *xenabi.PrivcmdIoeventfd) error {
	if a.Flags&^xenabi.PRIVCMD_IOEVENTFD_FLAG_DEASSIGN != 0 {
		return unix.EINVAL
	}
	if r, _ := f.restricted(); r >= 0 && uint16(r) != a.Dom {
		return unix.EPERM
	}
	s := f.s
	if a.Flags&xenabi.PRIVCMD_IOEVENTFD_FLAG_DEASSIGN != 0 {
		if !validFd(a.EventFd) {
			return unix.EBADF
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, k := range s.efds.kioreqs {
			if k.dom != a.Dom || k.uioreq != a.Ioreq || k.vcpus != a.VCPUs {
				continue
			}
			for j, ev := range k.evs {
				if ev.key == int(a.EventFd) {
					unix.Close(ev.fd)
					k.evs = append(k.evs[:j], k.evs[j+1:]...)
					if len(k.evs) == 0 {
						k.unhook()
						unix.Munmap(k.page)
						s.efds.kioreqs = append(s.efds.kioreqs[:i], s.efds.kioreqs[i+1:]...)
					}
					return nil
				}
			}
			break
		}
		return unix.ENODEV
	}
	if a.Addr+uint64(a.AddrLen) < a.Addr {
		return unix.EINVAL
	}
	switch a.AddrLen {
	case 1, 2, 4, 8:
	default:
		return unix.EINVAL
	}
	if a.VCPUs == 0 || a.VCPUs > 4096 {
		return unix.EINVAL
	}
	if !validFd(a.EventFd) {
		return unix.EBADF
	}
	// Lock order: vmas, then the hypervisor.
	t := &s.vmas
	t.mu.Lock()
	defer t.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	var k *kioreq
	for _, c := range s.efds.kioreqs {
		if c.uioreq != a.Ioreq {
			continue
		}
		if c.dom != a.Dom || c.vcpus != a.VCPUs {
			return unix.EINVAL
		}
		for _, ev := range c.evs {
			if ev.key == int(a.EventFd) {
				return unix.EBUSY
			}
		}
		k = c
		break
	}
	if k == nil {
		// alloc_ioreq: the kernel uses the first page of the VMA holding
		// the ioreq pointer.
		v := t.find(uintptr(a.Ioreq))
		if v == nil || len(v.mapped) == 0 || !v.mapped[0] {
			return unix.EFAULT
		}
		// The kernel holds the page itself: map it again for the
		// simulated kernel, so that the device model may unmap its view.
		page, err := unix.Mmap(v.src[0].fd, v.src[0].off, pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return unix.EFAULT
		}
		ports := userBytes(a.Ports, uint64(a.VCPUs)*4)
		owner := s.domains[f.caller]
		if ports == nil || owner == nil {
			unix.Munmap(page)
			return unix.EFAULT
		}
		k = &kioreq{dom: a.Dom, vcpus: a.VCPUs, uioreq: a.Ioreq, page: page, owner: owner}
		for i := uint32(0); i < a.VCPUs; i++ {
			p := binary.NativeEndian.Uint32(ports[4*i:])
			if owner.port(p) == nil || int(i+1)*xenabi.IoreqSize > pageSize {
				unix.Munmap(page)
				return unix.EINVAL // not a bound event channel, or no slot
			}
			k.ports = append(k.ports, p)
		}
		for i, p := range k.ports {
			e := owner.port(p)
			e.ioev = append(e.ioev, ioevHook{k: k, vcpu: i})
		}
		s.efds.kioreqs = append(s.efds.kioreqs, k)
	}
	dup, err := unix.FcntlInt(uintptr(a.EventFd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	k.evs = append(k.evs, ioeventfd{addr: a.Addr, len: a.AddrLen, vq: a.VQ, key: int(a.EventFd), fd: dup})
	return nil
}

// unhook removes k's handlers from its ports. Called with s.mu held.
func (k *kioreq) unhook() {
	for _, p := range k.ports {
		e := k.owner.port(p)
		if e == nil {
			continue
		}
		hooks := e.ioev[:0]
		for _, h := range e.ioev {
			if h.k != k {
				hooks = append(hooks, h)
			}
		}
		e.ioev = hooks
	}
}

// runIOEventFDs is ioeventfd_interrupt for every handler on port p: a
// READY MMIO write to a registered QueueNotify register is completed in
// the "kernel", signalling the eventfd. Called with s.mu held (shared).
func (s *Sim) runIOEventFDs(p uint32, e *evPort) {
	for _, h := range e.ioev {
		k := h.k
		slot := k.page[h.vcpu*xenabi.IoreqSize : (h.vcpu+1)*xenabi.IoreqSize]
		word := u32at(slot, xenabi.IoreqStateWordOffs)
		w := atomic.LoadUint32(word)
		flags := uint8(w >> 16)
		if flags&xenabi.IoreqStateMask != xenabi.STATE_IOREQ_READY || uint8(w>>24) != xenabi.IOREQ_TYPE_COPY ||
			flags&xenabi.IoreqDirBit != 0 {
			continue
		}
		atomic.StoreUint32(word, w&^(xenabi.IoreqStateMask<<16)|xenabi.STATE_IOREQ_INPROCESS<<16)
		addr := atomic.LoadUint64(u64at(slot, 0))
		size := atomic.LoadUint32(u32at(slot, 20))
		data := atomic.LoadUint64(u64at(slot, 8))
		state := uint32(xenabi.STATE_IOREQ_READY)
		for _, ev := range k.evs {
			if addr == ev.addr+virtioMMIOQueueNotify && size == ev.len && uint32(data&queueNotifyVQMask) == ev.vq {
				var one [8]byte
				binary.NativeEndian.PutUint64(one[:], 1)
				unix.Write(ev.fd, one[:])
				state = xenabi.STATE_IORESP_READY
				break
			}
		}
		atomic.StoreUint32(word, w&^(xenabi.IoreqStateMask<<16)|state<<16)
		if state == xenabi.STATE_IORESP_READY {
			s.send(k.owner, p)
		}
	}
}

// closeEventFDs stops every irqfd and releases the ioeventfds (Sim.Close).
func (s *Sim) closeEventFDs() {
	e := &s.efds
	e.mu.Lock()
	qs := e.irqfds
	e.irqfds = nil
	e.mu.Unlock()
	for _, q := range qs {
		q.shutdown()
	}
	s.mu.Lock()
	for _, k := range e.kioreqs {
		k.unhook()
		unix.Munmap(k.page)
		for _, ev := range k.evs {
			unix.Close(ev.fd)
		}
	}
	e.kioreqs = nil
	s.mu.Unlock()
}
