package xensim

import (
	"encoding/binary"
	"testing"
	"time"

	"godm/hyp/kernel"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

func union(fields ...any) []byte {
	b := make([]byte, 0, 24)
	for _, f := range fields {
		switch v := f.(type) {
		case uint8:
			b = append(b, v)
		case uint16:
			b = binary.LittleEndian.AppendUint16(b, v)
		case uint32:
			b = binary.LittleEndian.AppendUint32(b, v)
		case uint64:
			b = binary.LittleEndian.AppendUint64(b, v)
		}
	}
	return b
}

func TestDMOpErrors(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	stub, err := s.CreateDomain(DomainConfig{VCPUs: 1})
	if err != nil {
		t.Fatal(err)
	}
	pc := mustOpen(t, s.Kernel(0), kernel.Privcmd, 0)
	stubPC := mustOpen(t, s.Kernel(stub.ID()), kernel.Privcmd, 0)
	dom := uint16(d.ID())
	id := createServer(t, pc, dom, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF)
	if err := rangeOp(pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, id, xenabi.XEN_DMOP_IO_RANGE_PORT, 0x100, 0x1ff); err != nil {
		t.Fatal(err)
	}
	rng := func(srv uint16, kind uint32, start, end uint64) []byte {
		return union(srv, uint16(0), kind, start, end)
	}
	cases := []struct {
		name string
		f    kernel.File
		dom  uint16
		op   uint32
		u    []byte
		want unix.Errno
	}{
		{"create bad bufioreq", pc, dom, xenabi.XEN_DMOP_create_ioreq_server, union(uint8(3)), unix.EINVAL},
		{"create pad", pc, dom, xenabi.XEN_DMOP_create_ioreq_server, union(uint8(0), uint8(1)), unix.EINVAL},
		{"info no server", pc, dom, xenabi.XEN_DMOP_get_ioreq_server_info, union(uint16(5), uint16(1)), unix.ENOENT},
		{"info bad flags", pc, dom, xenabi.XEN_DMOP_get_ioreq_server_info, union(id, uint16(2)), unix.EINVAL},
		{"info id >= 8", pc, dom, xenabi.XEN_DMOP_get_ioreq_server_info, union(uint16(8), uint16(1)), unix.ENOENT},
		{"info other emulator", stubPC, dom, xenabi.XEN_DMOP_get_ioreq_server_info, union(id, uint16(1)), unix.EPERM},
		{"map overlap", pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, rng(id, 0, 0x1ff, 0x200), unix.EEXIST},
		{"map start > end", pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, rng(id, 0, 0x300, 0x2ff), unix.EINVAL},
		{"map bad type", pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, rng(id, 3, 0x300, 0x3ff), unix.EINVAL},
		{"map no server", pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, rng(7, 0, 0x300, 0x3ff), unix.ENOENT},
		{"unmap absent", pc, dom, xenabi.XEN_DMOP_unmap_io_range_from_ioreq_server, rng(id, 0, 0x300, 0x300), unix.ENOENT},
		{"unmap partly absent", pc, dom, xenabi.XEN_DMOP_unmap_io_range_from_ioreq_server, rng(id, 0, 0x1f0, 0x200), unix.ENOENT},
		{"unmap sub-range", pc, dom, xenabi.XEN_DMOP_unmap_io_range_from_ioreq_server, rng(id, 0, 0x180, 0x18f), 0},
		{"map adjacent", pc, dom, xenabi.XEN_DMOP_map_io_range_to_ioreq_server, rng(id, 0, 0x200, 0x20f), 0},
		{"state pad", pc, dom, xenabi.XEN_DMOP_set_ioreq_server_state, union(id, uint8(1), uint8(1)), unix.EINVAL},
		{"destroy other emulator", stubPC, dom, xenabi.XEN_DMOP_destroy_ioreq_server, union(id, uint16(0)), unix.EPERM},
		{"intx bad device", pc, dom, xenabi.XEN_DMOP_set_pci_intx_level, union(uint16(0), uint8(0), uint8(32), uint8(0), uint8(1)), unix.EINVAL},
		{"intx bad pin", pc, dom, xenabi.XEN_DMOP_set_pci_intx_level, union(uint16(0), uint8(0), uint8(3), uint8(4), uint8(1)), unix.EINVAL},
		{"intx bus 1", pc, dom, xenabi.XEN_DMOP_set_pci_intx_level, union(uint16(0), uint8(1), uint8(3), uint8(0), uint8(1)), unix.EINVAL},
		{"intx level 2", pc, dom, xenabi.XEN_DMOP_set_pci_intx_level, union(uint16(0), uint8(0), uint8(3), uint8(0), uint8(2)), unix.EINVAL},
		{"isa irq 16", pc, dom, xenabi.XEN_DMOP_set_isa_irq_level, union(uint8(16), uint8(1)), unix.EINVAL},
		{"link 4", pc, dom, xenabi.XEN_DMOP_set_pci_link_route, union(uint8(4), uint8(5)), unix.EINVAL},
		{"link irq 16", pc, dom, xenabi.XEN_DMOP_set_pci_link_route, union(uint8(0), uint8(16)), unix.EINVAL},
		{"msi pad", pc, dom, xenabi.XEN_DMOP_inject_msi, union(uint32(0x41), uint32(1), uint64(0xfee00000)), unix.EINVAL},
		{"inject_event bad vcpu", pc, dom, xenabi.XEN_DMOP_inject_event, union(uint32(2), uint8(14), uint8(3)), unix.EINVAL},
		{"set_mem_type unused", pc, dom, xenabi.XEN_DMOP_set_mem_type, union(uint32(1), uint16(3), uint16(0), uint64(0x10)), unix.EINVAL},
		{"set_mem_type beyond RAM", pc, dom, xenabi.XEN_DMOP_set_mem_type, union(uint32(1), uint16(1), uint16(0), uint64(0x1000)), unix.EINVAL},
		{"set_mem_type ioreq without server", pc, dom, xenabi.XEN_DMOP_set_mem_type, union(uint32(1), uint16(4), uint16(0), uint64(0x10)), unix.EINVAL},
		{"map_mem_type wrong type", pc, dom, xenabi.XEN_DMOP_map_mem_type_to_ioreq_server, union(id, uint16(1), uint32(2)), unix.EINVAL},
		{"map_mem_type read flag", pc, dom, xenabi.XEN_DMOP_map_mem_type_to_ioreq_server, union(id, uint16(4), uint32(1)), unix.EINVAL},
		{"cacheattr bad type", pc, dom, xenabi.XEN_DMOP_pin_memory_cacheattr, union(uint64(0), uint64(1), uint32(2)), unix.EINVAL},
		{"cacheattr delete absent", pc, dom, xenabi.XEN_DMOP_pin_memory_cacheattr, union(uint64(0), uint64(1), uint32(0xffffffff)), unix.ENOENT},
		{"set_irq_level (Arm)", pc, dom, xenabi.XEN_DMOP_set_irq_level, nil, unix.EOPNOTSUPP},
		{"unknown op", pc, dom, 99, nil, unix.EOPNOTSUPP},
		{"no such domain", pc, 77, xenabi.XEN_DMOP_nr_vcpus, nil, unix.ESRCH},
		{"DOMID_SELF is not looked up", pc, 0x7ff0, xenabi.XEN_DMOP_nr_vcpus, nil, unix.ESRCH},
		{"own domain", stubPC, uint16(stub.ID()), xenabi.XEN_DMOP_nr_vcpus, nil, unix.EPERM},
		{"dom0 is not HVM", stubPC, 0, xenabi.XEN_DMOP_nr_vcpus, nil, unix.EINVAL},
		{"stub not the DM", stubPC, dom, xenabi.XEN_DMOP_nr_vcpus, nil, unix.EPERM},
		{"nr_vcpus", pc, dom, xenabi.XEN_DMOP_nr_vcpus, nil, 0},
	}
	for _, c := range cases {
		if c.name == "info other emulator" || c.name == "destroy other emulator" {
			// A stub domain that is the guest's DM may issue DM ops, but
			// still may not touch dom0's server.
			d.SetDeviceModel(stub.ID())
		}
		_, err := dmop(c.f, c.dom, c.op, c.u)
		d.SetDeviceModel(0)
		if !isErrno(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	// Buffer-level checks.
	short := make([]byte, 10)
	binary.LittleEndian.PutUint32(short, xenabi.XEN_DMOP_get_ioreq_server_info)
	if err := rawDMOp(pc, dom, short); !isErrno(err, unix.EFAULT) {
		t.Errorf("short buffer: %v, want EFAULT", err)
	}
	b := make([]byte, 32)
	binary.LittleEndian.PutUint32(b, xenabi.XEN_DMOP_nr_vcpus)
	if err := rawDMOp(pc, dom, b, b, b); !isErrno(err, unix.E2BIG) {
		t.Errorf("3 buffers: %v, want E2BIG (Xen takes 2)", err)
	}
	binary.LittleEndian.PutUint32(b[4:], 1)
	if err := rawDMOp(pc, dom, b); !isErrno(err, unix.EINVAL) {
		t.Errorf("xen_dm_op pad: %v, want EINVAL", err)
	}
	if err := rawDMOp(pc, 0x7ff4); err != nil {
		t.Errorf("probe with no buffers: %v, want 0", err)
	}
}

func TestServerLimitAndDestroy(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	pc := mustOpen(t, s.Kernel(0), kernel.Privcmd, 0)
	dom := uint16(d.ID())
	for i := 0; i < maxIOReqServers; i++ {
		if id := createServer(t, pc, dom, xenabi.HVM_IOREQSRV_BUFIOREQ_LEGACY); id != uint16(i) {
			t.Fatalf("server %d got id %d", i, id)
		}
	}
	if _, err := dmop(pc, dom, xenabi.XEN_DMOP_create_ioreq_server, []byte{0}); !isErrno(err, unix.ENOSPC) {
		t.Fatalf("9th server: %v, want ENOSPC", err)
	}
	s.mu.RLock()
	before := 0
	for _, p := range d.ports {
		if p != nil {
			before++
		}
	}
	s.mu.RUnlock()
	// 8 servers x (2 vCPU ports + 1 buffered port).
	if before != 24 {
		t.Errorf("%d event channels, want 24", before)
	}
	if _, err := dmop(pc, dom, xenabi.XEN_DMOP_destroy_ioreq_server, union(uint16(3), uint16(0))); err != nil {
		t.Fatal(err)
	}
	if _, err := dmop(pc, dom, xenabi.XEN_DMOP_destroy_ioreq_server, union(uint16(3), uint16(0))); !isErrno(err, unix.ENOENT) {
		t.Errorf("destroy twice: %v, want ENOENT", err)
	}
	if id := createServer(t, pc, dom, 0); id != 3 {
		t.Errorf("re-created server id %d, want the freed 3", id)
	}
}

func TestGetInfoLegacyGFNs(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	pc := mustOpen(t, s.Kernel(0), kernel.Privcmd, 0)
	dom := uint16(d.ID())
	id := createServer(t, pc, dom, xenabi.HVM_IOREQSRV_BUFIOREQ_LEGACY)
	out, err := dmop(pc, dom, xenabi.XEN_DMOP_get_ioreq_server_info, union(id, uint16(0)))
	if err != nil {
		t.Fatal(err)
	}
	ioreqGFN, bufGFN := binary.LittleEndian.Uint64(out[8:]), binary.LittleEndian.Uint64(out[16:])
	if ioreqGFN != defaultIOReqGFNBase || bufGFN != defaultIOReqGFNBase+1 || binary.LittleEndian.Uint32(out[4:]) == 0 {
		t.Errorf("info = ioreq gfn %#x, buf gfn %#x, port %d", ioreqGFN, bufGFN, binary.LittleEndian.Uint32(out[4:]))
	}
	// The pages are in the guest p2m while the server is disabled: map
	// them the legacy way.
	region, err := pc.Mmap(0, 2*pageSize, unix.PROT_READ|unix.PROT_WRITE)
	if err != nil {
		t.Fatal(err)
	}
	errs, err := rawMmapBatch(pc, dom, region, []uint64{ioreqGFN, bufGFN})
	if err != nil || errs[0] != 0 || errs[1] != 0 {
		t.Fatalf("map ioreq gfns: %v %v", errs, err)
	}
	// Resource mapping is refused once the gfns are used.
	r2, _ := pc.Mmap(0, pageSize, unix.PROT_READ|unix.PROT_WRITE)
	if _, err := rawMmapResource(pc, dom, 0, uint32(id), 1, 1, r2); !isErrno(err, unix.EPERM) {
		t.Errorf("resource after gfn mapping: %v, want EPERM", err)
	}
	if err := setState(pc, dom, id, true); err != nil {
		t.Fatal(err)
	}
	// vp_eport shows through the legacy mapping once enabled.
	if p := binary.LittleEndian.Uint32(region[24:]); p == 0 {
		t.Errorf("vp_eport of vCPU 0 = 0 after enable")
	}
	// Enabled: the gfns left the p2m.
	r3, _ := pc.Mmap(0, pageSize, unix.PROT_READ)
	if errs, err := rawMmapBatch(pc, dom, r3, []uint64{ioreqGFN}); err != nil || errs[0] != -int32(unix.EINVAL) {
		t.Errorf("map ioreq gfn while enabled: %v %v, want per-page EINVAL", errs, err)
	}
}

func TestResourceMapping(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	stub, _ := s.CreateDomain(DomainConfig{VCPUs: 1, RAM: []Region{{0, 0x10000}}})
	d.SetDeviceModel(stub.ID())
	pc := mustOpen(t, s.Kernel(0), kernel.Privcmd, 0)
	stubPC := mustOpen(t, s.Kernel(stub.ID()), kernel.Privcmd, 0)
	dom := uint16(d.ID())
	idOff := createServer(t, pc, dom, xenabi.HVM_IOREQSRV_BUFIOREQ_OFF)
	region, _ := pc.Mmap(0, 2*pageSize, unix.PROT_READ|unix.PROT_WRITE)
	stubRegion, _ := stubPC.Mmap(0, pageSize, unix.PROT_READ|unix.PROT_WRITE)
	cases := []struct {
		name     string
		f        kernel.File
		dom      uint16
		typ, id  uint32
		idx      uint32
		num      uint64
		region   []byte
		want     unix.Errno
		wantSize uint64
	}{
		{"size query", pc, dom, 0, uint32(idOff), 0, 0, nil, 0, 2},
		{"addr without num", pc, dom, 0, uint32(idOff), 0, 0, region, unix.EINVAL, 0},
		{"bufioreq frame, bufioreq off", pc, dom, 0, uint32(idOff), 0, 1, region, unix.ENOENT, 0},
		{"frame 2", pc, dom, 0, uint32(idOff), 2, 1, region, unix.EINVAL, 0},
		{"frames 1-2", pc, dom, 0, uint32(idOff), 1, 2, region, unix.EINVAL, 0},
		{"no server", pc, dom, 0, 5, 1, 1, region, unix.ENOENT, 0},
		{"not the emulator", stubPC, dom, 0, uint32(idOff), 1, 1, stubRegion, unix.EPERM, 0},
		{"grant table", pc, dom, 1, 0, 0, 1, region, unix.EOPNOTSUPP, 0},
		{"no such domain", pc, 99, 0, 0, 1, 1, region, unix.ESRCH, 0},
		{"ioreq frame", pc, dom, 0, uint32(idOff), 1, 1, region, 0, 1},
	}
	for _, c := range cases {
		var a []byte
		if c.region != nil {
			a = c.region
		}
		n, err := rawMmapResource(c.f, c.dom, c.typ, c.id, c.idx, c.num, a)
		if !isErrno(err, c.want) || (err == nil && n != c.wantSize) {
			t.Errorf("%s: num %d err %v, want %d %v", c.name, n, err, c.wantSize, c.want)
		}
	}
	if _, err := rawMmapResource(pc, dom, 0, uint32(idOff), 1, 1, []byte{1}); !isErrno(err, unix.EINVAL) {
		t.Errorf("outside any privcmd VMA: %v, want EINVAL", err)
	}
}

func TestRecordedInterrupts(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	pc := mustOpen(t, s.Kernel(0), kernel.Privcmd, 0)
	dom := uint16(d.ID())
	mark := s.LastSeq()
	ops := []struct {
		op uint32
		u  []byte
	}{
		{xenabi.XEN_DMOP_set_pci_link_route, union(uint8(2), uint8(11))},
		{xenabi.XEN_DMOP_set_pci_intx_level, union(uint16(0), uint8(0), uint8(3), uint8(1), uint8(1))},
		{xenabi.XEN_DMOP_set_isa_irq_level, union(uint8(4), uint8(1))},
		{xenabi.XEN_DMOP_inject_msi, union(uint32(0x4041), uint32(0), uint64(0xfee01000))},
		{xenabi.XEN_DMOP_inject_event, union(uint32(1), uint8(14), uint8(3), uint8(0), uint8(0), uint32(2), uint32(0), uint64(0xdead000))},
		{xenabi.XEN_DMOP_set_mem_type, union(uint32(2), uint16(xenabi.HVMMEM_ram_ro), uint16(0), uint64(0x10))},
		{xenabi.XEN_DMOP_pin_memory_cacheattr, union(uint64(0xf0000), uint64(0xf00ff), uint32(1), uint32(0))},
		{xenabi.XEN_DMOP_remote_shutdown, union(uint32(xenabi.SHUTDOWN_reboot))},
	}
	for _, o := range ops {
		if _, err := dmop(pc, dom, o.op, o.u); err != nil {
			t.Fatalf("op %d: %v", o.op, err)
		}
	}
	id := d.ID()
	want := []Event{
		{Kind: EventPCILinkRoute, Dom: id, Link: 2, IRQ: 11},
		{Kind: EventPCIIntx, Dom: id, Dev: 3, Pin: 1, Level: true},
		{Kind: EventISAIRQ, Dom: id, IRQ: 4, Level: true},
		{Kind: EventMSI, Dom: id, Addr: 0xfee01000, Data: 0x4041},
		{Kind: EventInjectEvent, Dom: id, VCPU: 1, Data: 14, Type: 3, First: 2, Addr: 0xdead000},
		{Kind: EventSetMemType, Dom: id, First: 0x10, Nr: 2, Type: xenabi.HVMMEM_ram_ro},
		{Kind: EventPinCacheAttr, Dom: id, First: 0xf0000, Nr: 0xf00ff, Type: 1},
		{Kind: EventShutdown, Dom: id, Data: xenabi.SHUTDOWN_reboot},
	}
	got := s.EventsSince(mark)
	if len(got) != len(want) {
		t.Fatalf("events %v, want %d", got, len(want))
	}
	for i := range want {
		g := got[i]
		g.Seq = 0
		if g != want[i] {
			t.Errorf("event %d = %v, want %v", i, g, want[i])
		}
	}
	if !d.INTxLevel(3, 1) || d.INTxLevel(3, 0) || !d.ISAIRQLevel(4) || d.LinkRoute(2) != 11 {
		t.Errorf("levels: intx 3/B %v, 3/A %v, isa 4 %v, link 2 -> %d",
			d.INTxLevel(3, 1), d.INTxLevel(3, 0), d.ISAIRQLevel(4), d.LinkRoute(2))
	}
	if r := d.ShutdownReason(); r != xenabi.SHUTDOWN_reboot {
		t.Errorf("shutdown reason %d", r)
	}
	if mt := d.MemType(0x11); mt != xenabi.HVMMEM_ram_ro {
		t.Errorf("mem type of 0x11 = %d", mt)
	}
	// ram_ro: guest writes are discarded.
	v := d.VCPU(0)
	if err := v.MMIOWrite(0x10000, 4, 0xffffffff); err != nil {
		t.Fatal(err)
	}
	if got, _ := v.MMIORead(0x10000, 4); got != 0 {
		t.Errorf("read of ram_ro page after write = %#x, want 0", got)
	}
	e, err := s.WaitEvent(mark, time.Second, func(e Event) bool { return e.Kind == EventMSI })
	if err != nil || e.Addr != 0xfee01000 {
		t.Errorf("WaitEvent = %v, %v", e, err)
	}
	if _, err := s.WaitEvent(s.LastSeq(), 10*time.Millisecond, nil); err == nil {
		t.Errorf("WaitEvent with nothing new succeeded")
	}
}

func TestTrackDirtyVRAM(t *testing.T) {
	s, d := newSim(t, Config{}, stdDomain())
	pc := mustOpen(t, s.Kernel(0), kernel.Privcmd, 0)
	dom := uint16(d.ID())
	bitmap := make([]byte, 2)
	track := func(first uint64, nr uint32) []byte {
		t.Helper()
		if _, err := dmop(pc, dom, xenabi.XEN_DMOP_track_dirty_vram, union(nr, uint32(0), first), bitmap); err != nil {
			t.Fatalf("track: %v", err)
		}
		return append([]byte(nil), bitmap...)
	}
	if got := track(0x100, 16); got[0] != 0xff || got[1] != 0xff {
		t.Errorf("first call = %x, want all dirty", got)
	}
	if got := track(0x100, 16); got[0] != 0 || got[1] != 0 {
		t.Errorf("second call = %x, want clean", got)
	}
	d.WriteRAM(0x109000, []byte{1})
	if got := track(0x100, 16); got[0] != 0 || got[1] != 0x02 {
		t.Errorf("after a write to gfn 0x109 = %x, want 0002", got)
	}
	if _, err := dmop(pc, dom, xenabi.XEN_DMOP_track_dirty_vram, union(uint32(17), uint32(0), uint64(0x100)), bitmap); !isErrno(err, unix.EINVAL) {
		t.Errorf("bitmap too small: %v, want EINVAL", err)
	}
	if _, err := dmop(pc, dom, xenabi.XEN_DMOP_track_dirty_vram, union(uint32(1), uint32(0), uint64(0x100))); !isErrno(err, unix.EINVAL) {
		t.Errorf("no bitmap buffer: %v, want EINVAL", err)
	}
}
