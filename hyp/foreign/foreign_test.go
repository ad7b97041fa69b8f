package foreign

import (
	"errors"
	"testing"

	"godm/hyp"
	"godm/hyp/internal/kerneltest"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

func openPrivcmd(t *testing.T) (*privcmd.Handle, *kerneltest.Kernel) {
	t.Helper()
	return openPrivcmdOn(t, kerneltest.New())
}

// openPrivcmdOn opens privcmd on k and forgets the events of the open.
func openPrivcmdOn(t *testing.T, k *kerneltest.Kernel) (*privcmd.Handle, *kerneltest.Kernel) {
	t.Helper()
	p, err := privcmd.Open(k)
	if err != nil {
		t.Fatalf("privcmd.Open: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	k.Reset()
	return p, k
}

func TestMap(t *testing.T) {
	tests := []struct {
		name     string
		writable bool
		gfns     []uint64
		wantProt int
		wantErrs []error
	}{
		{"rw with hole", true, []uint64{0x100, 0xdead, 0x102}, unix.PROT_READ | unix.PROT_WRITE, []error{nil, unix.EINVAL, nil}},
		{"ro", false, []uint64{0xfeff0}, unix.PROT_READ, []error{nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, k := openPrivcmd(t)
			m, err := Map(p, 7, tt.writable, tt.gfns)
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			if got, want := len(m.Bytes()), len(tt.gfns)*PageSize; got != want {
				t.Errorf("len(Bytes) = %d, want %d", got, want)
			}
			if got := m.Pages(); got != len(tt.gfns) {
				t.Errorf("Pages = %d, want %d", got, len(tt.gfns))
			}
			holes := 0
			for i, want := range tt.wantErrs {
				if got := m.PageErr(i); got != want {
					t.Errorf("PageErr(%d) = %v, want %v", i, got, want)
				}
				if want != nil {
					holes++
				}
			}
			if got := m.Holes(); got != holes {
				t.Errorf("Holes = %d, want %d", got, holes)
			}
			for _, i := range []int{-1, len(tt.gfns)} {
				if err := m.PageErr(i); !errors.Is(err, ErrPageIndex) {
					t.Errorf("PageErr(%d) = %v, want ErrPageIndex", i, err)
				}
			}
			evs := k.Events()
			if len(evs) != 2 || evs[0].Kind != "mmap" || evs[1].Req != xenabi.IOCTL_PRIVCMD_MMAPBATCH_V2 {
				t.Fatalf("events = %+v, want mmap then MMAPBATCH_V2", evs)
			}
			if evs[0].Prot != tt.wantProt || evs[0].Length != len(tt.gfns)*PageSize || evs[0].Offset != 0 {
				t.Errorf("mmap prot %d length %d offset %d, want %d %d 0", evs[0].Prot, evs[0].Length, evs[0].Offset, tt.wantProt, len(tt.gfns)*PageSize)
			}
			if err := m.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := m.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if m.Bytes() != nil {
				t.Errorf("Bytes after Close not nil")
			}
			if n := k.Mapped(); n != 0 {
				t.Errorf("%d mappings left after Close", n)
			}
			if got := len(k.Events()); got != 3 {
				t.Errorf("%d events after two Closes, want one munmap", got-2)
			}
		})
	}
}

func TestMapBadArgs(t *testing.T) {
	p, k := openPrivcmd(t)
	for name, gfns := range map[string][]uint64{"none": nil, "huge": make([]uint64, MaxPages+1)} {
		if _, err := Map(p, 7, true, gfns); !errors.Is(err, unix.EINVAL) {
			t.Errorf("Map(%s) = %v, want EINVAL", name, err)
		}
	}
	for _, n := range []int{0, -1, MaxPages + 1} {
		if _, err := MapResource(p, 7, 0, 1, 0, n); !errors.Is(err, unix.EINVAL) {
			t.Errorf("MapResource(%d frames) = %v, want EINVAL", n, err)
		}
	}
	if n := len(k.Events()); n != 0 {
		t.Errorf("bad arguments reached the kernel: %d events", n)
	}
}

func TestMapFailureUnmaps(t *testing.T) {
	p, k := openPrivcmd(t)
	k.Script = func(c *kerneltest.Call) (uintptr, error) { return 0, unix.EPERM }
	if _, err := Map(p, 7, true, []uint64{1, 2}); !errors.Is(err, unix.EPERM) {
		t.Errorf("Map = %v, want EPERM", err)
	}
	if _, err := MapResource(p, 7, 0, 1, 1, 2); !errors.Is(err, unix.EPERM) {
		t.Errorf("MapResource = %v, want EPERM", err)
	}
	if n := k.Mapped(); n != 0 {
		t.Errorf("%d mappings left after failures", n)
	}
}

func TestMapResource(t *testing.T) {
	p, k := openPrivcmd(t)
	m, err := MapResource(p, 7, xenabi.XENMEM_resource_ioreq_server, 1, xenabi.XENMEM_resource_ioreq_server_frame_ioreq0, 2)
	if err != nil {
		t.Fatalf("MapResource: %v", err)
	}
	defer m.Close()
	if got := len(m.Bytes()); got != 2*PageSize {
		t.Errorf("len = %d, want two pages", got)
	}
	if m.PageErr(1) != nil || !errors.Is(m.PageErr(2), ErrPageIndex) {
		t.Errorf("PageErr(1), PageErr(2) = %v, %v; want nil, ErrPageIndex", m.PageErr(1), m.PageErr(2))
	}
	evs := k.Events()
	if len(evs) != 2 || evs[0].Kind != "mmap" || evs[0].Prot != unix.PROT_READ|unix.PROT_WRITE {
		t.Fatalf("events = %+v, want a read-write mmap then the ioctl", evs)
	}
	if p := evs[1].Arg.Ptrs; len(p) != 1 || p[0].Region != "mmap" || p[0].RegionOff != 0 {
		t.Errorf("addr pointer = %+v, want the start of the mapping", p)
	}
	m.Close()
	if m.Pages() != 2 || m.PageErr(1) != nil {
		t.Errorf("after Close: Pages %d, PageErr(1) %v; want 2, nil", m.Pages(), m.PageErr(1))
	}
}

func TestMapResourceNotSupported(t *testing.T) {
	p, k := openPrivcmd(t)
	k.Script = func(c *kerneltest.Call) (uintptr, error) { return 0, unix.ENOTTY }
	_, err := MapResource(p, 7, 0, 1, 1, 1)
	if !errors.Is(err, hyp.ErrNotSupported) {
		t.Errorf("MapResource on an old kernel = %v, want ErrNotSupported", err)
	}
}

func TestClosedPrivcmd(t *testing.T) {
	p, k := openPrivcmd(t)
	p.Close()
	if _, err := Map(p, 7, true, []uint64{1}); !errors.Is(err, hyp.ErrClosed) {
		t.Errorf("Map on a closed handle = %v, want ErrClosed", err)
	}
	if _, err := MapResource(p, 7, 0, 1, 0, 1); !errors.Is(err, hyp.ErrClosed) {
		t.Errorf("MapResource on a closed handle = %v, want ErrClosed", err)
	}
	if n := k.Mapped(); n != 0 {
		t.Errorf("%d mappings left", n)
	}
}
