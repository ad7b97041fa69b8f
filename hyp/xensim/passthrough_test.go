package xensim

import (
	"encoding/binary"
	"testing"

	"godm/hyp/kernel"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// hc is a helper issuing hypercalls whose argument structures live in a
// hypercall buffer.
type hc struct {
	t   *testing.T
	pc  kernel.File
	buf []byte
}

func newHC(t *testing.T, s *Sim, caller uint16) *hc {
	k := s.Kernel(hypDom(caller))
	h := &hc{t: t, pc: mustOpen(t, k, kernel.Privcmd, 0)}
	f := mustOpen(t, k, kernel.Hypercall, 0)
	b, err := f.Mmap(0, 2*pageSize, unix.PROT_READ|unix.PROT_WRITE)
	if err != nil {
		t.Fatal(err)
	}
	h.buf = b
	return h
}

func (h *hc) domctl(cmd uint32, dom uint16, u []byte) ([]byte, error) {
	b := h.buf[:xenabi.XenDomctlSize]
	clear(b)
	binary.LittleEndian.PutUint32(b, cmd)
	binary.LittleEndian.PutUint32(b[4:], xenabi.XEN_DOMCTL_INTERFACE_VERSION_4_17)
	binary.LittleEndian.PutUint16(b[8:], dom)
	copy(b[16:], u)
	_, err := rawHypercall(h.pc, xenabi.HYPERVISOR_domctl, addr(b))
	return b[16:], err
}

func (h *hc) mapPIRQ(dom uint16, typ, index, pirq int32) (int32, error) {
	b := h.buf[:40]
	clear(b)
	binary.LittleEndian.PutUint16(b, dom)
	binary.LittleEndian.PutUint32(b[4:], uint32(typ))
	binary.LittleEndian.PutUint32(b[8:], uint32(index))
	binary.LittleEndian.PutUint32(b[12:], uint32(pirq))
	_, err := rawHypercall(h.pc, xenabi.HYPERVISOR_physdev_op, xenabi.PHYSDEVOP_map_pirq, addr(b))
	return int32(binary.LittleEndian.Uint32(b[12:])), err
}

func TestPassthroughHypercalls(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	stub, _ := s.CreateDomain(DomainConfig{VCPUs: 1})
	h := newHC(t, s, 0)
	sh := newHC(t, s, uint16(stub.ID()))
	dom := uint16(d.ID())
	mark := s.LastSeq()

	// PIRQs.
	gsiPIRQ, err := h.mapPIRQ(dom, xenabi.MAP_PIRQ_TYPE_GSI, 20, 20)
	if err != nil || gsiPIRQ != 20 {
		t.Fatalf("map GSI 20: %d, %v", gsiPIRQ, err)
	}
	if p, err := h.mapPIRQ(dom, xenabi.MAP_PIRQ_TYPE_GSI, 20, 20); err != nil || p != 20 {
		t.Errorf("same mapping again: %d, %v", p, err)
	}
	if _, err := h.mapPIRQ(dom, xenabi.MAP_PIRQ_TYPE_GSI, 21, 20); !isErrno(err, unix.EBUSY) {
		t.Errorf("pirq 20 for another GSI: %v, want EBUSY", err)
	}
	if _, err := h.mapPIRQ(dom, xenabi.MAP_PIRQ_TYPE_GSI, 48, -1); !isErrno(err, unix.EINVAL) {
		t.Errorf("GSI 48: %v, want EINVAL", err)
	}
	msiPIRQ, err := h.mapPIRQ(dom, xenabi.MAP_PIRQ_TYPE_MSI, -1, -1)
	if err != nil || msiPIRQ != nrPIRQs-1 {
		t.Errorf("MSI pirq %d, %v; want %d (allocated from the top)", msiPIRQ, err, nrPIRQs-1)
	}
	if _, err := sh.mapPIRQ(dom, xenabi.MAP_PIRQ_TYPE_GSI, 22, -1); !isErrno(err, unix.EPERM) {
		t.Errorf("map_pirq from a stub that is not the DM: %v, want EPERM", err)
	}
	if _, err := h.mapPIRQ(99, xenabi.MAP_PIRQ_TYPE_GSI, 22, -1); !isErrno(err, unix.ESRCH) {
		t.Errorf("map_pirq for a missing domain: %v, want ESRCH", err)
	}

	// bind_pt_irq needs a mapped PIRQ.
	pci := func(mirq uint32) []byte {
		return union(mirq, uint32(xenabi.PT_IRQ_TYPE_PCI), uint8(0), uint8(5), uint8(1))
	}
	if _, err := h.domctl(xenabi.XEN_DOMCTL_bind_pt_irq, dom, pci(21)); !isErrno(err, unix.EPERM) {
		t.Errorf("bind unmapped pirq: %v, want EPERM", err)
	}
	if _, err := h.domctl(xenabi.XEN_DOMCTL_bind_pt_irq, dom, pci(20)); err != nil {
		t.Errorf("bind_pt_irq: %v", err)
	}
	msi := union(uint32(msiPIRQ), uint32(xenabi.PT_IRQ_TYPE_MSI), uint8(0x41), uint8(0), uint16(0), uint32(0x10000), uint64(0xfebf0000))
	if _, err := h.domctl(xenabi.XEN_DOMCTL_bind_pt_irq, dom, msi); err != nil {
		t.Errorf("bind MSI: %v", err)
	}

	// memory_mapping over a hole; not over RAM; stub without permission.
	mm := func(gfn, mfn, nr uint64, add uint32) []byte { return union(gfn, mfn, nr, add, uint32(0)) }
	if _, err := h.domctl(xenabi.XEN_DOMCTL_memory_mapping, dom, mm(0xf0000, 0xfe000, 4, 1)); !isErrno(err, unix.EPERM) {
		t.Errorf("memory_mapping of frames the guest was not granted: %v, want EPERM", err)
	}
	if _, err := h.domctl(xenabi.XEN_DOMCTL_iomem_permission, dom, union(uint64(0xfe000), uint64(0x200), uint8(1))); err != nil {
		t.Fatalf("iomem_permission: %v", err)
	}
	if _, err := h.domctl(xenabi.XEN_DOMCTL_memory_mapping, dom, mm(0xf0000, 0xfe000, 4, 1)); err != nil {
		t.Fatalf("memory_mapping: %v", err)
	}
	if _, err := h.domctl(xenabi.XEN_DOMCTL_memory_mapping, dom, mm(0xf0000, 0xfe000, 4, 1)); err != nil {
		t.Errorf("the same mapping again: %v", err)
	}
	if _, err := h.domctl(xenabi.XEN_DOMCTL_memory_mapping, dom, mm(0xf0001, 0xfd000, 1, 1)); !isErrno(err, unix.EPERM) {
		t.Errorf("a different mapping over a mapped frame: %v, want EPERM", err)
	}
	// Over RAM: Xen drops the RAM page from the p2m.
	if _, err := h.domctl(xenabi.XEN_DOMCTL_memory_mapping, dom, mm(0x10, 0xfe010, 1, 1)); err != nil {
		t.Errorf("memory_mapping over RAM: %v", err)
	}
	if err := d.ReadRAM(0x10000, make([]byte, 1)); err == nil {
		t.Error("RAM still mapped under a passthrough BAR")
	}
	d.SetDeviceModel(stub.ID())
	if _, err := sh.domctl(xenabi.XEN_DOMCTL_memory_mapping, dom, mm(0xf1000, 0xfe100, 1, 1)); !isErrno(err, unix.EPERM) {
		t.Errorf("stub DM without iomem permission: %v, want EPERM", err)
	}
	if _, err := h.domctl(xenabi.XEN_DOMCTL_iomem_permission, uint16(stub.ID()), union(uint64(0xfe100), uint64(1), uint8(1))); err != nil {
		t.Fatal(err)
	}
	if _, err := sh.domctl(xenabi.XEN_DOMCTL_memory_mapping, dom, mm(0xf1000, 0xfe100, 1, 1)); err != nil {
		t.Errorf("stub DM with permission: %v", err)
	}
	if _, err := sh.domctl(xenabi.XEN_DOMCTL_iomem_permission, dom, union(uint64(0), uint64(1), uint8(1))); !isErrno(err, unix.EPERM) {
		t.Errorf("permission domctl from the stub: %v, want EPERM", err)
	}
	d.SetDeviceModel(0)

	// ioport_mapping.
	if _, err := h.domctl(xenabi.XEN_DOMCTL_ioport_mapping, dom, union(uint32(0xc000), uint32(0xe000), uint32(0x20), uint32(1))); err != nil {
		t.Fatal(err)
	}
	if _, err := h.domctl(xenabi.XEN_DOMCTL_ioport_mapping, dom, union(uint32(0xfff0), uint32(0xe000), uint32(0x20), uint32(1))); !isErrno(err, unix.EINVAL) {
		t.Errorf("ioport range past 64K: %v, want EINVAL", err)
	}

	// Passed-through I/O no longer reaches the device model.
	dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, func(reqView) uint64 { return 1 })
	rangeOp(dm.pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_PORT, 0xc000, 0xc0ff)
	rangeOp(dm.pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_MEMORY, 0xf0000000, 0xf0ffffff)
	v := d.VCPU(0)
	if got, _ := v.In(0xc010, 4); got != 0xffffffff {
		t.Errorf("In from a passed-through port = %#x", got)
	}
	if got, _ := v.In(0xc020, 4); got != 1 {
		t.Errorf("In just past the passthrough = %#x, want the DM's answer", got)
	}
	if got, _ := v.MMIORead(0xf0001000, 4); got != 0xffffffff {
		t.Errorf("MMIO read of a passed-through page = %#x", got)
	}
	if n := len(dm.requests()); n != 1 {
		t.Errorf("DM saw %d requests, want 1", n)
	}

	// Domain info.
	out, err := h.domctl(xenabi.XEN_DOMCTL_getdomaininfo, dom, nil)
	if err != nil || binary.LittleEndian.Uint16(out) != dom || binary.LittleEndian.Uint32(out[4:])&xenabi.XEN_DOMINF_hvm_guest == 0 ||
		binary.LittleEndian.Uint32(out[64:]) != 2 {
		t.Errorf("getdomaininfo = %x, %v", out[:72], err)
	}
	if out, err := h.domctl(xenabi.XEN_DOMCTL_getdomaininfo, dom+1, nil); err != nil || binary.LittleEndian.Uint16(out) != uint16(stub.ID()) {
		t.Errorf("getdomaininfo answers the next domain: %d, %v", binary.LittleEndian.Uint16(out), err)
	}
	if _, err := h.domctl(xenabi.XEN_DOMCTL_getdomaininfo, 1000, nil); !isErrno(err, unix.ESRCH) {
		t.Errorf("getdomaininfo past the last domain: %v, want ESRCH", err)
	}

	kinds := map[EventKind]int{}
	for _, e := range s.EventsSince(mark) {
		kinds[e.Kind]++
	}
	want := map[EventKind]int{EventMapPIRQ: 3, EventBindPtIRQ: 2, EventMemoryMapping: 4, EventPermission: 2, EventIOPortMapping: 1}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("%v events: %d, want %d (all: %v)", k, kinds[k], n, kinds)
		}
	}
}

func TestMemoryOps(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	h := newHC(t, s, 0)
	dom := uint16(d.ID())
	le := binary.LittleEndian
	// Reservation struct at 0, extents at 256, multicall entry at 512.
	memop := func(cmd uint64, order uint32, gfns ...uint64) (uint64, error) {
		r := h.buf[:32]
		clear(r)
		ext := h.buf[256:]
		for i, g := range gfns {
			le.PutUint64(ext[8*i:], g)
		}
		le.PutUint64(r, addr(ext))
		le.PutUint64(r[8:], uint64(len(gfns)))
		le.PutUint32(r[16:], order)
		le.PutUint16(r[24:], dom)
		mc := h.buf[512:576]
		clear(mc)
		le.PutUint64(mc, xenabi.HYPERVISOR_memory_op)
		le.PutUint64(mc[16:], cmd)
		le.PutUint64(mc[24:], addr(r))
		if _, err := rawHypercall(h.pc, xenabi.HYPERVISOR_multicall, addr(mc), 1); err != nil {
			return 0, err
		}
		res := le.Uint64(mc[8:])
		if int64(res) < 0 {
			return 0, unix.Errno(-int64(res))
		}
		return res, nil
	}
	// VRAM-like: 4 pages at 0xf0000 (a hole).
	if n, err := memop(xenabi.XENMEM_populate_physmap, 2, 0xf0000); err != nil || n != 1 {
		t.Fatalf("populate: %d, %v", n, err)
	}
	if err := d.WriteRAM(0xf0003000, []byte("vram")); err != nil {
		t.Errorf("populated page not RAM: %v", err)
	}
	// The device model can map it.
	region, _ := h.pc.Mmap(0, pageSize, unix.PROT_READ)
	if errs, err := rawMmapBatch(h.pc, dom, region, []uint64{0xf0003}); err != nil || errs[0] != 0 || string(region[:4]) != "vram" {
		t.Errorf("map populated page: %v %v %q", errs, err, region[:4])
	}
	if n, err := memop(xenabi.XENMEM_populate_physmap, 1, 0xf0011); err != nil || n != 0 {
		t.Errorf("misaligned extent: %d, %v; want 0 done", n, err)
	}
	// Decrease: the second extent is a hole, so one is done.
	if n, err := memop(xenabi.XENMEM_decrease_reservation, 0, 0xf0000, 0xe0000); err != nil || n != 1 {
		t.Errorf("decrease: %d, %v", n, err)
	}
	if err := d.ReadRAM(0xf0000000, make([]byte, 1)); err == nil {
		t.Error("decreased page still RAM")
	}
	if !d.MapCacheInvalidatePending() {
		t.Fatal("no map-cache invalidation pending after decrease_reservation")
	}
	dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, nil)
	if sent, err := d.VCPU(0).GuestHypercall(); !sent || err != nil {
		t.Errorf("GuestHypercall = %v, %v", sent, err)
	}
	if r := dm.requests(); len(r) != 1 || r[0].typ != xenabi.IOREQ_TYPE_INVALIDATE {
		t.Errorf("DM saw %+v, want one INVALIDATE", r)
	}
	if sent, _ := d.VCPU(0).GuestHypercall(); sent {
		t.Error("second GuestHypercall sent another invalidation")
	}
	// add_to_physmap gmfn_range moves RAM.
	d.WriteRAM(0x5000, []byte("five"))
	atp := h.buf[1024:1048]
	clear(atp)
	le.PutUint16(atp, dom)
	le.PutUint16(atp[2:], 2)
	le.PutUint32(atp[4:], xenabi.XENMAPSPACE_gmfn_range)
	le.PutUint64(atp[8:], 0x5)
	le.PutUint64(atp[16:], 0x200)
	if _, err := rawHypercall(h.pc, xenabi.HYPERVISOR_memory_op, xenabi.XENMEM_add_to_physmap, addr(atp)); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if err := d.ReadRAM(0x200000, b); err != nil || string(b) != "five" {
		t.Errorf("moved page reads %q, %v", b, err)
	}
	if err := d.ReadRAM(0x5000, b); err == nil {
		t.Error("source of the move still RAM")
	}
}
