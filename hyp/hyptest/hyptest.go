package hyptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"godm/hyp"
	"godm/hyp/dm"
	"godm/hyp/domctl"
	"godm/hyp/evtchn"
	"godm/hyp/foreign"
	"godm/hyp/hcall"
	"godm/hyp/kernel"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"
	"godm/hyp/xenstore"
)

// Timeout bounds every wait of the suite (an event channel notification,
// a xenstore answer): a target that does not answer in time fails the
// sub-test instead of hanging it.
const Timeout = 10 * time.Second

// Frames of the test domain's guest-physical space the suite maps. On an
// HVM guest built by libxl, frame 0 (the real-mode interrupt table) is
// RAM, and the legacy VGA window 0xa0000-0xbffff is never populated: the
// toolstack skips it when it allocates the guest's memory
// (tools/libs/guest/xg_dom_x86.c, meminit_hvm), and Xen forwards accesses
// to it to the device model.
const (
	RAMGFN  = 0x0
	HoleGFN = 0xa0
)

// Target is a hypervisor to check: a kernel seam and an HVM guest on it.
type Target struct {
	Kernel kernel.Kernel
	Dom    hyp.DomID
	// Guest, when set, plays the test domain's own side (the simulated
	// Xen can): the suite then also writes guest RAM and runs an
	// event-channel round trip with the guest. Nil on real Xen, where
	// those sub-tests are skipped with the reason.
	Guest Guest
	// XenStore connects to xenstore as the device model would; nil, or an
	// error from it, skips the xenstore sub-test with the reason.
	XenStore func(ctx context.Context) (*xenstore.Client, error)
	// Name is the test domain's name in xenstore; empty accepts any
	// non-empty name.
	Name string
}

// Guest is the test domain's own side of the interface, for targets that
// can play it.
type Guest interface {
	// ReadRAM and WriteRAM access guest-physical memory as the guest
	// sees it.
	ReadRAM(gpa uint64, p []byte) error
	WriteRAM(gpa uint64, p []byte) error
	// OfferPort allocates a guest event-channel port that the device
	// model's domain may bind (EVTCHNOP_alloc_unbound in the guest).
	OfferPort() (uint32, error)
	// Notify sends an event from guest port p.
	Notify(p uint32) error
	// ExpectNotify starts watching guest port p and returns a function
	// that waits, at most timeout, for an event sent to p after the
	// ExpectNotify call.
	ExpectNotify(p uint32) (wait func(timeout time.Duration) error)
}

// RealXen returns the real host as a Target, or skips the test with the
// reason: no /dev/xen/privcmd, or GODM_XEN_TEST_DOMID (the HVM guest the
// suite may create an ioreq server for) unset. Xenstore is reached the
// way libxenstore does (XENSTORED_PATH, the daemon socket, then
// /dev/xen/xenbus).
func RealXen(t *testing.T) Target {
	t.Helper()
	h := kernel.Host{}
	if !h.Available(kernel.Privcmd) {
		t.Skip("no real Xen: /dev/xen/privcmd is absent")
	}
	s := os.Getenv("GODM_XEN_TEST_DOMID")
	if s == "" {
		t.Skip("real Xen present, but GODM_XEN_TEST_DOMID does not name an HVM guest to test with")
	}
	d, err := strconv.Atoi(s)
	if err != nil || d <= 0 || d >= xenabi.DOMID_FIRST_RESERVED {
		t.Fatalf("GODM_XEN_TEST_DOMID=%q: want a guest domain id", s)
	}
	return Target{
		Kernel: h,
		Dom:    hyp.DomID(d),
		XenStore: func(ctx context.Context) (*xenstore.Client, error) {
			return xenstore.Open(ctx, xenstore.Config{Getenv: os.Getenv, Kernel: h})
		},
	}
}

// missingDom is a domain id no test host uses (the last one below the
// reserved ids).
const missingDom = hyp.DomID(xenabi.DOMID_FIRST_RESERVED - 1)

// Run runs the suite against tg. Everything it creates (an ioreq server,
// mappings, event-channel bindings) is destroyed before it returns; on real
// Xen it reads the test domain's memory but never writes it.
func Run(t *testing.T, tg Target) {
	p, err := privcmd.Open(tg.Kernel)
	if err != nil {
		t.Fatalf("privcmd: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	c := dm.New(p, tg.Dom)
	hc := hcall.New(p)

	t.Run("nr_vcpus", func(t *testing.T) {
		n, err := c.NrVCPUs()
		if err != nil || n == 0 || n > 128 {
			t.Errorf("NrVCPUs = %d, %v", n, err)
		}
	})

	t.Run("xen_version", func(t *testing.T) { testVersion(t, hc) })
	t.Run("hvm param", func(t *testing.T) { testHVMParam(t, hc, tg.Dom) })
	t.Run("getdomaininfo", func(t *testing.T) { testDomainInfo(t, hc, c, tg.Dom) })
	t.Run("guest memory", func(t *testing.T) { testGuestMemory(t, p, tg) })
	t.Run("event channel loopback", func(t *testing.T) { testEventChannelLoopback(t, tg.Kernel) })
	t.Run("event channel round trip", func(t *testing.T) { testEventChannel(t, tg) })
	t.Run("xenstore", func(t *testing.T) { testXenStore(t, tg) })
	t.Run("ioreq server lifecycle", func(t *testing.T) { testIOReqServer(t, p, c, tg) })
	t.Run("restrict", func(t *testing.T) { testRestrict(t, tg) })
	t.Run("irqfd and ioeventfd support", func(t *testing.T) {
		// The probe is a deassign of eventfd -1, which changes nothing;
		// the kernel either offers the request or says it does not know
		// it, any other answer is one the probe does not understand.
		for name, f := range map[string]func() error{"irqfd": p.IRQFDSupported, "ioeventfd": p.IOEventFDSupported} {
			switch err := f(); {
			case err == nil:
				t.Logf("%s: offered", name)
			case errors.Is(err, hyp.ErrNotSupported):
				t.Logf("%s: not offered (%v)", name, err)
			default:
				t.Errorf("%s support probe: %v", name, err)
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		if _, err := c.GetIOReqServerInfo(0x7fff, true); !errors.Is(err, unix.ENOENT) {
			t.Errorf("get_info of no server = %v, want ENOENT", err)
		}
		bad := dm.New(p, missingDom)
		if _, err := bad.NrVCPUs(); !errors.Is(err, unix.ESRCH) {
			t.Errorf("DM op on a missing domain = %v, want ESRCH", err)
		}
	})
}

// testVersion checks xen_version: a 4.x release godm supports, and the
// strings a device model reads.
func testVersion(t *testing.T, hc *hcall.Caller) {
	major, minor, err := hc.XenVersion()
	if err != nil {
		t.Fatalf("XenVersion: %v", err)
	}
	if major != 4 || minor < 15 {
		t.Errorf("Xen %d.%d, want 4.15 or later", major, minor)
	}
	// ".<patch level>" on releases, "-unstable" and the like on
	// development builds; at most XEN_EXTRAVERSION_LEN-1 bytes.
	if extra, err := hc.XenExtraVersion(); err != nil || len(extra) > 15 {
		t.Errorf("XenExtraVersion = %q, %v", extra, err)
	}
	// The test domain is an HVM guest, so the host runs 64-bit HVM
	// guests.
	if caps, err := hc.XenCapabilities(); err != nil || !strings.Contains(caps, "hvm-3.0-x86_64") {
		t.Errorf("XenCapabilities = %q, %v; want hvm-3.0-x86_64 among them", caps, err)
	}
}

// testHVMParam reads an HVM parameter the toolstack always sets
// (HVM_PARAM_STORE_EVTCHN: the guest's xenstore event channel), and checks
// hvmop_get_param's errors (xen/arch/x86/hvm/hvm.c: the index is checked
// before the domain is looked up).
func testHVMParam(t *testing.T, hc *hcall.Caller, dom hyp.DomID) {
	v, err := hc.GetHVMParam(dom, xenabi.HVM_PARAM_STORE_EVTCHN)
	if err != nil || v == 0 || v >= 1<<17 {
		t.Errorf("HVM_PARAM_STORE_EVTCHN = %d, %v; want the guest's xenstore port", v, err)
	}
	tests := []struct {
		name  string
		dom   hyp.DomID
		param uint32
		want  unix.Errno
	}{
		{"index out of range", dom, 1000, unix.EINVAL},
		{"missing domain", missingDom, xenabi.HVM_PARAM_STORE_EVTCHN, unix.ESRCH},
	}
	for _, tt := range tests {
		if _, err := hc.GetHVMParam(tt.dom, tt.param); !errors.Is(err, tt.want) {
			t.Errorf("%s: GetHVMParam(%v, %d) = %v, want %v", tt.name, tt.dom, tt.param, err, tt.want)
		}
	}
}

// testDomainInfo checks XEN_DOMCTL_getdomaininfo of the test domain, with
// the layout domctl.Open picks for the running Xen, against what the DM
// ops say about it.
func testDomainInfo(t *testing.T, hc *hcall.Caller, c *dm.Client, dom hyp.DomID) {
	d, err := domctl.Open(hc)
	if err != nil {
		t.Fatalf("domctl.Open: %v", err)
	}
	info, err := d.GetDomainInfo(dom)
	if err != nil {
		t.Fatalf("GetDomainInfo(%v): %v", dom, err)
	}
	if info.Domain != dom || !info.HVM() || info.Dying() || info.TotPages == 0 {
		t.Errorf("GetDomainInfo(%v) = %+v; want that live HVM domain with memory", dom, info)
	}
	if n, err := c.NrVCPUs(); err != nil || info.MaxVCPUID+1 != n {
		t.Errorf("max_vcpu_id %d, nr_vcpus %d (%v): want nr_vcpus = max_vcpu_id+1", info.MaxVCPUID, n, err)
	}
	if _, err := d.GetDomainInfo(missingDom); !errors.Is(err, unix.ESRCH) {
		t.Errorf("GetDomainInfo of a missing domain = %v, want ESRCH", err)
	}
}

// testGuestMemory maps guest frames with IOCTL_PRIVCMD_MMAPBATCH_V2: a
// RAM frame read-only (what the guest has there, when the target can tell),
// a batch with a hole in the middle (per-page EINVAL: get_page_from_gfn
// finds no page; xen/arch/x86/mm.c), and, only where the guest is
// simulated, a writable frame written from both sides.
func testGuestMemory(t *testing.T, p *privcmd.Handle, tg Target) {
	m, err := foreign.Map(p, tg.Dom, false, []uint64{RAMGFN})
	if err != nil {
		t.Fatalf("map gfn %#x read-only: %v", RAMGFN, err)
	}
	defer m.Close()
	if err := m.PageErr(0); err != nil || len(m.Bytes()) != privcmd.PageSize {
		t.Fatalf("gfn %#x: page error %v, %d bytes", RAMGFN, err, len(m.Bytes()))
	}
	if tg.Guest != nil {
		want := make([]byte, privcmd.PageSize)
		if err := tg.Guest.ReadRAM(RAMGFN*privcmd.PageSize, want); err != nil {
			t.Fatalf("guest read: %v", err)
		}
		if !bytes.Equal(m.Bytes(), want) {
			t.Errorf("gfn %#x mapped differs from what the guest has there", RAMGFN)
		}
	}

	gfns := []uint64{RAMGFN, HoleGFN, RAMGFN + 1}
	h, err := foreign.Map(p, tg.Dom, false, gfns)
	if err != nil {
		t.Fatalf("map %#x: %v", gfns, err)
	}
	defer h.Close()
	for i, gfn := range gfns {
		err := h.PageErr(i)
		if want := gfn == HoleGFN; want != (err != nil) || (want && !errors.Is(err, unix.EINVAL)) {
			t.Errorf("gfn %#x: page error %v (hole: %v, want EINVAL for a hole)", gfn, err, want)
		}
	}
	if h.Holes() != 1 {
		t.Errorf("%d holes, want 1", h.Holes())
	}
	if tg.Guest != nil {
		// Only the mapped pages may be touched: the hole's page faults.
		want := make([]byte, privcmd.PageSize)
		for i, gfn := range []uint64{RAMGFN, RAMGFN + 1} {
			if err := tg.Guest.ReadRAM(gfn*privcmd.PageSize, want); err != nil {
				t.Fatalf("guest read: %v", err)
			}
			if got := h.Bytes()[2*i*privcmd.PageSize:][:privcmd.PageSize]; !bytes.Equal(got, want) {
				t.Errorf("batch page of gfn %#x differs from what the guest has there", gfn)
			}
		}
	}

	if tg.Guest == nil {
		t.Skip("writable mapping not checked: writing a live guest's RAM would corrupt it (read-only mapping and holes checked)")
	}
	const gfn = 0x10
	w, err := foreign.Map(p, tg.Dom, true, []uint64{gfn})
	if err != nil || w.PageErr(0) != nil {
		t.Fatalf("map gfn %#x writable: %v, %v", gfn, err, w.PageErr(0))
	}
	defer w.Close()
	b := w.Bytes()
	for i := range b {
		b[i] = byte(i*7 + 1)
	}
	got := make([]byte, privcmd.PageSize)
	if err := tg.Guest.ReadRAM(gfn*privcmd.PageSize, got); err != nil || !bytes.Equal(got, b) {
		t.Errorf("guest does not see the device model's write (%v)", err)
	}
	for i := range got {
		got[i] = ^byte(i)
	}
	if err := tg.Guest.WriteRAM(gfn*privcmd.PageSize, got); err != nil {
		t.Fatalf("guest write: %v", err)
	}
	if !bytes.Equal(b, got) {
		t.Errorf("device model does not see the guest's write")
	}
}

// testEventChannel binds a port the guest offers, then checks both
// directions: Xen marks the new local port pending at bind
// (xen/common/event_channel.c, evtchn_bind_interdomain), a notify reaches
// the guest, the guest's notify makes the port readable, and it stays
// masked until written back.
func testEventChannel(t *testing.T, tg Target) {
	if tg.Guest == nil {
		t.Skip("no guest-side peer on real Xen: the test domain would have to offer a port to this domain")
	}
	gp, err := tg.Guest.OfferPort()
	if err != nil {
		t.Fatalf("guest offers a port: %v", err)
	}
	ev, err := evtchn.Open(tg.Kernel)
	if err != nil {
		t.Fatalf("evtchn: %v", err)
	}
	defer ev.Close()
	lp, err := ev.BindInterdomain(tg.Dom, evtchn.Port(gp))
	if err != nil {
		t.Fatalf("bind guest port %d: %v", gp, err)
	}
	unbound := false
	defer func() {
		if !unbound {
			ev.Unbind(lp)
		}
	}()
	waitPending(t, ev, lp, "bind")

	wait := tg.Guest.ExpectNotify(gp)
	if err := ev.Notify(lp); err != nil {
		t.Fatalf("notify: %v", err)
	}
	if err := wait(Timeout); err != nil {
		t.Errorf("guest port %d got no event: %v", gp, err)
	}

	if err := tg.Guest.Notify(gp); err != nil {
		t.Fatalf("guest notify: %v", err)
	}
	waitPending(t, ev, lp, "guest notify")
	var buf [8]evtchn.Port
	if n, err := ev.Pending(buf[:]); n != 0 || err != nil {
		t.Errorf("after the events were read: Pending = %v, %v; want none", buf[:n], err)
	}

	if err := ev.Unbind(lp); err != nil {
		t.Fatalf("unbind: %v", err)
	}
	unbound = true
	// drivers/xen/evtchn.c: a port not bound through this file.
	if err := ev.Notify(lp); !errors.Is(err, unix.ENOTCONN) {
		t.Errorf("notify of an unbound port = %v, want ENOTCONN", err)
	}
}

// testEventChannelLoopback connects two event-channel handles of this
// process's own domain (DOMID_SELF on both sides: Xen resolves it in
// evtchn_alloc_unbound and evtchn_bind_interdomain), which needs no peer
// and touches no guest, and sends events both ways.
func testEventChannelLoopback(t *testing.T, k kernel.Kernel) {
	a, err := evtchn.Open(k)
	if err != nil {
		t.Fatalf("evtchn: %v", err)
	}
	defer a.Close()
	b, err := evtchn.Open(k)
	if err != nil {
		t.Fatalf("evtchn: %v", err)
	}
	defer b.Close()
	pa, err := a.BindUnboundPort(xenabi.DOMID_SELF)
	if err != nil {
		t.Fatalf("bind unbound port: %v", err)
	}
	pb, err := b.BindInterdomain(xenabi.DOMID_SELF, pa)
	if err != nil {
		a.Unbind(pa)
		t.Fatalf("bind interdomain to own port %d: %v", pa, err)
	}
	unbound := false
	defer func() {
		if !unbound {
			b.Unbind(pb)
			a.Unbind(pa)
		}
	}()
	waitPending(t, b, pb, "bind")
	for _, dir := range []struct {
		name     string
		from, to *evtchn.Handle
		src, dst evtchn.Port
	}{
		{"a to b", a, b, pa, pb},
		{"b to a", b, a, pb, pa},
	} {
		if err := dir.from.Notify(dir.src); err != nil {
			t.Fatalf("%s: notify %d: %v", dir.name, dir.src, err)
		}
		waitPending(t, dir.to, dir.dst, dir.name)
	}
	var buf [8]evtchn.Port
	for _, h := range []*evtchn.Handle{a, b} {
		if n, err := h.Pending(buf[:]); n != 0 || err != nil {
			t.Errorf("after the events were read: Pending = %v, %v; want none", buf[:n], err)
		}
	}
	if err := b.Unbind(pb); err != nil {
		t.Errorf("unbind %d: %v", pb, err)
	}
	if err := a.Unbind(pa); err != nil {
		t.Errorf("unbind %d: %v", pa, err)
	}
	unbound = true
	// drivers/xen/evtchn.c: a port not bound through this file.
	if err := a.Notify(pa); !errors.Is(err, unix.ENOTCONN) {
		t.Errorf("notify of an unbound port = %v, want ENOTCONN", err)
	}
}

// waitPending waits at most Timeout for port p to become readable on ev,
// then unmasks it. Other ports are reported.
func waitPending(t *testing.T, ev *evtchn.Handle, p evtchn.Port, after string) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	var buf [8]evtchn.Port
	for {
		n, err := ev.Pending(buf[:])
		if err != nil {
			t.Fatalf("after %s: Pending: %v", after, err)
		}
		for _, q := range buf[:n] {
			if q != p {
				t.Errorf("after %s: port %d pending, want only %d", after, q, p)
			}
			if err := ev.Unmask(q); err != nil {
				t.Fatalf("unmask %d: %v", q, err)
			}
			if q == p {
				return
			}
		}
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("after %s: port %d not pending within %v", after, p, Timeout)
		}
		fds := []unix.PollFd{{Fd: int32(ev.Fd()), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int(left/time.Millisecond)+1); err != nil && !errors.Is(err, unix.EINTR) {
			t.Fatalf("poll: %v", err)
		}
	}
}

// testXenStore reads the test domain's name and home path, as a device
// model does at start.
func testXenStore(t *testing.T, tg Target) {
	if tg.XenStore == nil {
		t.Skip("no xenstore configured for this target")
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	xs, err := tg.XenStore(ctx)
	if err != nil {
		t.Skipf("no xenstore reachable: %v", err)
	}
	defer xs.Close()
	home := fmt.Sprintf("/local/domain/%d", tg.Dom)
	if got, err := xs.GetDomainPath(ctx, tg.Dom); err != nil || got != home {
		t.Errorf("GetDomainPath(%v) = %q, %v; want %q", tg.Dom, got, err, home)
	}
	name, err := xs.Read(ctx, home+"/name")
	if err != nil || len(name) == 0 || (tg.Name != "" && string(name) != tg.Name) {
		t.Errorf("read %s/name = %q, %v; want %q", home, name, err, tg.Name)
	}
	if _, err := xs.Read(ctx, home+"/godm-hyptest-no-such-node"); !errors.Is(err, unix.ENOENT) {
		t.Errorf("read of a missing node = %v, want ENOENT", err)
	}
}

// testIOReqServer creates an ioreq server of the suite's own, maps its
// pages, binds its vCPU channels, claims and releases a port range and a
// PCI function nobody uses, and destroys it.
func testIOReqServer(t *testing.T, p *privcmd.Handle, c *dm.Client, tg Target) {
	id, err := c.CreateIOReqServer(xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	destroyed := false
	t.Cleanup(func() {
		if !destroyed {
			c.DestroyIOReqServer(id)
		}
	})
	info, err := c.GetIOReqServerInfo(id, true)
	if err != nil || info.BufIOReqPort == 0 {
		t.Fatalf("get_info(no_gfns) = %+v, %v; want a buffered port", info, err)
	}
	// Resource mapping: frame 0 is the buffered page, frame 1 the
	// synchronous page (xen/include/public/memory.h).
	if n, err := p.ResourceSize(tg.Dom, xenabi.XENMEM_resource_ioreq_server, uint32(id)); err != nil || n < 2 {
		t.Errorf("resource size = %d, %v; want >= 2 frames", n, err)
	}
	m, err := foreign.MapResource(p, tg.Dom, xenabi.XENMEM_resource_ioreq_server, uint32(id), 0, 2)
	if err != nil {
		t.Fatalf("map frames: %v", err)
	}
	defer m.Close()
	b := m.Bytes()
	if len(b) != 2*xenabi.XEN_PAGE_SIZE {
		t.Fatalf("mapped %d bytes", len(b))
	}
	// Once the server is enabled, each vCPU slot of the synchronous
	// page carries its event channel (Xen fills vp_eport when it
	// enables the server; QEMU binds after set_state), and the
	// device model binds them.
	if err := c.SetIOReqServerState(id, true); err != nil {
		t.Fatalf("enable: %v", err)
	}
	n, _ := c.NrVCPUs()
	ev, err := evtchn.Open(tg.Kernel)
	if err != nil {
		t.Fatalf("evtchn: %v", err)
	}
	defer ev.Close()
	for v := 0; v < int(n); v++ {
		off := xenabi.XEN_PAGE_SIZE + v*xenabi.IoreqSize + 24 // vp_eport
		port := uint32(b[off]) | uint32(b[off+1])<<8 | uint32(b[off+2])<<16 | uint32(b[off+3])<<24
		if port == 0 {
			t.Errorf("vCPU %d has no event channel in its slot", v)
			continue
		}
		lp, err := ev.BindInterdomain(tg.Dom, evtchn.Port(port))
		if err != nil {
			t.Errorf("bind vCPU %d port %d: %v", v, port, err)
			continue
		}
		if err := ev.Unbind(lp); err != nil {
			t.Errorf("unbind: %v", err)
		}
	}

	// Ranges: claim, overlap refused, unmap, unmap again refused.
	const lo, hi = 0x1ec0, 0x1ecf // a port range no standard device uses
	if err := c.MapIORange(id, dm.PortRange, lo, hi); err != nil {
		t.Errorf("map port range: %v", err)
	}
	if err := c.MapIORange(id, dm.PortRange, lo+4, hi+4); !errors.Is(err, unix.EEXIST) {
		t.Errorf("overlapping range = %v, want EEXIST", err)
	}
	if err := c.UnmapIORange(id, dm.PortRange, lo, hi); err != nil {
		t.Errorf("unmap: %v", err)
	}
	if err := c.UnmapIORange(id, dm.PortRange, lo, hi); !errors.Is(err, unix.ENOENT) {
		t.Errorf("unmap again = %v, want ENOENT", err)
	}
	if err := c.MapPCIDev(id, 0, 0, 29, 7); err != nil {
		t.Errorf("map pcidev 00:1d.7: %v", err)
	}
	if err := c.UnmapPCIDev(id, 0, 0, 29, 7); err != nil {
		t.Errorf("unmap pcidev: %v", err)
	}
	if err := c.SetIOReqServerState(id, false); err != nil {
		t.Errorf("disable: %v", err)
	}
	if err := c.DestroyIOReqServer(id); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	destroyed = true
	if err := c.DestroyIOReqServer(id); !errors.Is(err, unix.ENOENT) {
		t.Errorf("destroy again = %v, want ENOENT", err)
	}
}

// testRestrict restricts fresh privcmd and event-channel handles to the
// test domain, as godm does once set up (xentoolcore_restrict_all), and
// checks what the kernel then refuses: drivers/xen/privcmd.c answers EPERM
// for another domain's DM op or mapping and for raw hypercalls, EINVAL for
// a second restriction to another domain; drivers/xen/evtchn.c answers
// EACCES for binding another domain's port, any unbound port, and a second
// restriction.
func testRestrict(t *testing.T, tg Target) {
	p, err := privcmd.Open(tg.Kernel)
	if err != nil {
		t.Fatalf("privcmd: %v", err)
	}
	defer p.Close()
	if err := p.Restrict(tg.Dom); err != nil {
		t.Fatalf("privcmd restrict to %v: %v", tg.Dom, err)
	}
	if n, err := dm.New(p, tg.Dom).NrVCPUs(); err != nil || n == 0 {
		t.Errorf("restricted: NrVCPUs of %v = %d, %v; want it allowed", tg.Dom, n, err)
	}
	m, err := foreign.Map(p, tg.Dom, false, []uint64{RAMGFN})
	if err != nil || m.PageErr(0) != nil {
		t.Errorf("restricted: map gfn %#x of %v: %v; want it allowed", RAMGFN, tg.Dom, err)
	}
	if m != nil {
		m.Close()
	}
	_, missingErr := dm.New(p, missingDom).NrVCPUs()
	_, _, hcErr := hcall.New(p).XenVersion()
	_, mapErr := foreign.Map(p, missingDom, false, []uint64{RAMGFN})
	privcmdTests := []struct {
		name string
		err  error
		want unix.Errno
	}{
		{"DM op on another domain", missingErr, unix.EPERM},
		{"hypercall", hcErr, unix.EPERM},
		{"map another domain", mapErr, unix.EPERM},
		{"restrict again, same domain", p.Restrict(tg.Dom), 0},
		{"restrict again, another domain", p.Restrict(missingDom), unix.EINVAL},
	}
	for _, tt := range privcmdTests {
		if (tt.want == 0 && tt.err != nil) || (tt.want != 0 && !errors.Is(tt.err, tt.want)) {
			t.Errorf("restricted privcmd: %s = %v, want %v", tt.name, tt.err, tt.want)
		}
	}

	ev, err := evtchn.Open(tg.Kernel)
	if err != nil {
		t.Fatalf("evtchn: %v", err)
	}
	defer ev.Close()
	if err := ev.RestrictDomain(tg.Dom); err != nil {
		t.Fatalf("evtchn restrict to %v: %v", tg.Dom, err)
	}
	_, unboundErr := ev.BindUnboundPort(tg.Dom)
	_, otherErr := ev.BindInterdomain(missingDom, 1)
	evtchnTests := []struct {
		name string
		err  error
	}{
		{"bind unbound port", unboundErr},
		{"bind another domain's port", otherErr},
		{"restrict again", ev.RestrictDomain(tg.Dom)},
	}
	for _, tt := range evtchnTests {
		if !errors.Is(tt.err, unix.EACCES) {
			t.Errorf("restricted evtchn: %s = %v, want EACCES", tt.name, tt.err)
		}
	}
}
