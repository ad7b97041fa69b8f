package xensim

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"testing"

	"godm/hyp"
	"godm/hyp/kernel"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

func TestMmapBatch(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	pc := mustOpen(t, s.Kernel(0), kernel.Privcmd, 0)
	dom := uint16(d.ID())
	d.WriteRAM(0x3000, []byte("page three"))
	d.WriteRAM(0x100000, []byte("high memory"))
	region, err := pc.Mmap(0, 4*pageSize, unix.PROT_READ|unix.PROT_WRITE)
	if err != nil {
		t.Fatal(err)
	}
	// Not the whole VMA on the first call: EINVAL.
	if _, err := rawMmapBatch(pc, dom, region, []uint64{3}); !isErrno(err, unix.EINVAL) {
		t.Fatalf("partial first map: %v, want EINVAL", err)
	}
	// gfn 0xa0 is in the VGA hole, 0x5000 beyond RAM.
	errs, err := rawMmapBatch(pc, dom, region, []uint64{3, 0xa0, 0x100, 0x5000})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int32{0, -int32(unix.EINVAL), 0, -int32(unix.EINVAL)}; !equalInts(errs, want) {
		t.Errorf("per-page errors %v, want %v", errs, want)
	}
	if !bytes.HasPrefix(region[:pageSize], []byte("page three")) || !bytes.HasPrefix(region[2*pageSize:], []byte("high memory")) {
		t.Errorf("mapped pages do not show guest RAM")
	}
	// Writes through the mapping reach the guest.
	copy(region[10:], "!")
	b := make([]byte, 11)
	d.ReadRAM(0x3000, b)
	if string(b) != "page three!" {
		t.Errorf("guest sees %q", b)
	}
	// Holes may be filled later; mapped pages may not be remapped.
	if errs, err := rawMmapBatch(pc, dom, region[pageSize:2*pageSize], []uint64{4}); err != nil || errs[0] != 0 {
		t.Errorf("fill hole: %v %v", errs, err)
	}
	if _, err := rawMmapBatch(pc, dom, region[2*pageSize:3*pageSize], []uint64{5}); !isErrno(err, unix.EINVAL) {
		t.Errorf("remap a mapped page: %v, want EINVAL", err)
	}
	if _, err := rawMmapBatch(pc, dom, region, nil); !isErrno(err, unix.EINVAL) {
		t.Errorf("zero pages: %v, want EINVAL", err)
	}
	other := make([]byte, pageSize)
	if _, err := rawMmapBatch(pc, dom, other, []uint64{3}); !isErrno(err, unix.EINVAL) {
		t.Errorf("outside a privcmd VMA: %v, want EINVAL", err)
	}
	r2, _ := pc.Mmap(0, pageSize, unix.PROT_READ)
	if errs, err := rawMmapBatch(pc, 99, r2, []uint64{3}); err != nil || errs[0] != -int32(unix.ESRCH) {
		t.Errorf("missing domain: %v %v, want per-page ESRCH", errs, err)
	}
	if err := pc.Munmap(region); err != nil {
		t.Fatal(err)
	}
	if err := pc.Munmap(r2); err != nil {
		t.Fatal(err)
	}
}

func equalInts(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRestrict(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	d2, err := s.CreateDomain(DomainConfig{VCPUs: 1, RAM: []Region{{0, 0x10000}}})
	if err != nil {
		t.Fatal(err)
	}
	pc := mustOpen(t, s.Kernel(0), kernel.Privcmd, 0)
	dom := uint16(d.ID())
	if err := rawRestrict(pc, dom); err != nil {
		t.Fatal(err)
	}
	if err := rawRestrict(pc, dom); err != nil {
		t.Errorf("restrict again to the same domain: %v", err)
	}
	if err := rawRestrict(pc, uint16(d2.ID())); !isErrno(err, unix.EINVAL) {
		t.Errorf("restrict to another domain: %v, want EINVAL", err)
	}
	if _, err := dmop(pc, dom, xenabi.XEN_DMOP_nr_vcpus, nil); err != nil {
		t.Errorf("DM op on the restricted domain: %v", err)
	}
	if _, err := dmop(pc, uint16(d2.ID()), xenabi.XEN_DMOP_nr_vcpus, nil); !isErrno(err, unix.EPERM) {
		t.Errorf("DM op on another domain: %v, want EPERM", err)
	}
	if _, err := rawHypercall(pc, xenabi.HYPERVISOR_xen_version, 0); !isErrno(err, unix.EPERM) {
		t.Errorf("hypercall when restricted: %v, want EPERM", err)
	}
	r, _ := pc.Mmap(0, pageSize, unix.PROT_READ)
	if _, err := rawMmapBatch(pc, uint16(d2.ID()), r, []uint64{0}); !isErrno(err, unix.EPERM) {
		t.Errorf("foreign map of another domain: %v, want EPERM", err)
	}
	if _, err := rawMmapResource(pc, uint16(d2.ID()), 0, 0, 0, 0, nil); !isErrno(err, unix.EPERM) {
		t.Errorf("resource of another domain: %v, want EPERM", err)
	}
}

func TestHypercalls(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	pc := mustOpen(t, s.Kernel(0), kernel.Privcmd, 0)
	hc := mustOpen(t, s.Kernel(0), kernel.Hypercall, 0)
	buf, err := hc.Mmap(0, pageSize, unix.PROT_READ|unix.PROT_WRITE)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := rawHypercall(pc, xenabi.HYPERVISOR_xen_version, 0); err != nil || v != 4<<16|17 {
		t.Errorf("xen_version = %#x, %v", v, err)
	}
	if _, err := rawHypercall(pc, xenabi.HYPERVISOR_xen_version, 1, addr(buf)); err != nil || !bytes.HasPrefix(buf, []byte(".0")) {
		t.Errorf("extraversion = %q, %v", buf[:16], err)
	}
	// HVMOP_set_param then get_param through the buffer.
	param := func(op uint64, index uint32, val uint64) (uint64, error) {
		le.PutUint16(buf, uint16(d.ID()))
		le.PutUint32(buf[4:], index)
		le.PutUint64(buf[8:], val)
		_, err := rawHypercall(pc, xenabi.HYPERVISOR_hvm_op, op, addr(buf))
		return le.Uint64(buf[8:]), err
	}
	if _, err := param(hvmopSetParam, 2, 0xfeffc); err != nil {
		t.Fatal(err)
	}
	if v, err := param(hvmopGetParam, 2, 0); err != nil || v != 0xfeffc {
		t.Errorf("get_param = %#x, %v", v, err)
	}
	if _, err := param(hvmopGetParam, 100, 0); !isErrno(err, unix.EINVAL) {
		t.Errorf("param 100: %v, want EINVAL", err)
	}
	// dm_op as a hypercall: xen_dm_op_buf array in the buffer.
	op := buf[256:288]
	clear(op)
	le.PutUint32(op, xenabi.XEN_DMOP_nr_vcpus)
	le.PutUint64(buf[512:], addr(op))
	le.PutUint64(buf[520:], 32)
	if _, err := rawHypercall(pc, xenabi.HYPERVISOR_dm_op, uint64(d.ID()), 1, addr(buf[512:])); err != nil || le.Uint32(op[8:]) != 2 {
		t.Errorf("dm_op hypercall nr_vcpus = %d, %v", le.Uint32(op[8:]), err)
	}
	if _, err := rawHypercall(pc, xenabi.HYPERVISOR_domctl, addr(buf)); !isErrno(err, unix.EACCES) {
		t.Errorf("domctl with a wrong interface version: %v, want EACCES", err)
	}
	if _, err := rawHypercall(pc, xenabi.HYPERVISOR_sysctl, addr(buf)); !isErrno(err, unix.ENOSYS) {
		t.Errorf("sysctl: %v, want ENOSYS", err)
	}
	if err := rawIoctl(pc, 0x1234, buf); !isErrno(err, unix.ENOTTY) {
		t.Errorf("unknown ioctl: %v, want ENOTTY", err)
	}
	if err := hc.Munmap(buf); err != nil {
		t.Error(err)
	}
}

func TestOpen(t *testing.T) {
	s := New(Config{})
	if _, err := s.Kernel(0).Open(kernel.Xenbus, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("xenbus without opener: %v, want ErrNotExist", err)
	}
	if _, err := s.Kernel(42).Open(kernel.Privcmd, 0); !errors.Is(err, unix.ENXIO) {
		t.Errorf("open from a missing domain: %v, want ENXIO", err)
	}
	called := false
	s.SetDevice(kernel.Xenbus, func(caller hyp.DomID, flags int) (kernel.File, error) {
		called = true
		return s.newEvtchnFile(caller, flags)
	})
	f, err := s.Kernel(0).Open(kernel.Xenbus, 0)
	if err != nil || !called {
		t.Fatalf("custom opener: %v", err)
	}
	_ = f
	s.Close()
	if err := s.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if _, err := s.Kernel(0).Open(kernel.Privcmd, 0); err == nil {
		t.Error("open after close succeeded")
	}
	if _, err := s.CreateDomain(DomainConfig{VCPUs: 1}); !errors.Is(err, hyp.ErrClosed) {
		t.Errorf("create after close: %v", err)
	}
}

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

func TestCloseReleasesEverything(t *testing.T) {
	before := countFDs(t)
	s := New(Config{})
	d, err := s.CreateDomain(stdDomain())
	if err != nil {
		t.Fatal(err)
	}
	dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC, nil)
	_ = dm
	hc := mustOpen(t, s.Kernel(0), kernel.Hypercall, 0)
	if _, err := hc.Mmap(0, pageSize, unix.PROT_READ|unix.PROT_WRITE); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	<-dm.done // the DM loop saw its evtchn file closed
	if after := countFDs(t); after != before {
		t.Errorf("%d fds open after Close, %d before", after, before)
	}
	if err := d.Close(); err != nil {
		t.Errorf("domain close after sim close: %v", err)
	}
	if _, err := d.VCPU(0).In(0x60, 1); !errors.Is(err, hyp.ErrClosed) {
		t.Errorf("access after close: %v", err)
	}
}

// TestMappingsAfterClose: after Sim.Close a device model's views read as
// zeros (no fault) and can still be unmapped.
func TestMappingsAfterClose(t *testing.T) {
	s := New(Config{})
	d, err := s.CreateDomain(stdDomain())
	if err != nil {
		t.Fatal(err)
	}
	pc := mustOpen(t, s.Kernel(0), kernel.Privcmd, 0)
	d.WriteRAM(0x1000, []byte{0xaa})
	region, _ := pc.Mmap(0, pageSize, unix.PROT_READ|unix.PROT_WRITE)
	if _, err := rawMmapBatch(pc, uint16(d.ID()), region, []uint64{1}); err != nil || region[0] != 0xaa {
		t.Fatalf("map: %v, %#x", err, region[0])
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if region[0] != 0 {
		t.Errorf("view after Close reads %#x, want 0", region[0])
	}
	region[1] = 1 // still writable, no fault
	if err := pc.Munmap(region); err != nil {
		t.Errorf("munmap after Close: %v", err)
	}
}
