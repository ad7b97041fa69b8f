package kerneltest_test

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"testing"

	"godm/hyp/internal/golden"
	"godm/hyp/internal/kerneltest"
	"godm/hyp/kernel"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

func openPrivcmd(t *testing.T, k *kerneltest.Kernel) *privcmd.Handle {
	t.Helper()
	p, err := privcmd.Open(k)
	if err != nil {
		t.Fatalf("privcmd.Open: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestHypercallShapes checks the fake's reading of hypercall arguments
// (pointers into hypercall buffers, followed by sub-op) and its answers
// against libxenctrl captures.
func TestHypercallShapes(t *testing.T) {
	tests := []struct {
		fixture string
		op      uint64
		a0      uint64
		buf     []byte // hypercall buffer passed as arg[1], or nil
		want    uintptr
	}{
		{"xc_version", xenabi.HYPERVISOR_xen_version, 0, nil, 4<<16 | 17},
		{"xc_version_extraversion", xenabi.HYPERVISOR_xen_version, 1, make([]byte, 16), 0},
		// struct xen_hvm_param { domid 7, index HVM_PARAM_STORE_EVTCHN (2) }
		{"xc_hvm_param_get", xenabi.HYPERVISOR_hvm_op, 1, []byte{7, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			f := golden.Load(t, tt.fixture)
			k := kerneltest.New()
			p := openPrivcmd(t, k)
			args := [5]uint64{tt.a0}
			if tt.buf != nil {
				b, err := p.Buffers().Alloc(len(tt.buf))
				if err != nil {
					t.Fatalf("Alloc: %v", err)
				}
				defer b.Free()
				copy(b.Bytes(), tt.buf)
				args[1] = b.Addr()
			}
			r, err := p.Hypercall(tt.op, args)
			if err != nil || r != tt.want {
				t.Fatalf("Hypercall = %#x, %v; want %#x", r, err, tt.want)
			}
			kerneltest.CheckIoctl(t, k.LastIoctl(t, xenabi.IOCTL_PRIVCMD_HYPERCALL), f.Ioctl(t, xenabi.IOCTL_PRIVCMD_HYPERCALL))
		})
	}
}

// TestCompareDetects makes sure the golden comparison is not vacuous:
// every kind of difference is reported.
func TestCompareDetects(t *testing.T) {
	f := golden.Load(t, "dm_create_ioreq_server")
	k := kerneltest.New()
	p := openPrivcmd(t, k)
	op := make([]byte, privcmd.DMOpSize)
	op[0] = xenabi.XEN_DMOP_create_ioreq_server
	op[8] = xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC
	if err := p.DMOp(7, op); err != nil {
		t.Fatalf("DMOp: %v", err)
	}
	got := k.LastIoctl(t, xenabi.IOCTL_PRIVCMD_DM_OP)
	want := f.Ioctl(t, xenabi.IOCTL_PRIVCMD_DM_OP)
	if errs := kerneltest.CompareIoctl(got, want); len(errs) != 0 {
		t.Fatalf("identical call differs: %v", errs)
	}
	mutations := map[string]func(e *golden.Event){
		"request":  func(e *golden.Event) { e.Req++ },
		"device":   func(e *golden.Event) { e.Dev = "evtchn" },
		"result":   func(e *golden.Event) { e.Ret = -1 },
		"arg byte": func(e *golden.Event) { e.Arg.Hex = "08000100 00000000 00000000 00000000" },
		"op byte": func(e *golden.Event) {
			e.Buffers[1].Hex = "01000000 00000000 01000000 00000000 00000000 00000000 00000000 00000000"
		},
		"out byte": func(e *golden.Event) {
			e.Buffers[1].Out = "01000000 00000000 02000000 02000000 00000000 00000000 00000000 00000000"
		},
		"buffer count": func(e *golden.Event) { e.Buffers = e.Buffers[:1] },
		"length":       func(e *golden.Event) { e.Buffers[1].Len = 24 },
		"ptr region":   func(e *golden.Event) { e.Arg.Ptrs = []golden.Ptr{{Off: 8, Buf: 0, Region: golden.RegionHypercall}} },
		"ptr count":    func(e *golden.Event) { e.Arg.Ptrs = nil },
	}
	for name, mutate := range mutations {
		w := cloneEvent(want)
		mutate(w)
		if errs := kerneltest.CompareIoctl(got, w); len(errs) == 0 {
			t.Errorf("%s: difference not reported", name)
		}
	}
}

func cloneEvent(e *golden.Event) *golden.Event {
	c := *e
	if e.Arg != nil {
		a := *e.Arg
		a.Ptrs = append([]golden.Ptr(nil), e.Arg.Ptrs...)
		c.Arg = &a
	}
	c.Buffers = append([]golden.Buffer(nil), e.Buffers...)
	return &c
}

func TestCompareEvent(t *testing.T) {
	k := kerneltest.New()
	f, err := k.Open(kernel.Evtchn, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{17, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	evs := k.Events()
	want := golden.Load(t, "evtchn_unmask").Events[0]
	if errs := kerneltest.CompareEvent(evs[1], &want); len(errs) != 0 {
		t.Errorf("same write differs: %v", errs)
	}
	want.Data = "12000000"
	if errs := kerneltest.CompareEvent(evs[1], &want); len(errs) == 0 {
		t.Errorf("different data not reported")
	}
	open := golden.Load(t, "evtchn_open").Events[0]
	if errs := kerneltest.CompareEvent(evs[0], &open); len(errs) != 0 {
		t.Errorf("same open differs: %v", errs)
	}
}

func TestQuiet(t *testing.T) {
	k := kerneltest.New()
	p := openPrivcmd(t, k)
	k.Reset()
	k.SetQuiet(true)
	c := privcmd.NewDMCall()
	binary.LittleEndian.PutUint32(c.Op[:], xenabi.XEN_DMOP_nr_vcpus)
	if err := p.Do(7, c); err != nil {
		t.Fatalf("Do: %v", err)
	}
	if got := binary.LittleEndian.Uint32(c.Op[8:]); got != 4 {
		t.Errorf("quiet default nr_vcpus = %d, want 4", got)
	}
	if n := len(k.Events()); n != 0 {
		t.Errorf("quiet mode recorded %d events", n)
	}
	if n := k.Count(xenabi.IOCTL_PRIVCMD_DM_OP); n != 1 {
		t.Errorf("Count = %d, want 1", n)
	}
}

func TestFileErrors(t *testing.T) {
	k := kerneltest.New()
	k.Missing(kernel.Hypercall)
	if _, err := k.Open(kernel.Hypercall, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a missing device = %v, want fs.ErrNotExist", err)
	}
	f, err := k.Open(kernel.Privcmd, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Munmap(make([]byte, 4096)); !errors.Is(err, unix.EINVAL) {
		t.Errorf("Munmap of foreign memory = %v, want EINVAL", err)
	}
	if _, err := f.Mmap(0, 0, unix.PROT_READ); !errors.Is(err, unix.EINVAL) {
		t.Errorf("Mmap of 0 bytes = %v, want EINVAL", err)
	}
	mem, err := f.Mmap(0, 4096, unix.PROT_READ)
	if err != nil {
		t.Fatal(err)
	}
	if a := binary.LittleEndian.Uint64(mem[:8]); a != 0 {
		t.Errorf("fresh mapping not zeroed")
	}
	if _, err := f.Ioctl(0x1234, nil); !errors.Is(err, unix.ENOTTY) {
		t.Errorf("unknown ioctl = %v, want ENOTTY", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Ioctl(xenabi.IOCTL_EVTCHN_RESET, nil); !errors.Is(err, unix.EBADF) {
		t.Errorf("Ioctl after Close = %v, want EBADF", err)
	}
	if _, err := f.Read(make([]byte, 4)); !errors.Is(err, unix.EBADF) {
		t.Errorf("Read after Close = %v, want EBADF", err)
	}
	if err := f.Munmap(mem); err != nil {
		t.Errorf("Munmap after Close = %v, want nil (mappings outlive the file)", err)
	}
	if n := k.Mapped(); n != 0 {
		t.Errorf("%d mappings left", n)
	}
}
