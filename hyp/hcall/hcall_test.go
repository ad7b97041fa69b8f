package hcall_test

import (
	"errors"
	"testing"

	"godm/hyp/hcall"
	"godm/hyp/hcall/hcalltest"
	"godm/hyp/internal/golden"
	"godm/hyp/internal/kerneltest"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

const dom = 7 // the guest of every captured call (tools/xencapture/driver.c)

func setup(t *testing.T) (*hcalltest.Kernel, *hcall.Caller) {
	t.Helper()
	k := hcalltest.New()
	p, err := privcmd.Open(k)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return k, hcall.New(p)
}

// TestGolden issues each call the way tools/xencapture/driver.c calls
// libxenctrl and compares the hypercall, byte for byte, with the captured
// fixture, then checks the decoded answer.
func TestGolden(t *testing.T) {
	tests := []struct {
		fixture string
		call    func(c *hcall.Caller) (any, error)
		want    any
	}{
		{"xc_version", func(c *hcall.Caller) (any, error) {
			maj, min, err := c.XenVersion()
			return [2]int{maj, min}, err
		}, [2]int{4, 17}},
		{"xc_version_extraversion", func(c *hcall.Caller) (any, error) {
			return c.XenExtraVersion()
		}, ".7"},
		{"xc_version_capabilities", func(c *hcall.Caller) (any, error) {
			return c.XenCapabilities()
		}, hcalltest.FakeCapabilities},
		{"xc_hvm_param_get", func(c *hcall.Caller) (any, error) {
			return c.GetHVMParam(dom, xenabi.HVM_PARAM_STORE_EVTCHN)
		}, uint64(0x10002)},
		{"xc_hvm_param_set", func(c *hcall.Caller) (any, error) {
			return nil, c.SetHVMParam(dom, xenabi.HVM_PARAM_PAE_ENABLED, 0x0123456789abcdef)
		}, nil},
		{"xc_populate_physmap", func(c *hcall.Caller) (any, error) {
			gfns := []uint64{0x3000, 0x3001}
			err := c.PopulatePhysmap(dom, 0, 0, gfns)
			return gfns, err
		}, []uint64{0x3000, 0x3001}},
		{"xc_populate_physmap_order9", func(c *hcall.Caller) (any, error) {
			return nil, c.PopulatePhysmap(dom, 9, 0, []uint64{0x3000})
		}, nil},
		{"xc_add_to_physmap", func(c *hcall.Caller) (any, error) {
			return nil, c.AddToPhysmap(dom, xenabi.XENMAPSPACE_gmfn, 0x4000, 0x5000)
		}, nil},
		{"xc_decrease_reservation", func(c *hcall.Caller) (any, error) {
			return nil, c.DecreaseReservation(dom, 0, []uint64{0x3000, 0x3001})
		}, nil},
		{"xc_physdev_map_pirq", func(c *hcall.Caller) (any, error) {
			return c.MapGSI(dom, 16, -1)
		}, 16},
		{"xc_physdev_map_pirq_msi", func(c *hcall.Caller) (any, error) {
			return c.MapMSI(dom, -1, -1, 0, 0x0310, 1, 0xfe001000)
		}, hcalltest.FakePIRQ},
		{"xc_physdev_unmap_pirq", func(c *hcall.Caller) (any, error) {
			return nil, c.UnmapPIRQ(dom, 55)
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			f := golden.Load(t, tt.fixture)
			k, c := setup(t)
			got, err := tt.call(c)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			kerneltest.CheckIoctl(t, k.LastHypercall(t), f.Last(t, xenabi.IOCTL_PRIVCMD_HYPERCALL))
			if tt.want != nil && !equal(got, tt.want) {
				t.Errorf("result = %v, want %v (fixture: %s)", got, tt.want, f.Result)
			}
		})
	}
}

func equal(a, b any) bool {
	as, aok := a.([]uint64)
	bs, bok := b.([]uint64)
	if aok && bok {
		if len(as) != len(bs) {
			return false
		}
		for i := range as {
			if as[i] != bs[i] {
				return false
			}
		}
		return true
	}
	return a == b
}

// TestErrors checks that hypervisor errors come back wrapped, for direct
// hypercalls and for memory_op's multicall entry alike.
func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		op   uint64
		call func(c *hcall.Caller) error
	}{
		{"xen_version", xenabi.HYPERVISOR_xen_version, func(c *hcall.Caller) error { _, _, err := c.XenVersion(); return err }},
		{"extraversion", xenabi.HYPERVISOR_xen_version, func(c *hcall.Caller) error { _, err := c.XenExtraVersion(); return err }},
		{"capabilities", xenabi.HYPERVISOR_xen_version, func(c *hcall.Caller) error { _, err := c.XenCapabilities(); return err }},
		{"get param", xenabi.HYPERVISOR_hvm_op, func(c *hcall.Caller) error { _, err := c.GetHVMParam(dom, 1); return err }},
		{"set param", xenabi.HYPERVISOR_hvm_op, func(c *hcall.Caller) error { return c.SetHVMParam(dom, 1, 2) }},
		{"populate", xenabi.HYPERVISOR_memory_op, func(c *hcall.Caller) error { return c.PopulatePhysmap(dom, 0, 0, []uint64{1}) }},
		{"decrease", xenabi.HYPERVISOR_memory_op, func(c *hcall.Caller) error { return c.DecreaseReservation(dom, 0, []uint64{1}) }},
		{"add_to_physmap", xenabi.HYPERVISOR_memory_op, func(c *hcall.Caller) error {
			return c.AddToPhysmap(dom, xenabi.XENMAPSPACE_gmfn, 1, 2)
		}},
		{"map_pirq", xenabi.HYPERVISOR_physdev_op, func(c *hcall.Caller) error { _, err := c.MapGSI(dom, 5, -1); return err }},
		{"unmap_pirq", xenabi.HYPERVISOR_physdev_op, func(c *hcall.Caller) error { return c.UnmapPIRQ(dom, 5) }},
		{"domctl", xenabi.HYPERVISOR_domctl, func(c *hcall.Caller) error { return c.Domctl(make([]byte, xenabi.XenDomctlSize)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, c := setup(t)
			k.FailOp, k.FailErrno = tt.op, unix.EPERM
			err := tt.call(c)
			if !errors.Is(err, unix.EPERM) {
				t.Errorf("err = %v, want one wrapping EPERM", err)
			}
		})
	}
}

// TestShortReservation checks the _exact semantics: fewer extents than
// asked is an error, as in xc_domain_populate_physmap_exact.
func TestShortReservation(t *testing.T) {
	_, c := setup(t)
	if err := c.PopulatePhysmap(dom, 0, 0, nil); err != nil {
		t.Errorf("empty PopulatePhysmap: %v, want nil", err)
	}
	if err := c.DecreaseReservation(dom, 0, nil); err != nil {
		t.Errorf("empty DecreaseReservation: %v, want nil", err)
	}
	if err := c.Domctl(nil); !errors.Is(err, unix.EINVAL) {
		t.Errorf("Domctl(nil) = %v, want EINVAL", err)
	}
}

// TestBuffersReleased checks that every call returns its hypercall
// buffers: after many calls the fake holds only the pool's cache.
func TestBuffersReleased(t *testing.T) {
	k, c := setup(t)
	for i := 0; i < 50; i++ {
		if _, err := c.GetHVMParam(dom, 2); err != nil {
			t.Fatal(err)
		}
		if err := c.PopulatePhysmap(dom, 0, 0, make([]uint64, 600)); err != nil {
			t.Fatal(err)
		}
	}
	if got := k.Mapped(); got > 8 {
		t.Errorf("%d hypercall mappings live after 100 calls, want at most the pool cache (8)", got)
	}
}
