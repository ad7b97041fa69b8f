package xensim_test

import (
	"fmt"

	"godm/hyp/dm"
	"godm/hyp/privcmd"
	"godm/hyp/xensim"
)

// A simulated guest, a device model's DM op through godm's real privcmd
// and dm packages, and what the simulated Xen recorded.
func Example() {
	sim := xensim.New(xensim.Config{})
	defer sim.Close()
	guest, err := sim.CreateDomain(xensim.DomainConfig{VCPUs: 1, RAM: []xensim.Region{{GPA: 0, Size: 1 << 20}}})
	if err != nil {
		panic(err)
	}
	// Nothing claims port 0x60 yet: the read floats to all-ones.
	v, _ := guest.VCPU(0).In(0x60, 1)
	fmt.Printf("in(0x60) = %#x\n", v)

	pc, err := privcmd.Open(sim.Kernel(0))
	if err != nil {
		panic(err)
	}
	defer pc.Close()
	if err := dm.New(pc, guest.ID()).SetISAIRQLevel(1, true); err != nil {
		panic(err)
	}
	for _, e := range sim.Events() {
		fmt.Println(e.Kind, e.IRQ, e.Level)
	}
	// Output:
	// in(0x60) = 0xff
	// isa-irq 1 true
}
