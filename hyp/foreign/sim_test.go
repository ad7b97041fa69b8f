package foreign_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"godm/hyp/dm"
	"godm/hyp/foreign"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"
	"godm/internal/testfake"
)

func TestSimulatedGuestMemory(t *testing.T) {
	// RAM at gfns 0x00-0x0f; gfn 0x20 is a hole.
	xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(1, 16*foreign.PageSize))
	sim, d := xen.Sim, xen.Dom
	p, err := privcmd.Open(sim.Kernel(0))
	if err != nil {
		t.Fatalf("privcmd.Open: %v", err)
	}
	defer p.Close()
	if err := d.WriteRAM(3*foreign.PageSize+5, []byte("guest")); err != nil {
		t.Fatalf("WriteRAM: %v", err)
	}
	m, err := foreign.Map(p, d.ID(), true, []uint64{3, 0x20, 4})
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	defer m.Close()
	if m.PageErr(0) != nil || m.PageErr(1) == nil || m.PageErr(2) != nil {
		t.Errorf("page errors %v %v %v, want a hole at page 1 only", m.PageErr(0), m.PageErr(1), m.PageErr(2))
	}
	if got := m.Bytes()[5:10]; !bytes.Equal(got, []byte("guest")) {
		t.Errorf("mapped page reads %q, want %q", got, "guest")
	}
	copy(m.Bytes()[2*foreign.PageSize:], "dm wrote")
	got := make([]byte, 8)
	if err := d.ReadRAM(4*foreign.PageSize, got); err != nil {
		t.Fatalf("ReadRAM: %v", err)
	}
	if string(got) != "dm wrote" {
		t.Errorf("guest sees %q, want %q", got, "dm wrote")
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func TestSimulatedIOReqPages(t *testing.T) {
	xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(2, 1<<20))
	sim, d := xen.Sim, xen.Dom
	p, err := privcmd.Open(sim.Kernel(0))
	if err != nil {
		t.Fatalf("privcmd.Open: %v", err)
	}
	defer p.Close()
	c := dm.New(p, d.ID())
	id, err := c.CreateIOReqServer(xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC)
	if err != nil {
		t.Fatalf("CreateIOReqServer: %v", err)
	}
	n, err := p.ResourceSize(d.ID(), xenabi.XENMEM_resource_ioreq_server, uint32(id))
	if err != nil || n < 2 {
		t.Fatalf("ResourceSize = %d, %v; want >= 2 frames", n, err)
	}
	// Frame 0 is the buffered page, frame 1 the synchronous one.
	m, err := foreign.MapResource(p, d.ID(), xenabi.XENMEM_resource_ioreq_server, uint32(id), 0, 2)
	if err != nil {
		t.Fatalf("MapResource: %v", err)
	}
	defer m.Close()
	// Xen fills in the ports when the server is enabled
	// (xen/common/ioreq.c, ioreq_server_enable).
	if err := c.SetIOReqServerState(id, true); err != nil {
		t.Fatalf("SetIOReqServerState: %v", err)
	}
	ioreq := m.Bytes()[foreign.PageSize:]
	// Each vCPU's slot carries Xen's end of its event channel (vp_eport,
	// offset 24 of struct ioreq); they are distinct and non-zero.
	p0 := binary.LittleEndian.Uint32(ioreq[24:])
	p1 := binary.LittleEndian.Uint32(ioreq[xenabi.IoreqSize+24:])
	if p0 == 0 || p1 == 0 || p0 == p1 {
		t.Errorf("vp_eports %d, %d; want two distinct ports", p0, p1)
	}
}
