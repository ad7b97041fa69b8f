package privcmd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"testing"

	"godm/hyp"
	"godm/hyp/internal/kerneltest"
	"godm/hyp/kernel"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

func open(t *testing.T, k *kerneltest.Kernel) *Handle {
	t.Helper()
	h, err := Open(k)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func hexBytes(b []byte) string {
	var out []byte
	for i, c := range b {
		if i > 0 && i%4 == 0 {
			out = append(out, ' ')
		}
		out = append(out, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
	}
	return string(out)
}

func TestOpenProbesDMOp(t *testing.T) {
	k := kerneltest.New()
	open(t, k)
	evs := k.Events()
	if len(evs) != 2 {
		t.Fatalf("got %d events, want open + DM_OP probe", len(evs))
	}
	if got, want := evs[0].Kind, "open"; got != want || evs[0].Dev != kernel.Privcmd {
		t.Errorf("event 0 = %s %v, want open privcmd", got, evs[0].Dev)
	}
	probe := evs[1]
	if probe.Req != xenabi.IOCTL_PRIVCMD_DM_OP {
		t.Fatalf("event 1 request %#x, want DM_OP", probe.Req)
	}
	// dom = DOMID_INVALID, num = 0, ubufs = NULL.
	want := []byte{0xf4, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if !bytes.Equal(probe.Arg.In, want) {
		t.Errorf("probe arg = %s, want %s", hexBytes(probe.Arg.In), hexBytes(want))
	}
	if len(probe.Bufs) != 0 {
		t.Errorf("probe followed %d buffers, want none", len(probe.Bufs))
	}
}

func TestNoDMOpKernel(t *testing.T) {
	k := kerneltest.New()
	k.Script = func(c *kerneltest.Call) (uintptr, error) {
		if c.Req == xenabi.IOCTL_PRIVCMD_DM_OP {
			return 0, unix.ENOTTY
		}
		return kerneltest.Default(c)
	}
	h := open(t, k)
	err := h.DMOp(7, make([]byte, DMOpSize))
	if !errors.Is(err, hyp.ErrNotSupported) {
		t.Errorf("DMOp on a kernel without DM_OP: %v, want ErrNotSupported", err)
	}
	if got := k.Count(xenabi.IOCTL_PRIVCMD_DM_OP); got != 1 {
		t.Errorf("DM_OP issued %d times, want only the probe", got)
	}
	if err := h.Do(7, NewDMCall()); !errors.Is(err, hyp.ErrNotSupported) {
		t.Errorf("Do on a kernel without DM_OP: %v, want ErrNotSupported", err)
	}
}

func TestProbeOtherErrorKeepsDMOp(t *testing.T) {
	k := kerneltest.New()
	k.Script = func(c *kerneltest.Call) (uintptr, error) {
		if c.Req == xenabi.IOCTL_PRIVCMD_DM_OP && binary.LittleEndian.Uint16(c.Arg[2:]) == 0 {
			return 0, unix.EPERM
		}
		return kerneltest.Default(c)
	}
	h := open(t, k)
	if err := h.DMOp(7, make([]byte, DMOpSize)); err != nil {
		t.Errorf("DMOp after an EPERM probe: %v, want nil", err)
	}
}

func TestHypercall(t *testing.T) {
	tests := []struct {
		name    string
		ret     uintptr
		err     error
		wantErr error
	}{
		{"ok", 0x40011, nil, nil},
		{"eperm", 0, unix.EPERM, unix.EPERM},
		{"enosys", 0, unix.ENOSYS, unix.ENOSYS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := kerneltest.New()
			k.Script = func(c *kerneltest.Call) (uintptr, error) { return tt.ret, tt.err }
			h := open(t, k)
			k.Reset()
			r, err := h.Hypercall(xenabi.HYPERVISOR_xen_version, [5]uint64{0, 0, 3, 4, 0x0123456789abcdef})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Hypercall error = %v, want %v", err, tt.wantErr)
			}
			if err == nil && r != tt.ret {
				t.Errorf("Hypercall = %#x, want %#x", r, tt.ret)
			}
			evs := k.Ioctls(xenabi.IOCTL_PRIVCMD_HYPERCALL)
			if len(evs) != 1 {
				t.Fatalf("%d hypercall ioctls, want 1", len(evs))
			}
			want := make([]byte, 48)
			binary.LittleEndian.PutUint64(want[0:], 17)
			binary.LittleEndian.PutUint64(want[24:], 3)
			binary.LittleEndian.PutUint64(want[32:], 4)
			binary.LittleEndian.PutUint64(want[40:], 0x0123456789abcdef)
			if !bytes.Equal(evs[0].Arg.In, want) {
				t.Errorf("arg = %s\nwant %s", hexBytes(evs[0].Arg.In), hexBytes(want))
			}
		})
	}
}

func TestHypercallWithBuffer(t *testing.T) {
	k := kerneltest.New()
	k.Script = func(c *kerneltest.Call) (uintptr, error) {
		if c.Req == xenabi.IOCTL_PRIVCMD_HYPERCALL {
			copy(c.Buf("xen_version arg"), ".7\x00")
		}
		return kerneltest.Default(c)
	}
	h := open(t, k)
	b, err := h.Buffers().Alloc(16)
	if err != nil {
		t.Fatalf("Alloc: %v", err)
	}
	defer b.Free()
	if _, err := h.Hypercall(xenabi.HYPERVISOR_xen_version, [5]uint64{1, b.Addr()}); err != nil {
		t.Fatalf("Hypercall: %v", err)
	}
	if got := string(b.Bytes()[:2]); got != ".7" {
		t.Errorf("buffer after hypercall = %q, want %q", got, ".7")
	}
	ev := k.Ioctls(xenabi.IOCTL_PRIVCMD_HYPERCALL)[0]
	if len(ev.Arg.Ptrs) != 1 || ev.Arg.Ptrs[0].Region != "hypercall" || ev.Arg.Ptrs[0].Off != 16 {
		t.Errorf("pointer fields = %+v, want one at 16 into the hypercall buffers", ev.Arg.Ptrs)
	}
}

func TestDMOpEncoding(t *testing.T) {
	k := kerneltest.New()
	h := open(t, k)
	k.Reset()
	op := make([]byte, DMOpSize)
	op[0] = xenabi.XEN_DMOP_create_ioreq_server
	op[8] = 2
	extra := []byte{1, 2, 3}
	if err := h.DMOp(7, op, extra); err != nil {
		t.Fatalf("DMOp: %v", err)
	}
	if got, want := binary.LittleEndian.Uint16(op[12:]), uint16(1); got != want {
		t.Errorf("OUT id = %d, want %d", got, want)
	}
	ev := k.Ioctls(xenabi.IOCTL_PRIVCMD_DM_OP)[0]
	wantArg := []byte{7, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if got := ev.Arg.In; !bytes.Equal(maskPtrs(got, 8), wantArg) {
		t.Errorf("arg = %s, want %s", hexBytes(got), hexBytes(wantArg))
	}
	if len(ev.Bufs) != 3 {
		t.Fatalf("%d buffers, want array + 2", len(ev.Bufs))
	}
	if got := ev.Bufs[0].In; binary.LittleEndian.Uint64(got[8:]) != DMOpSize || binary.LittleEndian.Uint64(got[24:]) != 3 {
		t.Errorf("privcmd_dm_op_buf array = %s, want sizes 32 and 3", hexBytes(got))
	}
	if !bytes.Equal(ev.Bufs[2].In, extra) {
		t.Errorf("second buffer = %x, want %x", ev.Bufs[2].In, extra)
	}
}

func maskPtrs(b []byte, offs ...int) []byte {
	m := append([]byte(nil), b...)
	for _, o := range offs {
		clear(m[o : o+8])
	}
	return m
}

func TestDMOpBadArgs(t *testing.T) {
	h := open(t, kerneltest.New())
	if err := h.DMOp(7); !errors.Is(err, unix.EINVAL) {
		t.Errorf("DMOp without buffers = %v, want EINVAL", err)
	}
	if err := h.DMOp(7, make([][]byte, MaxDMOpBufs+1)...); !errors.Is(err, unix.EINVAL) {
		t.Errorf("DMOp with too many buffers = %v, want EINVAL", err)
	}
}

func TestDoNil(t *testing.T) {
	h := open(t, kerneltest.New())
	if err := h.Do(7, nil); !errors.Is(err, unix.EINVAL) {
		t.Errorf("Do(nil) = %v, want EINVAL", err)
	}
}

func TestDMOpErrorWrapped(t *testing.T) {
	k := kerneltest.New()
	h := open(t, k)
	k.Script = func(c *kerneltest.Call) (uintptr, error) { return 0, unix.ESRCH }
	err := h.DMOp(9, make([]byte, DMOpSize))
	if !errors.Is(err, unix.ESRCH) {
		t.Fatalf("DMOp = %v, want ESRCH", err)
	}
	if got, want := err.Error(), "privcmd: dm_op dom9: no such process"; got != want {
		t.Errorf("error text = %q, want %q", got, want)
	}
}

func TestRestrict(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantErr    error
		notSupport bool
	}{
		{"ok", nil, nil, false},
		{"eperm", unix.EPERM, unix.EPERM, false},
		{"old kernel", unix.ENOTTY, unix.ENOTTY, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := kerneltest.New()
			h := open(t, k)
			k.Script = func(c *kerneltest.Call) (uintptr, error) { return 0, tt.err }
			err := h.Restrict(0x1234)
			if (err == nil) != (tt.wantErr == nil) || !errors.Is(err, tt.wantErr) {
				t.Fatalf("Restrict = %v, want %v", err, tt.wantErr)
			}
			if got := errors.Is(err, hyp.ErrNotSupported); got != tt.notSupport {
				t.Errorf("errors.Is(ErrNotSupported) = %v, want %v", got, tt.notSupport)
			}
			ev := k.Ioctls(xenabi.IOCTL_PRIVCMD_RESTRICT)[0]
			if want := []byte{0x34, 0x12}; !bytes.Equal(ev.Arg.In, want) {
				t.Errorf("arg = %x, want %x", ev.Arg.In, want)
			}
		})
	}
}

func TestClosed(t *testing.T) {
	k := kerneltest.New()
	h, err := Open(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	region := make([]byte, PageSize)
	checks := map[string]error{
		"Hypercall": func() error { _, err := h.Hypercall(1, [5]uint64{}); return err }(),
		"DMOp":      h.DMOp(1, make([]byte, DMOpSize)),
		"Do":        h.Do(1, NewDMCall()),
		"Restrict":  h.Restrict(1),
		"MmapBatch": h.MmapBatch(1, region, []uint64{1}, make([]int32, 1)),
		"ResourceSize": func() error {
			_, err := h.ResourceSize(1, 0, 0)
			return err
		}(),
		"MmapResource":    h.MmapResource(1, 0, 0, 0, region),
		"AssignIRQFD":     h.AssignIRQFD(IRQFD{Dom: 1, Fd: 3, DMOp: make([]byte, DMOpSize)}),
		"AssignIOEventFD": h.AssignIOEventFD(IOEventFD{Dom: 1, IOReqPage: region, Ports: []uint32{1}, AddrLen: 4, EventFd: 3}),
		"Alloc": func() error {
			_, err := h.Buffers().Alloc(1)
			return err
		}(),
	}
	for name, err := range checks {
		if !errors.Is(err, hyp.ErrClosed) {
			t.Errorf("%s on a closed handle = %v, want ErrClosed", name, err)
		}
	}
}

func TestOpenMissing(t *testing.T) {
	k := kerneltest.New()
	k.Missing(kernel.Privcmd)
	if _, err := Open(k); err == nil {
		t.Fatal("Open without privcmd: got nil error")
	}
}

func TestDoZeroAlloc(t *testing.T) {
	k := kerneltest.New()
	h := open(t, k)
	k.SetQuiet(true)
	c := NewDMCall()
	c.Op[0] = xenabi.XEN_DMOP_set_isa_irq_level
	allocs := testing.AllocsPerRun(1000, func() {
		if err := h.Do(7, c); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Do allocates %v times per call, want 0", allocs)
	}
}

func TestOpenHostWithoutXen(t *testing.T) {
	_, err := Open(kernel.Host{DevDir: t.TempDir()})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open on a host without Xen = %v, want fs.ErrNotExist", err)
	}
}
