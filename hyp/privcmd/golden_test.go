package privcmd

import (
	"testing"

	"godm/hyp/internal/golden"
	"godm/hyp/internal/kerneltest"
	"godm/hyp/xenabi"
)

// TestGolden checks the privcmd ioctls Handle issues itself against the
// reference libraries' (tools/xencapture/driver.c): the DM_OP probe of
// xendevicemodel_open, IOCTL_PRIVCMD_RESTRICT, and hypercalls whose
// pointer argument lies in a hypercall buffer mapped from
// /dev/xen/hypercall like libxencall maps it.
func TestGolden(t *testing.T) {
	t.Run("dm_open probe", func(t *testing.T) {
		k := kerneltest.New()
		open(t, k)
		f := golden.Load(t, "dm_open")
		kerneltest.CheckIoctl(t, k.LastIoctl(t, xenabi.IOCTL_PRIVCMD_DM_OP), f.Last(t, xenabi.IOCTL_PRIVCMD_DM_OP))
	})
	for _, name := range []string{"dm_restrict", "fmem_restrict"} {
		t.Run(name, func(t *testing.T) {
			k := kerneltest.New()
			h := open(t, k)
			if err := h.Restrict(7); err != nil {
				t.Fatalf("Restrict: %v", err)
			}
			f := golden.Load(t, name)
			kerneltest.CheckIoctl(t, k.LastIoctl(t, xenabi.IOCTL_PRIVCMD_RESTRICT), f.Ioctl(t, xenabi.IOCTL_PRIVCMD_RESTRICT))
		})
	}
	t.Run("xc_version_extraversion", func(t *testing.T) {
		k := kerneltest.New()
		h := open(t, k)
		k.Reset()
		b, err := h.Buffers().Alloc(16)
		if err != nil {
			t.Fatalf("Alloc: %v", err)
		}
		defer b.Free()
		if _, err := h.Hypercall(xenabi.HYPERVISOR_xen_version, [5]uint64{1, b.Addr()}); err != nil {
			t.Fatalf("Hypercall: %v", err)
		}
		if got := string(b.Bytes()[:2]); got != ".7" {
			t.Errorf("extraversion = %q, want %q", got, ".7")
		}
		f := golden.Load(t, "xc_version_extraversion")
		var mmaps []kerneltest.Event
		for _, e := range k.Events() {
			if e.Kind == "mmap" {
				mmaps = append(mmaps, e)
			}
		}
		want := f.Find("mmap")
		if len(mmaps) != 1 || len(want) != 1 {
			t.Fatalf("%d mmaps, fixture %d; want one each", len(mmaps), len(want))
		}
		kerneltest.CheckEvent(t, mmaps[0], want[0])
		kerneltest.CheckIoctl(t, k.LastIoctl(t, xenabi.IOCTL_PRIVCMD_HYPERCALL), f.Ioctl(t, xenabi.IOCTL_PRIVCMD_HYPERCALL))
	})
}
