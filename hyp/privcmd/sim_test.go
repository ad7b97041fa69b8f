package privcmd_test

import (
	"errors"
	"testing"

	"godm/hyp"
	"godm/hyp/dm"
	"godm/hyp/foreign"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"
	"godm/internal/testfake"

	"golang.org/x/sys/unix"
)

func TestSimulatedXen(t *testing.T) {
	sim := testfake.NewSim(t, xensim.Config{})
	p, err := privcmd.Open(sim.Kernel(0))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer p.Close()
	v, err := p.Hypercall(xenabi.HYPERVISOR_xen_version, [5]uint64{0})
	if err != nil || v != 4<<16|17 {
		t.Errorf("xen_version = %#x, %v; want 4.17", v, err)
	}
	b, err := p.Buffers().Alloc(16)
	if err != nil {
		t.Fatalf("Alloc: %v", err)
	}
	defer b.Free()
	if _, err := p.Hypercall(xenabi.HYPERVISOR_xen_version, [5]uint64{1, b.Addr()}); err != nil {
		t.Errorf("xen_version extraversion: %v", err)
	}
	// The simulated kernel predates irqfd, like Linux < 6.7: the error
	// says so.
	op := make([]byte, privcmd.DMOpSize)
	op[0] = xenabi.XEN_DMOP_set_isa_irq_level
	err = p.AssignIRQFD(privcmd.IRQFD{Dom: 1, Fd: 0, DMOp: op})
	if !errors.Is(err, hyp.ErrNotSupported) {
		t.Errorf("AssignIRQFD on the simulated kernel = %v, want ErrNotSupported", err)
	}
}

// TestSimulatedEventFDSupport runs the irqfd/ioeventfd support probe on
// both kinds of simulated kernel, and checks that on the supporting one an
// EINVAL the kernel gives for a bad argument (an ioreq channel that is not
// bound) is reported as EINVAL, not as "not supported".
func TestSimulatedEventFDSupport(t *testing.T) {
	for _, tt := range []struct {
		eventFDs bool
	}{{false}, {true}} {
		xen := testfake.NewXen(t, xensim.Config{EventFDs: tt.eventFDs}, testfake.RAM(1, 1<<20))
		sim, d := xen.Sim, xen.Dom
		p, err := privcmd.Open(sim.Kernel(0))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer p.Close()
		for name, f := range map[string]func() error{"IRQFDSupported": p.IRQFDSupported, "IOEventFDSupported": p.IOEventFDSupported} {
			err := f()
			if tt.eventFDs && err != nil {
				t.Errorf("EventFDs: %s = %v, want nil", name, err)
			}
			if !tt.eventFDs && (!errors.Is(err, hyp.ErrNotSupported) || !errors.Is(err, unix.ENOTTY)) {
				t.Errorf("no EventFDs: %s = %v, want ErrNotSupported (ENOTTY)", name, err)
			}
		}

		c := dm.New(p, d.ID())
		id, err := c.CreateIOReqServer(xenabi.HVM_IOREQSRV_BUFIOREQ_OFF)
		if err != nil {
			t.Fatalf("CreateIOReqServer: %v", err)
		}
		m, err := foreign.MapResource(p, d.ID(), xenabi.XENMEM_resource_ioreq_server, uint32(id), xenabi.XENMEM_resource_ioreq_server_frame_ioreq0, 1)
		if err != nil {
			t.Fatalf("MapResource: %v", err)
		}
		efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		err = p.AssignIOEventFD(privcmd.IOEventFD{Dom: d.ID(), IOReqPage: m.Bytes(), Ports: []uint32{4000}, Addr: 0x2000_0000, AddrLen: 4, EventFd: efd})
		if tt.eventFDs && (errors.Is(err, hyp.ErrNotSupported) || !errors.Is(err, unix.EINVAL)) {
			t.Errorf("EventFDs: AssignIOEventFD on an unbound port = %v, want EINVAL only", err)
		}
		if !tt.eventFDs && (!errors.Is(err, hyp.ErrNotSupported) || !errors.Is(err, unix.ENOTTY)) {
			t.Errorf("no EventFDs: AssignIOEventFD = %v, want ErrNotSupported (ENOTTY)", err)
		}
		unix.Close(efd)
		m.Close()
		if err := c.DestroyIOReqServer(id); err != nil {
			t.Errorf("DestroyIOReqServer: %v", err)
		}
	}
}
