package xensim

import (
	"encoding/binary"
	"strings"
	"testing"

	"godm/hyp/kernel"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

func TestPIORoundTrip(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC, func(r reqView) uint64 {
		return 0x11223344 ^ r.addr
	})
	dom := uint16(d.ID())
	if err := rangeOp(dm.pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_PORT, 0x10, 0x1f); err != nil {
		t.Fatal(err)
	}
	v := d.VCPU(1)
	got, err := v.In(0x12, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64((0x11223344 ^ 0x12) & 0xffff); got != want {
		t.Errorf("In(0x12, 2) = %#x, want %#x", got, want)
	}
	if err := v.Out(0x1e, 2, 0xabcd); err != nil {
		t.Fatal(err)
	}
	// 0x1f size 2 straddles the range end: unclaimed.
	if got, err := v.In(0x1f, 2); err != nil || got != 0xffff {
		t.Errorf("In(0x1f, 2) = %#x, %v; want 0xffff (unclaimed)", got, err)
	}
	reqs := dm.requests()
	want := []reqView{
		{vcpu: 1, addr: 0x12, count: 1, size: 2, typ: xenabi.IOREQ_TYPE_PIO, dir: xenabi.IOREQ_READ},
		{vcpu: 1, addr: 0x1e, data: 0xabcd, count: 1, size: 2, typ: xenabi.IOREQ_TYPE_PIO, dir: xenabi.IOREQ_WRITE},
	}
	if len(reqs) != len(want) {
		t.Fatalf("DM saw %d requests %+v, want %d", len(reqs), reqs, len(want))
	}
	for i := range want {
		if reqs[i] != want[i] {
			t.Errorf("request %d = %+v, want %+v", i, reqs[i], want[i])
		}
	}
	if vs := s.Violations(); len(vs) != 0 {
		t.Errorf("violations: %v", vs)
	}
}

func TestMMIOAndRAM(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, func(r reqView) uint64 { return 0xfeedfacecafebeef })
	dom := uint16(d.ID())
	if err := rangeOp(dm.pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_MEMORY, 0xfe000000, 0xfe000fff); err != nil {
		t.Fatal(err)
	}
	v := d.VCPU(0)
	if got, err := v.MMIORead(0xfe000008, 8); err != nil || got != 0xfeedfacecafebeef {
		t.Errorf("MMIORead = %#x, %v", got, err)
	}
	if got, err := v.MMIORead(0xfe000008, 4); err != nil || got != 0xcafebeef {
		t.Errorf("MMIORead size 4 = %#x, %v", got, err)
	}
	if got, err := v.MMIORead(0xfe001000, 4); err != nil || got != 0xffffffff {
		t.Errorf("unclaimed MMIORead = %#x, %v; want all-ones", got, err)
	}
	// RAM does not trap.
	if err := v.MMIOWrite(0x1000, 4, 0x12345678); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	if err := d.ReadRAM(0x1000, b); err != nil || binary.LittleEndian.Uint32(b) != 0x12345678 {
		t.Errorf("RAM after MMIOWrite = %x, %v", b, err)
	}
	if n := len(dm.requests()); n != 2 {
		t.Errorf("DM saw %d requests, want 2", n)
	}
}

func TestRepWithDataPointer(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, nil)
	dom := uint16(d.ID())
	if err := rangeOp(dm.pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_PORT, 0x1f0, 0x1f7); err != nil {
		t.Fatal(err)
	}
	if err := rangeOp(dm.pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_MEMORY, 0xe0000000, 0xe0ffffff); err != nil {
		t.Fatal(err)
	}
	v := d.VCPU(0)
	// 256 words from 0x2f00: the buffer crosses a page at 0x3000, so Xen
	// splits the request there.
	if err := v.RepIns(0x1f0, 2, 256, 0x2f00, false); err != nil {
		t.Fatal(err)
	}
	if err := v.RepMovs(0xe0000100, 4, 4, 0x5010, true, true); err != nil {
		t.Fatal(err)
	}
	want := []reqView{
		{addr: 0x1f0, data: 0x2f00, count: 128, size: 2, typ: xenabi.IOREQ_TYPE_PIO, dir: xenabi.IOREQ_READ, ptr: true},
		{addr: 0x1f0, data: 0x3000, count: 128, size: 2, typ: xenabi.IOREQ_TYPE_PIO, dir: xenabi.IOREQ_READ, ptr: true},
		{addr: 0xe0000100, data: 0x5010, count: 4, size: 4, typ: xenabi.IOREQ_TYPE_COPY, dir: xenabi.IOREQ_WRITE, df: true, ptr: true},
	}
	got := dm.requests()
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	// Unclaimed REP INS fills the buffer with all-ones.
	if err := v.RepIns(0x300, 1, 4, 0x6000, false); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 5)
	d.ReadRAM(0x6000, b)
	if string(b) != "\xff\xff\xff\xff\x00" {
		t.Errorf("unclaimed REP INS buffer = %x", b)
	}
}

func TestPCIConfigRouting(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, func(r reqView) uint64 { return 0x12345678 })
	dom := uint16(d.ID())
	sbdf := uint64(xenabi.XEN_DMOP_PCI_SBDF(0, 0, 3, 0))
	if err := rangeOp(dm.pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_PCI, sbdf, sbdf); err != nil {
		t.Fatal(err)
	}
	// The DM also claims 0xcf8 as a port, like QEMU's PCI host bridge.
	if err := rangeOp(dm.pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_PORT, 0xcf8, 0xcff); err != nil {
		t.Fatal(err)
	}
	v := d.VCPU(0)
	got, err := v.PCIConfigRead(uint32(sbdf), 0x0e, 2)
	if err != nil || got != 0x5678 {
		t.Errorf("PCIConfigRead = %#x, %v", got, err)
	}
	// Another device: nobody claims it, all-ones.
	if got, err := v.PCIConfigRead(uint32(xenabi.XEN_DMOP_PCI_SBDF(0, 0, 4, 0)), 0, 4); err != nil || got != 0xffffffff {
		t.Errorf("unclaimed config read = %#x, %v", got, err)
	}
	reqs := dm.requests()
	// 0xcf8 write (forwarded as PIO), config read, 0xcf8 write.
	if len(reqs) != 3 {
		t.Fatalf("requests %+v", reqs)
	}
	if r := reqs[0]; r.typ != xenabi.IOREQ_TYPE_PIO || r.addr != 0xcf8 || r.data != 0x80001800|0x0c {
		t.Errorf("cf8 write = %+v", r)
	}
	if r := reqs[1]; r.typ != xenabi.IOREQ_TYPE_PCI_CONFIG || r.addr != sbdf<<32|0x0e || r.size != 2 || r.dir != xenabi.IOREQ_READ {
		t.Errorf("config read = %+v, want addr %#x", r, sbdf<<32|0x0e)
	}
	// A byte write to 0xcf8 does not latch: CF8 still selects 00:04.0,
	// so the data cycle stays unclaimed.
	if err := v.Out(0xcf8, 1, 0); err != nil {
		t.Fatal(err)
	}
	if got, err := v.In(0xcfc, 4); err != nil || got != 0xffffffff {
		t.Errorf("after byte write to cf8: In(0xcfc) = %#x, %v", got, err)
	}
	// With CF8 disabled, 0xcfc is an ordinary port claimed by the range.
	if err := v.Out(0xcf8, 4, 0); err != nil {
		t.Fatal(err)
	}
	if got, err := v.In(0xcfc, 4); err != nil || got != 0x12345678 {
		t.Errorf("cf8 disabled: In(0xcfc) = %#x, %v", got, err)
	}
	if r := dm.requests(); r[len(r)-1].typ != xenabi.IOREQ_TYPE_PIO {
		t.Errorf("last request = %+v, want PIO", r[len(r)-1])
	}
}

func TestServerSelectionAndDisable(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	dom := uint16(d.ID())
	a := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, func(reqView) uint64 { return 0xa })
	b := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF, func(reqView) uint64 { return 0xb })
	for _, dm := range []*fakeDM{a, b} {
		if err := rangeOp(dm.pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_PORT, 0x60, 0x60); err != nil {
			t.Fatal(err)
		}
	}
	v := d.VCPU(0)
	// The newest server (highest id) wins, as in Xen.
	if got, _ := v.In(0x60, 1); got != 0xb {
		t.Errorf("In = %#x, want 0xb (newest server)", got)
	}
	if err := setState(b.pc, dom, b.id, false); err != nil {
		t.Fatal(err)
	}
	if got, _ := v.In(0x60, 1); got != 0xa {
		t.Errorf("In = %#x, want 0xa (b disabled)", got)
	}
	if err := setState(a.pc, dom, a.id, false); err != nil {
		t.Fatal(err)
	}
	if got, _ := v.In(0x60, 1); got != 0xff {
		t.Errorf("In = %#x, want 0xff (all disabled)", got)
	}
}

func TestBufferedPath(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	dm := newFakeDM(t, s, d, xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC, nil)
	dom := uint16(d.ID())
	if err := rangeOp(dm.pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_MEMORY, 0xa0000, 0xbffff); err != nil {
		t.Fatal(err)
	}
	if err := rangeOp(dm.pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_MEMORY, 0xf0000000, 0xf0000fff); err != nil {
		t.Fatal(err)
	}
	v := d.VCPU(0)
	cases := []struct {
		addr uint64
		size int
		data uint64
		want BufferedResult
	}{
		{0xa0010, 1, 0x5a, Buffered},
		{0xa0020, 8, 0x1122334455667788, Buffered},
		{0xf0000000, 4, 1, Dropped}, // addr > 0xfffff: Xen declines it
		{0xc0000, 4, 1, Unclaimed},  // no server
	}
	for _, c := range cases {
		got, err := v.BufferedWrite(xenabi.IOREQ_TYPE_COPY, c.addr, c.size, c.data)
		if err != nil || got != c.want {
			t.Errorf("BufferedWrite(%#x, %d) = %v, %v; want %v", c.addr, c.size, got, err, c.want)
		}
	}
	if n := d.SendTimeOffset(-5); n != 0 {
		t.Errorf("SendTimeOffset failed for %d servers", n)
	}
	// Wait until the DM drained 5 slots (1 + 2 + 2).
	got := dm.waitBuffered(5)
	want := []bufEntry{
		{typ: xenabi.IOREQ_TYPE_COPY, size: 1, addr: 0xa0010, data: 0x5a},
		{typ: xenabi.IOREQ_TYPE_COPY, size: 8, addr: 0xa0020, data: 0x55667788},
		{typ: xenabi.IOREQ_TYPE_COPY, size: 8, addr: 0xa0020, data: 0x11223344},
		{typ: xenabi.IOREQ_TYPE_TIMEOFFSET, size: 8, data: 0xfffffffb},
		{typ: xenabi.IOREQ_TYPE_TIMEOFFSET, size: 8, data: 0xffffffff},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("slot %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if len(dm.requests()) != 0 {
		t.Errorf("synchronous requests %+v, want none", dm.requests())
	}
}

// TestEnableBeforeMapping: Xen writes vp_eport only when a server is
// enabled with its ioreq page present; a page mapped afterwards stays
// clear and requests are refused ("bad event channel").
func TestEnableBeforeMapping(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	pc := mustOpen(t, s.Kernel(0), kernel.Privcmd, 0)
	dom := uint16(d.ID())
	id := createServer(t, pc, dom, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF)
	if err := rangeOp(pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, id, xenabi.XEN_DMOP_IO_RANGE_PORT, 0x60, 0x60); err != nil {
		t.Fatal(err)
	}
	if err := setState(pc, dom, id, true); err != nil {
		t.Fatal(err)
	}
	page, _ := pc.Mmap(0, pageSize, unix.PROT_READ|unix.PROT_WRITE)
	if _, err := rawMmapResource(pc, dom, 0, uint32(id), 1, 1, page); err != nil {
		t.Fatal(err)
	}
	if p := binary.LittleEndian.Uint32(page[24:]); p != 0 {
		t.Errorf("vp_eport = %d in a page mapped after enable, want 0", p)
	}
	if _, err := d.VCPU(0).In(0x60, 1); err == nil {
		t.Error("request through a server without vp_eport succeeded")
	}
	if vs := s.Violations(); len(vs) != 1 || !strings.Contains(vs[0].Detail, "bad event channel") {
		t.Errorf("violations %v", vs)
	}
	// Disable and enable again: now the ports are written.
	setState(pc, dom, id, false)
	setState(pc, dom, id, true)
	if p := binary.LittleEndian.Uint32(page[24:]); p == 0 {
		t.Error("vp_eport still 0 after re-enabling")
	}
}

// TestStubDomainDM runs the device model in a stub domain: it may drive
// its guest (DeviceModel), owns the server, and binds the ports from its
// own event-channel table; dom0 may not touch the stub's server.
func TestStubDomainDM(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	stub, err := s.CreateDomain(DomainConfig{VCPUs: 1})
	if err != nil {
		t.Fatal(err)
	}
	d.SetDeviceModel(stub.ID())
	dm := newFakeDMIn(t, s, stub.ID(), d, xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC, func(reqView) uint64 { return 0x5a })
	dom := uint16(d.ID())
	if err := rangeOp(dm.pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, dm.id, xenabi.XEN_DMOP_IO_RANGE_PORT, 0x70, 0x71); err != nil {
		t.Fatal(err)
	}
	if got, err := d.VCPU(0).In(0x71, 1); err != nil || got != 0x5a {
		t.Errorf("In through the stub DM = %#x, %v", got, err)
	}
	pc0 := mustOpen(t, s.Kernel(0), kernel.Privcmd, 0)
	if err := setState(pc0, dom, dm.id, false); !isErrno(err, unix.EPERM) {
		t.Errorf("dom0 disabling the stub's server: %v, want EPERM", err)
	}
	region, _ := pc0.Mmap(0, pageSize, unix.PROT_READ)
	if _, err := rawMmapResource(pc0, dom, 0, uint32(dm.id), 1, 1, region); !isErrno(err, unix.EPERM) {
		t.Errorf("dom0 mapping the stub's ioreq page: %v, want EPERM", err)
	}
}
