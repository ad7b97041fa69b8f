package evtchn_test

import (
	"encoding/binary"
	"testing"

	"godm/hyp/dm"
	"godm/hyp/evtchn"
	"godm/hyp/foreign"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"
	"godm/internal/testfake"

	"golang.org/x/sys/unix"
)

// TestSimulatedPIORoundTrip drives one guest IN through the simulated
// Xen: the vCPU's request arrives as a pending port on the evtchn fd, the
// answer goes back through the shared ioreq slot and Notify.
func TestSimulatedPIORoundTrip(t *testing.T) {
	xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(1, 1<<20))
	sim, d := xen.Sim, xen.Dom
	p, err := privcmd.Open(sim.Kernel(0))
	if err != nil {
		t.Fatalf("privcmd.Open: %v", err)
	}
	defer p.Close()
	c := dm.New(p, d.ID())
	id, err := c.CreateIOReqServer(xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC)
	if err != nil {
		t.Fatalf("CreateIOReqServer: %v", err)
	}
	m, err := foreign.MapResource(p, d.ID(), xenabi.XENMEM_resource_ioreq_server, uint32(id), 0, 2)
	if err != nil {
		t.Fatalf("MapResource: %v", err)
	}
	defer m.Close()
	if err := c.MapIORange(id, dm.PortRange, 0x3f8, 0x3ff); err != nil {
		t.Fatalf("MapIORange: %v", err)
	}
	if err := c.SetIOReqServerState(id, true); err != nil {
		t.Fatalf("SetIOReqServerState: %v", err)
	}
	slot := m.Bytes()[foreign.PageSize : foreign.PageSize+xenabi.IoreqSize]

	h, err := evtchn.Open(sim.Kernel(0))
	if err != nil {
		t.Fatalf("evtchn.Open: %v", err)
	}
	defer h.Close()
	local, err := h.BindInterdomain(d.ID(), evtchn.Port(binary.LittleEndian.Uint32(slot[24:])))
	if err != nil {
		t.Fatalf("BindInterdomain: %v", err)
	}

	type result struct {
		v   uint64
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := d.VCPU(0).In(0x3f9, 1)
		done <- result{v, err}
	}()

	// Wait (bounded) for the fd to become readable, as an epoll loop
	// would. Xen marks a port pending when it is bound
	// (xen/common/event_channel.c, evtchn_bind_interdomain), so the first
	// event may come before the request: unmask and wait again.
	ports := make([]evtchn.Port, 4)
	var w uint32
	for tries := 0; ; tries++ {
		if tries == 3 {
			t.Fatalf("no READY request after %d events", tries)
		}
		fds := []unix.PollFd{{Fd: int32(h.Fd()), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 5000); err != nil || n != 1 {
			t.Fatalf("poll = %d, %v; want the evtchn fd readable", n, err)
		}
		n, err := h.Pending(ports)
		if err != nil || n != 1 || ports[0] != local {
			t.Fatalf("Pending = %d %v, %v; want [%d]", n, ports[:n], err, local)
		}
		if err := h.Unmask(local); err != nil {
			t.Fatalf("Unmask: %v", err)
		}
		w = loadState(slot)
		if uint8(w>>16)&xenabi.IoreqStateMask == xenabi.STATE_IOREQ_READY {
			break
		}
	}
	if flags := uint8(w >> 16); flags&xenabi.IoreqDirBit == 0 {
		t.Fatalf("slot flags %#x, want a read", flags)
	}
	if addr := binary.LittleEndian.Uint64(slot[0:]); addr != 0x3f9 {
		t.Errorf("slot addr %#x, want 0x3f9", addr)
	}
	binary.LittleEndian.PutUint64(slot[8:], 0x5a)
	storeState(slot, w&^(xenabi.IoreqStateMask<<16)|xenabi.STATE_IORESP_READY<<16)
	if err := h.Notify(local); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	r := <-done // the simulated vCPU gives up after its own bounded timeout
	if r.err != nil || r.v != 0x5a {
		t.Errorf("guest IN = %#x, %v; want 0x5a", r.v, r.err)
	}
	if v := sim.Violations(); len(v) != 0 {
		t.Errorf("protocol violations: %v", v)
	}
	if err := h.Unbind(local); err != nil {
		t.Errorf("Unbind: %v", err)
	}
}
