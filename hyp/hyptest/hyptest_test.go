package hyptest

import (
	"testing"

	"godm/hyp/xensim"
)

func TestSimulatedXen(t *testing.T) {
	sim := xensim.New(xensim.Config{})
	defer sim.Close()
	dom, err := sim.CreateDomain(xensim.DomainConfig{VCPUs: 3, RAM: []xensim.Region{{GPA: 0, Size: 16 << 20}}})
	if err != nil {
		t.Fatal(err)
	}
	Run(t, Target{Kernel: sim.Kernel(0), Dom: dom.ID()})
}

func TestRealXen(t *testing.T) {
	Run(t, RealXen(t))
}
