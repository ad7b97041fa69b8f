package xensim

import (
	"encoding/binary"
	"testing"
	"time"

	"godm/hyp/kernel"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// readable reports whether fd polls readable right now.
func readable(t *testing.T, fd int) bool {
	t.Helper()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(pfd, 0)
	if err != nil {
		t.Fatal(err)
	}
	return n == 1 && pfd[0].Revents&unix.POLLIN != 0
}

// waitReadable waits (bounded) with epoll for fd to become readable.
func waitReadable(t *testing.T, fd int) {
	t.Helper()
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
		t.Fatal(err)
	}
	evs := make([]unix.EpollEvent, 1)
	for {
		n, err := unix.EpollWait(ep, evs, 5000)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n != 1 {
			t.Fatalf("epoll: %d events, %v", n, err)
		}
		return
	}
}

func readPorts(t *testing.T, f kernel.File) []uint32 {
	t.Helper()
	b := make([]byte, 64)
	n, err := f.Read(b)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var out []uint32
	for i := 0; i < n; i += 4 {
		out = append(out, binary.NativeEndian.Uint32(b[i:]))
	}
	return out
}

func writePort(t *testing.T, f kernel.File, p uint32) {
	t.Helper()
	b := binary.NativeEndian.AppendUint32(nil, p)
	if n, err := f.Write(b); err != nil || n != 4 {
		t.Fatalf("write %d: %d, %v", p, n, err)
	}
}

func TestEvtchnMaskingAndReadiness(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	ev := mustOpen(t, s.Kernel(0), kernel.Evtchn, unix.O_NONBLOCK)
	guest := d.ID()
	// The guest offers an unbound port to dom0; dom0 binds it.
	s.mu.Lock()
	gp, ge, err := s.allocPortLocked(d)
	ge.state, ge.remoteDom = portUnbound, 0
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if readable(t, ev.Fd()) {
		t.Fatal("fd readable before any event")
	}
	if _, err := ev.Read(make([]byte, 4)); !isErrno(err, unix.EAGAIN) {
		t.Fatalf("empty non-blocking read: %v, want EAGAIN", err)
	}
	lp, err := evBindInterdomain(ev, uint32(guest), gp)
	if err != nil {
		t.Fatal(err)
	}
	// Xen marks a freshly bound local port pending.
	waitReadable(t, ev.Fd())
	if got := readPorts(t, ev); len(got) != 1 || got[0] != lp {
		t.Fatalf("after bind: pending %v, want [%d]", got, lp)
	}
	if readable(t, ev.Fd()) {
		t.Fatal("fd readable with an empty queue")
	}
	guestSend := func() {
		s.mu.RLock()
		defer s.mu.RUnlock()
		if err := s.send(d, gp); err != nil {
			t.Fatal(err)
		}
	}
	// Masked until written back: more sends queue nothing...
	guestSend()
	guestSend()
	if readable(t, ev.Fd()) {
		t.Fatal("masked port was queued")
	}
	// ...but unmasking delivers the pending event once.
	writePort(t, ev, lp)
	if got := readPorts(t, ev); len(got) != 1 || got[0] != lp {
		t.Fatalf("after unmask: %v, want [%d]", got, lp)
	}
	writePort(t, ev, lp)
	if readable(t, ev.Fd()) {
		t.Fatal("readable after unmask with nothing pending")
	}
	guestSend()
	if !readable(t, ev.Fd()) {
		t.Fatal("not readable after a send to an unmasked port")
	}
	if err := evReset(ev); err != nil {
		t.Fatal(err)
	}
	if readable(t, ev.Fd()) {
		t.Fatal("readable after reset")
	}
	// Notify from dom0 reaches the guest port (recorded).
	mark := s.LastSeq()
	if err := evNotify(ev, &xenabi.IoctlEvtchnNotify{Port: lp}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WaitEvent(mark, time.Second, func(e Event) bool { return e.Kind == EventGuestNotify && e.Data == uint64(gp) }); err != nil {
		t.Error(err)
	}
	if err := evUnbind(ev, lp); err != nil {
		t.Fatal(err)
	}
	if err := evUnbind(ev, lp); !isErrno(err, unix.ENOTCONN) {
		t.Errorf("unbind twice: %v, want ENOTCONN", err)
	}
	if err := evNotify(ev, &xenabi.IoctlEvtchnNotify{Port: lp}); !isErrno(err, unix.ENOTCONN) {
		t.Errorf("notify unbound: %v, want ENOTCONN", err)
	}
	// The guest port is unbound again and can be re-bound.
	if _, err := evBindInterdomain(ev, uint32(guest), gp); err != nil {
		t.Errorf("rebind: %v", err)
	}
}

func TestEvtchnErrors(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	ev := mustOpen(t, s.Kernel(0), kernel.Evtchn, unix.O_NONBLOCK)
	other := mustOpen(t, s.Kernel(0), kernel.Evtchn, unix.O_NONBLOCK)
	guest := uint32(d.ID())
	if _, err := evBindInterdomain(ev, 99, 1); !isErrno(err, unix.ESRCH) {
		t.Errorf("bind to missing domain: %v, want ESRCH", err)
	}
	if _, err := evBindInterdomain(ev, guest, 55); !isErrno(err, unix.EINVAL) {
		t.Errorf("bind to missing port: %v, want EINVAL", err)
	}
	p, err := evBindUnbound(ev, guest)
	if err != nil {
		t.Fatal(err)
	}
	// A port of dom0 offered to the guest cannot be bound by dom0 itself.
	if _, err := evBindInterdomain(other, 0, p); !isErrno(err, unix.EINVAL) {
		t.Errorf("bind to a port offered to another domain: %v, want EINVAL", err)
	}
	if err := evNotify(other, &xenabi.IoctlEvtchnNotify{Port: p}); !isErrno(err, unix.ENOTCONN) {
		t.Errorf("notify another file's port: %v, want ENOTCONN", err)
	}
	if err := evNotify(ev, &xenabi.IoctlEvtchnNotify{Port: p}); err != nil {
		t.Errorf("notify unbound port: %v, want silent drop", err)
	}
	if err := evNotify(ev, &xenabi.IoctlEvtchnNotify{Port: 1 << 20}); !isErrno(err, unix.ENOTCONN) {
		t.Errorf("notify huge port: %v, want ENOTCONN", err)
	}
	if err := evRestrict(ev, 0); !isErrno(err, unix.EINVAL) {
		t.Errorf("restrict to dom0: %v, want EINVAL", err)
	}
	if err := evRestrict(ev, uint16(guest)); err != nil {
		t.Fatal(err)
	}
	if err := evRestrict(ev, uint16(guest)); !isErrno(err, unix.EACCES) {
		t.Errorf("restrict twice: %v, want EACCES", err)
	}
	if _, err := evBindUnbound(ev, guest); !isErrno(err, unix.EACCES) {
		t.Errorf("unbound port when restricted: %v, want EACCES", err)
	}
	if _, err := evBindInterdomain(ev, guest+1, 1); !isErrno(err, unix.EACCES) {
		t.Errorf("bind other domain when restricted: %v, want EACCES", err)
	}
	if n, err := ev.Write([]byte{1, 2}); n != 0 || err != nil {
		t.Errorf("short write: %d %v", n, err)
	}
	ev.Close()
	if err := ev.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if _, err := ev.Read(make([]byte, 4)); !isErrno(err, unix.EBADF) {
		t.Errorf("read after close: %v", err)
	}
	// Closing unbound p: its port number is free again.
	s.mu.RLock()
	free := s.domains[0].port(p) == nil
	s.mu.RUnlock()
	if !free {
		t.Errorf("port %d still allocated after close", p)
	}
}

func TestEvtchnBlockingRead(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	ev := mustOpen(t, s.Kernel(0), kernel.Evtchn, 0)
	p, err := evBindUnbound(ev, uint32(d.ID()))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []uint32, 1)
	go func() {
		b := make([]byte, 8)
		n, err := ev.Read(b)
		if err != nil {
			got <- nil
			return
		}
		got <- []uint32{binary.NativeEndian.Uint32(b[:n])}
	}()
	// The guest binds dom0's offer and notifies.
	s.mu.Lock()
	gp, ge, err := s.bindInterdomainLocked(d, 0, p)
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	_ = ge
	s.mu.RLock()
	s.send(d, gp)
	s.mu.RUnlock()
	select {
	case ports := <-got:
		if len(ports) != 1 || ports[0] != p {
			t.Errorf("blocking read = %v, want [%d]", ports, p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocking read did not return")
	}
}
