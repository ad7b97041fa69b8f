package hyptest

import (
	"errors"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"godm/hyp"
	"godm/hyp/dm"
	"godm/hyp/evtchn"
	"godm/hyp/foreign"
	"godm/hyp/kernel"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"
)

// Target is a hypervisor to check: a kernel seam and an HVM guest on it.
type Target struct {
	Kernel kernel.Kernel
	Dom    hyp.DomID
}

// RealXen returns the real host as a Target, or skips the test with the
// reason: no /dev/xen/privcmd, or GODM_XEN_TEST_DOMID (the HVM guest the
// suite may create an ioreq server for) unset.
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
	return Target{Kernel: h, Dom: hyp.DomID(d)}
}

// Run runs the suite against tg.
func Run(t *testing.T, tg Target) {
	p, err := privcmd.Open(tg.Kernel)
	if err != nil {
		t.Fatalf("privcmd: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	c := dm.New(p, tg.Dom)

	t.Run("nr_vcpus", func(t *testing.T) {
		n, err := c.NrVCPUs()
		if err != nil || n == 0 || n > 128 {
			t.Errorf("NrVCPUs = %d, %v", n, err)
		}
	})

	t.Run("ioreq server lifecycle", func(t *testing.T) {
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
	})

	t.Run("errors", func(t *testing.T) {
		if _, err := c.GetIOReqServerInfo(0x7fff, true); !errors.Is(err, unix.ENOENT) {
			t.Errorf("get_info of no server = %v, want ENOENT", err)
		}
		bad := dm.New(p, hyp.DomID(xenabi.DOMID_FIRST_RESERVED-1))
		if _, err := bad.NrVCPUs(); !errors.Is(err, unix.ESRCH) {
			t.Errorf("DM op on a missing domain = %v, want ESRCH", err)
		}
	})
}
