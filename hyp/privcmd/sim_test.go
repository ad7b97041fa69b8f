package privcmd_test

import (
	"errors"
	"testing"

	"godm/hyp"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"
)

func TestSimulatedXen(t *testing.T) {
	sim := xensim.New(xensim.Config{})
	defer sim.Close()
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
