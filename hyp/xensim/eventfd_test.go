package xensim

import (
	"encoding/binary"
	"testing"
	"time"

	"godm/hyp/kernel"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

func signal(t *testing.T, fd int) {
	t.Helper()
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	if _, err := unix.Write(fd, one[:]); err != nil {
		t.Fatal(err)
	}
}

func TestEventFDsOff(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	pc := mustOpen(t, s.Kernel(0), kernel.Privcmd, 0)
	if err := irqfdIoctl(pc, uint16(d.ID()), 0, []byte{1}, false); !isErrno(err, unix.ENOTTY) {
		t.Errorf("irqfd without Config.EventFDs: %v, want ENOTTY", err)
	}
}

func TestIRQFD(t *testing.T) {
	s, d := newSim(t, Config{EventFDs: true}, stdDomain())
	pc := mustOpen(t, s.Kernel(0), kernel.Privcmd, 0)
	dom := uint16(d.ID())
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	op := make([]byte, 32)
	binary.LittleEndian.PutUint32(op, xenabi.XEN_DMOP_set_isa_irq_level)
	op[8], op[9] = 5, 1
	// Signalled before assignment: injected once assigned.
	signal(t, efd)
	mark := s.LastSeq()
	if err := irqfdIoctl(pc, dom, efd, op, false); err != nil {
		t.Fatal(err)
	}
	isa5 := func(e Event) bool { return e.Kind == EventISAIRQ && e.IRQ == 5 && e.Level }
	e, err := s.WaitEvent(mark, 5*time.Second, isa5)
	if err != nil {
		t.Fatal(err)
	}
	if err := irqfdIoctl(pc, dom, efd, op, false); !isErrno(err, unix.EBUSY) {
		t.Errorf("second assignment: %v, want EBUSY", err)
	}
	signal(t, efd)
	if _, err := s.WaitEvent(e.Seq, 5*time.Second, isa5); err != nil {
		t.Fatal(err)
	}
	if err := irqfdIoctl(pc, dom, efd, op, true); err != nil {
		t.Fatal(err)
	}
	if err := irqfdIoctl(pc, dom, efd, op, true); err != nil {
		t.Errorf("deassign of an unknown eventfd: %v, want 0 as Linux", err)
	}
	if err := irqfdIoctl(pc, dom, 1<<20, op, false); !isErrno(err, unix.EBADF) {
		t.Errorf("bad fd: %v, want EBADF", err)
	}
	if err := rawRestrict(pc, dom+1); err != nil {
		t.Fatal(err)
	}
	if err := irqfdIoctl(pc, dom, efd, op, false); !isErrno(err, unix.EPERM) {
		t.Errorf("restricted to another domain: %v, want EPERM", err)
	}
}

func TestIOEventFD(t *testing.T) {
	s, d := newSim(t, Config{EventFDs: true}, stdDomain())
	dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, func(reqView) uint64 { return 0 })
	dom := uint16(d.ID())
	const base = 0xfe000000 // a virtio-mmio device
	if err := rangeOp(dm.pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_MEMORY, base, base+0xfff); err != nil {
		t.Fatal(err)
	}
	// The kernel takes the first page of the VMA: map the ioreq frame
	// alone.
	page, err := dm.pc.Mmap(0, pageSize, unix.PROT_READ|unix.PROT_WRITE)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rawMmapResource(dm.pc, dom, 0, uint32(dm.id), 1, 1, page); err != nil {
		t.Fatal(err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	ports := append([]uint32(nil), dm.ports...)
	a := &xenabi.PrivcmdIoeventfd{Ioreq: addr(page), Ports: addr32(ports), Addr: base,
		AddrLen: 4, EventFd: uint32(efd), VCPUs: uint32(len(ports)), VQ: 1, Dom: dom}
	if err := ioeventfdIoctl(dm.pc, a); err != nil {
		t.Fatal(err)
	}
	if err := ioeventfdIoctl(dm.pc, a); !isErrno(err, unix.EBUSY) {
		t.Errorf("same eventfd twice: %v, want EBUSY", err)
	}
	bad := *a
	bad.AddrLen = 3
	if err := ioeventfdIoctl(dm.pc, &bad); !isErrno(err, unix.EINVAL) {
		t.Errorf("length 3: %v, want EINVAL", err)
	}
	v := d.VCPU(1)
	// The QueueNotify write for queue 1 is completed by the kernel.
	if err := v.MMIOWrite(base+0x50, 4, 1); err != nil {
		t.Fatal(err)
	}
	var cnt [8]byte
	if n, err := unix.Read(efd, cnt[:]); err != nil || n != 8 || binary.NativeEndian.Uint64(cnt[:]) != 1 {
		t.Errorf("eventfd after the notify: %d %v %x", n, err, cnt)
	}
	// Other writes (queue 0, other registers) reach the device model.
	if err := v.MMIOWrite(base+0x50, 4, 0); err != nil {
		t.Fatal(err)
	}
	if err := v.MMIOWrite(base+0x70, 4, 1); err != nil {
		t.Fatal(err)
	}
	reqs := dm.requests()
	if len(reqs) != 2 || reqs[0].addr != base+0x50 || reqs[0].data != 0 || reqs[1].addr != base+0x70 {
		t.Errorf("DM saw %+v, want the two unmatched writes", reqs)
	}
	if _, err := unix.Read(efd, cnt[:]); !isErrno(err, unix.EAGAIN) {
		t.Errorf("eventfd signalled by unmatched writes: %v", err)
	}
	// The DM may unmap its view; the kernel keeps its own.
	if err := dm.pc.Munmap(page); err != nil {
		t.Fatal(err)
	}
	if err := v.MMIOWrite(base+0x50, 4, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Read(efd, cnt[:]); err != nil {
		t.Errorf("eventfd after unmapping the DM's view: %v", err)
	}
	a.Flags = xenabi.PRIVCMD_IOEVENTFD_FLAG_DEASSIGN
	if err := ioeventfdIoctl(dm.pc, a); err != nil {
		t.Fatal(err)
	}
	if err := ioeventfdIoctl(dm.pc, a); !isErrno(err, unix.ENODEV) {
		t.Errorf("deassign twice: %v, want ENODEV", err)
	}
	if err := v.MMIOWrite(base+0x50, 4, 1); err != nil {
		t.Fatal(err)
	}
	if n := len(dm.requests()); n != 3 {
		t.Errorf("after deassign the DM saw %d requests, want 3", n)
	}
}
