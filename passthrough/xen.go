package passthrough

import (
	"fmt"
	"sync"

	"godm/hyp"
	"godm/hyp/domctl"
	"godm/hyp/hcall"
	"godm/hyp/xenabi"
)

// Xen is what passthrough needs from the hypervisor: PIRQs
// (PHYSDEVOP_map_pirq / unmap_pirq), interrupt bindings
// (XEN_DOMCTL_bind_pt_irq / unbind_pt_irq) and p2m mappings of machine
// frames and ports (XEN_DOMCTL_memory_mapping / ioport_mapping).
// NewXen implements it on hcall and domctl; tests wrap it to inject
// failures.
type Xen interface {
	MapPIRQ(dom hyp.DomID, req hcall.MapPIRQRequest) (int, error)
	UnmapPIRQ(dom hyp.DomID, pirq int) error
	BindPtIRQ(dom hyp.DomID, b domctl.IRQBinding) error
	UnbindPtIRQ(dom hyp.DomID, b domctl.IRQBinding) error
	MemoryMapping(dom hyp.DomID, firstGFN, firstMFN, nr uint64, add bool) error
	IoportMapping(dom hyp.DomID, firstGport, firstMport, nr uint32, add bool) error
}

// NewXen returns the hypervisor interface of c (PIRQs) and d (domctls).
// GSI PIRQs are reference counted per domain, so that functions sharing
// a host interrupt line (QEMU's xen_pt_mapped_machine_irq) do not unmap
// it under each other: only the last UnmapPIRQ reaches Xen.
func NewXen(c *hcall.Caller, d *domctl.Domctl) Xen {
	return &xenOps{c: c, d: d, refs: make(map[gsiKey]int)}
}

type gsiKey struct {
	dom  hyp.DomID
	pirq int
}

type xenOps struct {
	c *hcall.Caller
	d *domctl.Domctl

	mu   sync.Mutex
	refs map[gsiKey]int // GSI PIRQs mapped, and how many users
}

func (x *xenOps) MapPIRQ(dom hyp.DomID, req hcall.MapPIRQRequest) (int, error) {
	if req.Type != xenabi.MAP_PIRQ_TYPE_GSI {
		return x.c.MapPIRQ(dom, req)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	pirq, err := x.c.MapPIRQ(dom, req)
	if err != nil {
		return -1, err
	}
	x.refs[gsiKey{dom, pirq}]++
	return pirq, nil
}

func (x *xenOps) UnmapPIRQ(dom hyp.DomID, pirq int) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	k := gsiKey{dom, pirq}
	if n, ok := x.refs[k]; ok {
		if n > 1 {
			x.refs[k] = n - 1
			return nil
		}
		delete(x.refs, k)
	}
	if err := x.c.UnmapPIRQ(dom, pirq); err != nil {
		return fmt.Errorf("passthrough: unmap pirq %d: %w", pirq, err)
	}
	return nil
}

func (x *xenOps) BindPtIRQ(dom hyp.DomID, b domctl.IRQBinding) error { return x.d.BindPtIRQ(dom, b) }
func (x *xenOps) UnbindPtIRQ(dom hyp.DomID, b domctl.IRQBinding) error {
	return x.d.UnbindPtIRQ(dom, b)
}
func (x *xenOps) MemoryMapping(dom hyp.DomID, gfn, mfn, nr uint64, add bool) error {
	return x.d.MemoryMapping(dom, gfn, mfn, nr, add)
}
func (x *xenOps) IoportMapping(dom hyp.DomID, gport, mport, nr uint32, add bool) error {
	return x.d.IoportMapping(dom, gport, mport, nr, add)
}
