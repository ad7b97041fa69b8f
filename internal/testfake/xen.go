package testfake

import (
	"testing"

	"godm/hyp/xensim"
)

// Xen is a simulated hypervisor with one domain.
type Xen struct {
	Sim *xensim.Sim
	Dom *xensim.Domain
}

// NewSim starts a simulated hypervisor configured by cfg, with no
// domain, and closes it when t's test ends.
func NewSim(t testing.TB, cfg xensim.Config) *xensim.Sim {
	s := xensim.New(cfg)
	t.Cleanup(func() { s.Close() })
	return s
}

// NewXen starts a simulated hypervisor configured by sim (NewSim),
// creates a domain configured by dom in it (failing t if it cannot), and
// closes the simulator when t's test ends.
func NewXen(t testing.TB, sim xensim.Config, dom xensim.DomainConfig) *Xen {
	t.Helper()
	s := NewSim(t, sim)
	d, err := s.CreateDomain(dom)
	if err != nil {
		t.Fatal(err)
	}
	return &Xen{Sim: s, Dom: d}
}

// RAM is a domain configuration with vcpus vCPUs and size bytes of RAM
// from guest-physical address 0.
func RAM(vcpus int, size uint64) xensim.DomainConfig {
	return xensim.DomainConfig{VCPUs: vcpus, RAM: []xensim.Region{{GPA: 0, Size: size}}}
}

// VCPU returns the domain's vCPU i.
func (x *Xen) VCPU(i int) *xensim.VCPU { return x.Dom.VCPU(i) }
