package foreign

import (
	"testing"

	"godm/hyp/internal/golden"
	"godm/hyp/internal/kerneltest"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// TestGolden checks Map, MapResource and Close against what
// libxenforeignmemory hands the kernel for the same calls
// (tools/xencapture/driver.c): the mmap of the privcmd file, the
// MMAPBATCH_V2 / MMAP_RESOURCE argument and buffers byte for byte, and the
// munmap.
func TestGolden(t *testing.T) {
	tests := []struct {
		fixture, unmapFixture string
		mapFn                 func(t *testing.T, k *kerneltest.Kernel) *Mapping
		req                   uint
	}{
		{"fmem_map", "fmem_unmap", func(t *testing.T, k *kerneltest.Kernel) *Mapping {
			p, _ := openPrivcmdOn(t, k)
			m, err := Map(p, 7, true, []uint64{0x100, 0xdead, 0x102})
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			// result "err=0,-22,0"
			if m.PageErr(0) != nil || m.PageErr(1) != unix.EINVAL || m.PageErr(2) != nil {
				t.Errorf("page errors %v %v %v, want nil EINVAL nil", m.PageErr(0), m.PageErr(1), m.PageErr(2))
			}
			return m
		}, xenabi.IOCTL_PRIVCMD_MMAPBATCH_V2},
		{"fmem_map_ro", "", func(t *testing.T, k *kerneltest.Kernel) *Mapping {
			p, _ := openPrivcmdOn(t, k)
			m, err := Map(p, 7, false, []uint64{0xfeff0})
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			return m
		}, xenabi.IOCTL_PRIVCMD_MMAPBATCH_V2},
		{"fmem_map_resource", "fmem_unmap_resource", func(t *testing.T, k *kerneltest.Kernel) *Mapping {
			p, _ := openPrivcmdOn(t, k)
			m, err := MapResource(p, 7, xenabi.XENMEM_resource_ioreq_server, 1, xenabi.XENMEM_resource_ioreq_server_frame_ioreq0, 2)
			if err != nil {
				t.Fatalf("MapResource: %v", err)
			}
			return m
		}, xenabi.IOCTL_PRIVCMD_MMAP_RESOURCE},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			f := golden.Load(t, tt.fixture)
			k := kerneltest.New()
			m := tt.mapFn(t, k)
			got := k.Events()
			if len(got) != len(f.Events) {
				t.Fatalf("%d events, want %d", len(got), len(f.Events))
			}
			for i := range got {
				kerneltest.CheckEvent(t, got[i], &f.Events[i])
			}
			k.Reset()
			if err := m.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if tt.unmapFixture == "" {
				return
			}
			u := golden.Load(t, tt.unmapFixture)
			got = k.Events()
			if len(got) != len(u.Events) {
				t.Fatalf("Close: %d events, want %d", len(got), len(u.Events))
			}
			for i := range got {
				kerneltest.CheckEvent(t, got[i], &u.Events[i])
			}
		})
	}
}

// TestGoldenRestrict checks privcmd Restrict against
// xenforeignmemory_restrict.
func TestGoldenRestrict(t *testing.T) {
	k := kerneltest.New()
	p, _ := openPrivcmdOn(t, k)
	if err := p.Restrict(7); err != nil {
		t.Fatalf("Restrict: %v", err)
	}
	f := golden.Load(t, "fmem_restrict")
	kerneltest.CheckIoctl(t, k.LastIoctl(t, xenabi.IOCTL_PRIVCMD_RESTRICT), f.Ioctl(t, xenabi.IOCTL_PRIVCMD_RESTRICT))
}
