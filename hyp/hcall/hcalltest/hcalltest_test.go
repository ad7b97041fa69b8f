package hcalltest_test

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"godm/hyp/hcall/hcalltest"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

func open(t *testing.T) (*hcalltest.Kernel, *privcmd.Handle) {
	t.Helper()
	k := hcalltest.New()
	p, err := privcmd.Open(k)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return k, p
}

// TestPointerOutsideHypercallBuffer: an argument in ordinary Go memory
// (which Xen cannot rely on) is recorded as a "user" pointer with no
// buffer, so a golden comparison fails on it.
func TestPointerOutsideHypercallBuffer(t *testing.T) {
	k, p := open(t)
	param := make([]byte, 16)
	addr := uint64(reflect.ValueOf(param).Pointer())
	if _, err := p.Hypercall(xenabi.HYPERVISOR_hvm_op, [5]uint64{xenabi.HVMOP_get_param, addr}); err != nil {
		t.Fatal(err)
	}
	ev := k.LastHypercall(t)
	if len(ev.Arg.Ptrs) != 1 {
		t.Fatalf("pointers = %+v, want 1", ev.Arg.Ptrs)
	}
	if got := ev.Arg.Ptrs[0]; got.Region != "user" || got.Buf != -1 {
		t.Errorf("pointer = %+v, want region user and no buffer", got)
	}
	if len(ev.Bufs) != 0 {
		t.Errorf("%d buffers recorded, want 0", len(ev.Bufs))
	}
}

// TestMulticallShaping: a multicall's entries are followed into their
// sub-op structures and answered one by one.
func TestMulticallShaping(t *testing.T) {
	k, p := open(t)
	b, err := p.Buffers().Alloc(4096)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Free()
	mem, base := b.Bytes(), b.Addr()
	le := binary.LittleEndian
	// Two entries: xen_version(XENVER_version) and an unknown op.
	le.PutUint64(mem[0:], xenabi.HYPERVISOR_xen_version)
	le.PutUint64(mem[64:], 999)
	if _, err := p.Hypercall(xenabi.HYPERVISOR_multicall, [5]uint64{base, 2}); err != nil {
		t.Fatal(err)
	}
	if got, want := le.Uint64(mem[8:]), uint64(hcalltest.FakeXenMajor<<16|hcalltest.FakeXenMinor); got != want {
		t.Errorf("entry 0 result = %#x, want %#x", got, want)
	}
	if got, want := int64(le.Uint64(mem[72:])), -int64(unix.ENOSYS); got != want {
		t.Errorf("entry 1 result = %d, want %d", got, want)
	}
	ev := k.LastHypercall(t)
	if len(ev.Bufs) != 1 || ev.Bufs[0].Name != "multicall_entry array" || ev.Bufs[0].Len != 128 {
		t.Fatalf("buffers = %+v, want the 128-byte entry array", ev.Bufs)
	}
	if got := ev.Bufs[0].Ptrs; len(got) != 1 || got[0].Region != "null" {
		t.Errorf("entry pointers = %+v, want entry 0's NULL argument", got)
	}
}

func TestFail(t *testing.T) {
	k, p := open(t)
	k.FailOp, k.FailErrno = xenabi.HYPERVISOR_xen_version, unix.EPERM
	_, err := p.Hypercall(xenabi.HYPERVISOR_xen_version, [5]uint64{})
	if !errors.Is(err, unix.EPERM) {
		t.Errorf("err = %v, want EPERM", err)
	}
	if got := k.LastHypercall(t).Ret; got != -int64(unix.EPERM) {
		t.Errorf("recorded ret = %d, want %d", got, -int64(unix.EPERM))
	}
	k.ResetHypercalls()
	if got := len(k.Hypercalls()); got != 0 {
		t.Errorf("%d hypercalls after reset, want 0", got)
	}
}
