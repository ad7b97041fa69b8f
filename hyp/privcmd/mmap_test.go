package privcmd

import (
	"encoding/binary"
	"errors"
	"testing"

	"godm/hyp"
	"godm/hyp/internal/kerneltest"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

func mapRegion(t *testing.T, h *Handle, pages int) []byte {
	t.Helper()
	mem, err := h.File().Mmap(0, pages*PageSize, unix.PROT_READ|unix.PROT_WRITE)
	if err != nil {
		t.Fatalf("Mmap: %v", err)
	}
	t.Cleanup(func() { h.File().Munmap(mem) })
	return mem
}

func TestMmapBatch(t *testing.T) {
	k := kerneltest.New()
	h := open(t, k)
	region := mapRegion(t, h, 3)
	k.Reset()
	gfns := []uint64{0x100, 0xdead, 0x102}
	errs := []int32{9, 9, 9}
	if err := h.MmapBatch(7, region, gfns, errs); err != nil {
		t.Fatalf("MmapBatch: %v", err)
	}
	if want := []int32{0, -int32(unix.EINVAL), 0}; errs[0] != want[0] || errs[1] != want[1] || errs[2] != want[2] {
		t.Errorf("errs = %v, want %v", errs, want)
	}
	ev := k.Ioctls(xenabi.IOCTL_PRIVCMD_MMAPBATCH_V2)[0]
	a := ev.Arg.In
	if got := binary.LittleEndian.Uint32(a[0:]); got != 3 {
		t.Errorf("num = %d, want 3", got)
	}
	if got := binary.LittleEndian.Uint16(a[4:]); got != 7 {
		t.Errorf("dom = %d, want 7", got)
	}
	if p := ev.Arg.Ptrs[0]; p.Region != "mmap" || p.RegionOff != 0 {
		t.Errorf("addr points to %s+%d, want the start of the mapping", p.Region, p.RegionOff)
	}
	if got := binary.LittleEndian.Uint64(ev.Bufs[0].In[8:]); got != 0xdead {
		t.Errorf("gfn[1] = %#x, want 0xdead", got)
	}
}

func TestMmapBatchPagedRetry(t *testing.T) {
	// Frames 1 and 2 are paged out on the first call; frame 2 stays paged
	// for one more round. The retries must batch runs of paged frames and
	// point into the right pages of the region.
	k := kerneltest.New()
	h := open(t, k)
	region := mapRegion(t, h, 4)
	k.Reset()
	paged := map[uint64]int{0x201: 1, 0x202: 2}
	k.Script = func(c *kerneltest.Call) (uintptr, error) {
		if c.Req != xenabi.IOCTL_PRIVCMD_MMAPBATCH_V2 {
			return kerneltest.Default(c)
		}
		gfns, errs := c.Buf("gfn array"), c.Buf("err array")
		somePaged := false
		for i := 0; i < len(gfns)/8; i++ {
			g := binary.LittleEndian.Uint64(gfns[i*8:])
			v := int32(0)
			if paged[g] > 0 {
				paged[g]--
				v = -int32(unix.ENOENT)
				somePaged = true
			}
			binary.LittleEndian.PutUint32(errs[i*4:], uint32(v))
		}
		if somePaged {
			return 0, unix.ENOENT
		}
		return 0, nil
	}
	gfns := []uint64{0x200, 0x201, 0x202, 0x203}
	errs := make([]int32, 4)
	if err := h.MmapBatch(7, region, gfns, errs); err != nil {
		t.Fatalf("MmapBatch: %v", err)
	}
	for i, e := range errs {
		if e != 0 {
			t.Errorf("errs[%d] = %d, want 0 after the retries", i, e)
		}
	}
	evs := k.Ioctls(xenabi.IOCTL_PRIVCMD_MMAPBATCH_V2)
	type call struct {
		num     uint32
		first   uint64
		pageOff int64
	}
	want := []call{{4, 0x200, 0}, {2, 0x201, PageSize}, {1, 0x202, 2 * PageSize}}
	if len(evs) != len(want) {
		t.Fatalf("%d MMAPBATCH_V2 calls, want %d", len(evs), len(want))
	}
	for i, ev := range evs {
		got := call{
			num:     binary.LittleEndian.Uint32(ev.Arg.In),
			first:   binary.LittleEndian.Uint64(ev.Bufs[0].In),
			pageOff: ev.Arg.Ptrs[0].RegionOff,
		}
		if got != want[i] {
			t.Errorf("call %d = %+v, want %+v", i, got, want[i])
		}
	}
}

func TestMmapBatchFatal(t *testing.T) {
	k := kerneltest.New()
	h := open(t, k)
	region := mapRegion(t, h, 1)
	k.Script = func(c *kerneltest.Call) (uintptr, error) { return 0, unix.EFAULT }
	err := h.MmapBatch(7, region, []uint64{1}, make([]int32, 1))
	if !errors.Is(err, unix.EFAULT) {
		t.Errorf("MmapBatch = %v, want EFAULT", err)
	}
}

func TestMmapBatchBadArgs(t *testing.T) {
	h := open(t, kerneltest.New())
	region := mapRegion(t, h, 2)
	tests := []struct {
		name   string
		region []byte
		gfns   []uint64
		errs   []int32
	}{
		{"no frames", region, nil, nil},
		{"too many frames", region, make([]uint64, MaxBatch+1), make([]int32, MaxBatch+1)},
		{"short errs", region, []uint64{1, 2}, make([]int32, 1)},
		{"short region", region[:PageSize], []uint64{1, 2}, make([]int32, 2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := h.MmapBatch(7, tt.region, tt.gfns, tt.errs); !errors.Is(err, unix.EINVAL) {
				t.Errorf("MmapBatch = %v, want EINVAL", err)
			}
		})
	}
}

func TestResource(t *testing.T) {
	k := kerneltest.New()
	h := open(t, k)
	n, err := h.ResourceSize(7, xenabi.XENMEM_resource_ioreq_server, 1)
	if err != nil || n != 2 {
		t.Fatalf("ResourceSize = %d, %v; want 2, nil", n, err)
	}
	q := k.Ioctls(xenabi.IOCTL_PRIVCMD_MMAP_RESOURCE)[0]
	want := []byte{7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if string(q.Arg.In) != string(want) {
		t.Errorf("size query = %s, want %s", hexBytes(q.Arg.In), hexBytes(want))
	}
	region := mapRegion(t, h, 2)
	k.Reset()
	if err := h.MmapResource(7, xenabi.XENMEM_resource_ioreq_server, 1, 1, region); err != nil {
		t.Fatalf("MmapResource: %v", err)
	}
	ev := k.Ioctls(xenabi.IOCTL_PRIVCMD_MMAP_RESOURCE)[0]
	a := ev.Arg.In
	if binary.LittleEndian.Uint32(a[12:]) != 1 || binary.LittleEndian.Uint64(a[16:]) != 2 {
		t.Errorf("arg = %s, want idx 1 num 2", hexBytes(a))
	}
	if p := ev.Arg.Ptrs[0]; p.Off != 24 || p.Region != "mmap" {
		t.Errorf("addr pointer %+v, want at 24 into the mapping", p)
	}
}

func TestResourceNotSupported(t *testing.T) {
	for _, errno := range []unix.Errno{unix.ENOTTY, unix.EOPNOTSUPP} {
		k := kerneltest.New()
		h := open(t, k)
		k.Script = func(c *kerneltest.Call) (uintptr, error) { return 0, errno }
		region := mapRegion(t, h, 1)
		err := h.MmapResource(7, 0, 1, 0, region)
		if !errors.Is(err, hyp.ErrNotSupported) || !errors.Is(err, errno) {
			t.Errorf("MmapResource with %v = %v, want ErrNotSupported and the errno", errno, err)
		}
	}
}

func TestMmapResourceBadArgs(t *testing.T) {
	h := open(t, kerneltest.New())
	for _, n := range []int{0, 100, PageSize + 1} {
		if err := h.MmapResource(7, 0, 0, 0, make([]byte, n)); !errors.Is(err, unix.EINVAL) {
			t.Errorf("MmapResource of %d bytes = %v, want EINVAL", n, err)
		}
	}
}

func TestIRQFD(t *testing.T) {
	k := kerneltest.New()
	h := open(t, k)
	op := make([]byte, DMOpSize)
	op[0] = xenabi.XEN_DMOP_set_irq_level
	if err := h.AssignIRQFD(IRQFD{Dom: 7, Fd: 12, DMOp: op}); err != nil {
		t.Fatalf("AssignIRQFD: %v", err)
	}
	if err := h.DeassignIRQFD(IRQFD{Dom: 7, Fd: 12}); err != nil {
		t.Fatalf("DeassignIRQFD: %v", err)
	}
	evs := k.Ioctls(xenabi.IOCTL_PRIVCMD_IRQFD)
	if len(evs) != 2 {
		t.Fatalf("%d IRQFD ioctls, want 2", len(evs))
	}
	//           dm_op ptr                size        fd          flags       dom  pad
	want0 := "00000000 00000000 20000000 0c000000 00000000 07000000"
	want1 := "00000000 00000000 00000000 0c000000 01000000 07000000"
	if got := hexBytes(maskPtrs(evs[0].Arg.In, 0)); got != want0 {
		t.Errorf("assign arg = %s, want %s", got, want0)
	}
	if got := hexBytes(evs[1].Arg.In); got != want1 {
		t.Errorf("deassign arg = %s, want %s", got, want1)
	}
	if len(evs[0].Bufs) != 1 || evs[0].Bufs[0].In[0] != xenabi.XEN_DMOP_set_irq_level {
		t.Errorf("assign did not pass the DM op buffer: %+v", evs[0].Bufs)
	}
}

func TestIOEventFD(t *testing.T) {
	k := kerneltest.New()
	h := open(t, k)
	page := mapRegion(t, h, 1)
	k.Reset()
	c := IOEventFD{Dom: 7, IOReqPage: page, Ports: []uint32{40, 41}, Addr: 0x2000_0000, AddrLen: 4, EventFd: 9, VQ: 1}
	if err := h.AssignIOEventFD(c); err != nil {
		t.Fatalf("AssignIOEventFD: %v", err)
	}
	if err := h.DeassignIOEventFD(c); err != nil {
		t.Fatalf("DeassignIOEventFD: %v", err)
	}
	evs := k.Ioctls(xenabi.IOCTL_PRIVCMD_IOEVENTFD)
	if len(evs) != 2 {
		t.Fatalf("%d IOEVENTFD ioctls, want 2", len(evs))
	}
	//      ioreq ptr         ports ptr         addr              len      fd       vcpus    vq       flags    dom+pad
	want := "00000000 00000000 00000000 00000000 00000020 00000000 04000000 09000000 02000000 01000000 00000000 07000000"
	if got := hexBytes(maskPtrs(evs[0].Arg.In, 0, 8)); got != want {
		t.Errorf("assign arg =\n%s, want\n%s", got, want)
	}
	if p := evs[0].Arg.Ptrs[0]; p.Region != "mmap" {
		t.Errorf("ioreq pointer in %s, want the mapping", p.Region)
	}
	if got := hexBytes(evs[0].Bufs[0].In); got != "28000000 29000000" {
		t.Errorf("ports = %s, want 28000000 29000000", got)
	}
	if got := evs[1].Arg.In[40]; got != 1 {
		t.Errorf("deassign flags = %d, want 1", got)
	}
}

// isEventFDProbe reports whether c is the support probe: a deassign of
// eventfd -1 (IRQFD: fd at 12, flags at 16; IOEVENTFD: fd at 28, flags at
// 40) for DOMID_INVALID.
func isEventFDProbe(c *kerneltest.Call) bool {
	fd, flags, dom := 12, 16, 20
	if c.Req == xenabi.IOCTL_PRIVCMD_IOEVENTFD {
		fd, flags, dom = 28, 40, 44
	}
	return binary.LittleEndian.Uint32(c.Arg[fd:]) == 0xffffffff &&
		binary.LittleEndian.Uint32(c.Arg[flags:]) == 1 &&
		binary.LittleEndian.Uint16(c.Arg[dom:]) == xenabi.DOMID_INVALID
}

// TestEventFDNotSupported checks which failures of irqfd and ioeventfd say
// hyp.ErrNotSupported: the unambiguous "unknown request" answers always;
// EINVAL only when the probe (a deassign of eventfd -1) says the kernel
// does not offer the request, so that a supporting kernel's own EINVAL is
// reported as itself.
func TestEventFDNotSupported(t *testing.T) {
	tests := []struct {
		name        string
		call, probe error // the kernel's answers to the request and to the probe
		wantNotSupp bool
		wantProbes  int // probes issued per request over two failing calls
	}{
		{"ENOTTY", unix.ENOTTY, nil, true, 0},
		{"EOPNOTSUPP (built without eventfd)", unix.EOPNOTSUPP, nil, true, 0},
		{"ENOSYS", unix.ENOSYS, nil, true, 0},
		{"EINVAL, probe ENOTTY (Linux < 6.6)", unix.EINVAL, unix.ENOTTY, true, 1},
		{"EINVAL, probe EOPNOTSUPP", unix.EINVAL, unix.EOPNOTSUPP, true, 1},
		{"EINVAL, probe EINVAL", unix.EINVAL, unix.EINVAL, true, 1},
		{"EINVAL, probe EBADF (supported: a real EINVAL)", unix.EINVAL, unix.EBADF, false, 1},
		{"EINVAL, probe EPERM (supported, restricted handle)", unix.EINVAL, unix.EPERM, false, 1},
		{"EINVAL, probe 0 (supported)", unix.EINVAL, nil, false, 1},
		{"EBADF", unix.EBADF, nil, false, 0},
		{"EBUSY", unix.EBUSY, nil, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := kerneltest.New()
			h := open(t, k)
			page := mapRegion(t, h, 1)
			probes := map[uint]int{}
			k.Script = func(c *kerneltest.Call) (uintptr, error) {
				if isEventFDProbe(c) {
					probes[c.Req]++
					return 0, tt.probe
				}
				return 0, tt.call
			}
			for i := 0; i < 2; i++ {
				errs := map[string]error{
					"AssignIRQFD":       h.AssignIRQFD(IRQFD{Dom: 7, Fd: 3, DMOp: make([]byte, DMOpSize)}),
					"AssignIOEventFD":   h.AssignIOEventFD(IOEventFD{Dom: 7, IOReqPage: page, Ports: []uint32{1}, AddrLen: 4, EventFd: 3}),
					"DeassignIRQFD":     h.DeassignIRQFD(IRQFD{Dom: 7, Fd: 3}),
					"DeassignIOEventFD": h.DeassignIOEventFD(IOEventFD{Dom: 7, IOReqPage: page, Ports: []uint32{1}, AddrLen: 4, EventFd: 3}),
				}
				for name, err := range errs {
					if got := errors.Is(err, hyp.ErrNotSupported); got != tt.wantNotSupp || !errors.Is(err, tt.call) {
						t.Errorf("%s = %v; ErrNotSupported %v, want %v, and %v", name, err, got, tt.wantNotSupp, tt.call)
					}
				}
			}
			for _, req := range []uint{xenabi.IOCTL_PRIVCMD_IRQFD, xenabi.IOCTL_PRIVCMD_IOEVENTFD} {
				if probes[req] != tt.wantProbes {
					t.Errorf("request %#x probed %d times, want %d", req, probes[req], tt.wantProbes)
				}
			}
		})
	}
}

// TestEventFDSupported checks IRQFDSupported and IOEventFDSupported: each
// asks the kernel once, with the probe's exact bytes, and classifies the
// answer.
func TestEventFDSupported(t *testing.T) {
	tests := []struct {
		probe       error
		wantOK      bool
		wantNotSupp bool
	}{
		{nil, true, false},
		{unix.EBADF, true, false},
		{unix.EPERM, true, false},
		{unix.ENOTTY, false, true},
		{unix.EOPNOTSUPP, false, true},
		{unix.ENOSYS, false, true},
		{unix.EINVAL, false, true},
		{unix.EFAULT, false, false}, // no kernel answers so: reported as is
	}
	for _, tt := range tests {
		k := kerneltest.New()
		h := open(t, k)
		k.Reset()
		k.Script = func(c *kerneltest.Call) (uintptr, error) { return 0, tt.probe }
		for _, p := range []struct {
			name string
			req  uint
			f    func() error
			want string // the probe's argument struct
		}{
			//                                        dm_op ptr         size     fd       flags    dom+pad
			{"IRQFDSupported", xenabi.IOCTL_PRIVCMD_IRQFD, h.IRQFDSupported, "00000000 00000000 00000000 ffffffff 01000000 f47f0000"},
			//                                                  ioreq ptr         ports ptr         addr              len      fd       vcpus    vq       flags    dom+pad
			{"IOEventFDSupported", xenabi.IOCTL_PRIVCMD_IOEVENTFD, h.IOEventFDSupported, "00000000 00000000 00000000 00000000 00000000 00000000 00000000 ffffffff 00000000 00000000 01000000 f47f0000"},
		} {
			for i := 0; i < 2; i++ {
				err := p.f()
				if (err == nil) != tt.wantOK || errors.Is(err, hyp.ErrNotSupported) != tt.wantNotSupp {
					t.Errorf("%s with probe answer %v = %v; want ok %v, ErrNotSupported %v", p.name, tt.probe, err, tt.wantOK, tt.wantNotSupp)
				}
				if tt.probe != nil && !tt.wantOK && !errors.Is(err, tt.probe) {
					t.Errorf("%s = %v, want it to wrap %v", p.name, err, tt.probe)
				}
			}
			evs := k.Ioctls(p.req)
			if len(evs) != 1 {
				t.Fatalf("%s: %d probes, want 1", p.name, len(evs))
			}
			if got := hexBytes(evs[0].Arg.In); got != p.want {
				t.Errorf("%s probe =\n%s, want\n%s", p.name, got, p.want)
			}
		}
	}
	h := open(t, kerneltest.New())
	h.Close()
	if err := h.IRQFDSupported(); !errors.Is(err, hyp.ErrClosed) {
		t.Errorf("IRQFDSupported on a closed handle = %v, want ErrClosed", err)
	}
}

// TestEventFDSupportedConcurrent checks that concurrent first calls share
// one probe per request and agree on its answer.
func TestEventFDSupportedConcurrent(t *testing.T) {
	k := kerneltest.New()
	h := open(t, k)
	k.Reset()
	k.Script = func(c *kerneltest.Call) (uintptr, error) {
		if c.Req == xenabi.IOCTL_PRIVCMD_IRQFD {
			return 0, unix.EBADF // offered
		}
		return 0, unix.ENOTTY // ioeventfd unknown
	}
	const n = 8
	errs := make(chan [2]error, n)
	for i := 0; i < n; i++ {
		go func() { errs <- [2]error{h.IRQFDSupported(), h.IOEventFDSupported()} }()
	}
	for i := 0; i < n; i++ {
		e := <-errs
		if e[0] != nil || !errors.Is(e[1], hyp.ErrNotSupported) {
			t.Errorf("IRQFDSupported, IOEventFDSupported = %v, %v; want nil, ErrNotSupported", e[0], e[1])
		}
	}
	for _, req := range []uint{xenabi.IOCTL_PRIVCMD_IRQFD, xenabi.IOCTL_PRIVCMD_IOEVENTFD} {
		if got := len(k.Ioctls(req)); got != 1 {
			t.Errorf("request %#x: %d probes, want 1", req, got)
		}
	}
}

func TestEventFDBadArgs(t *testing.T) {
	k := kerneltest.New()
	h := open(t, k)
	page := mapRegion(t, h, 1)
	good := IOEventFD{Dom: 7, IOReqPage: page, Ports: []uint32{1}, AddrLen: 4, EventFd: 3}
	mod := func(f func(*IOEventFD)) IOEventFD { c := good; f(&c); return c }
	bad := map[string]IOEventFD{
		"no page":    mod(func(c *IOEventFD) { c.IOReqPage = nil }),
		"no ports":   mod(func(c *IOEventFD) { c.Ports = nil }),
		"many ports": mod(func(c *IOEventFD) { c.Ports = make([]uint32, 4097) }),
		"len 3":      mod(func(c *IOEventFD) { c.AddrLen = 3 }),
		"wraps":      mod(func(c *IOEventFD) { c.Addr = ^uint64(0) - 1 }),
		"neg fd":     mod(func(c *IOEventFD) { c.EventFd = -1 }),
	}
	k.Reset()
	for name, c := range bad {
		if err := h.AssignIOEventFD(c); !errors.Is(err, unix.EINVAL) {
			t.Errorf("%s: AssignIOEventFD = %v, want EINVAL", name, err)
		}
	}
	for name, c := range map[string]IRQFD{
		"no op":  {Dom: 7, Fd: 3},
		"big op": {Dom: 7, Fd: 3, DMOp: make([]byte, PageSize+1)},
		"neg fd": {Dom: 7, Fd: -1, DMOp: make([]byte, 8)},
	} {
		if err := h.AssignIRQFD(c); !errors.Is(err, unix.EINVAL) {
			t.Errorf("%s: AssignIRQFD = %v, want EINVAL", name, err)
		}
	}
	if n := len(k.Events()); n != 0 {
		t.Errorf("bad arguments reached the kernel: %d events", n)
	}
}
