package simtarget

import (
	"fmt"
	"slices"

	"godm/hyp"
	"godm/hyp/xensim"
	"godm/internal/qtest"
)

// Target runs qtest steps on one vCPU of a xensim domain.
type Target struct {
	sim    *xensim.Sim
	dom    *xensim.Domain
	vcpus  []*xensim.VCPU
	next   int
	watch  []int
	levels map[int]bool
	seq    uint64

	// OnReset carries out a Reset step (the machine's board reset);
	// without it such a step fails.
	OnReset func()
}

// New returns a target driving vCPU v of dom, reporting edges of the ISA
// IRQs in watch. Events recorded before New are not reported; the
// current levels are the starting point.
func New(sim *xensim.Sim, dom *xensim.Domain, v *xensim.VCPU, watch ...int) *Target {
	t := &Target{sim: sim, dom: dom, vcpus: []*xensim.VCPU{v}, watch: watch, levels: map[int]bool{}, seq: sim.LastSeq()}
	for _, n := range watch {
		t.levels[n] = dom.ISAIRQLevel(uint8(n))
	}
	return t
}

// RoundRobin makes the steps run on vcpus in turn (the first step on
// vcpus[0]) instead of on the vCPU given to New: a device's answers must
// not depend on which vCPU asks, and Xen latches 0xcf8 per domain, so a
// configuration access whose two halves run on different vCPUs still
// works. An empty list changes nothing.
func (t *Target) RoundRobin(vcpus ...*xensim.VCPU) {
	if len(vcpus) > 0 {
		t.vcpus = vcpus
		t.next = 0
	}
}

// Run implements qtest.Target.
func (t *Target) Run(s qtest.Step) (qtest.Result, error) {
	size := int(s.Size)
	if size == 0 {
		size = 1
	}
	v := t.vcpus[t.next%len(t.vcpus)]
	t.next++
	var r qtest.Result
	var err error
	if s.Reset {
		if t.OnReset == nil {
			return r, fmt.Errorf("simtarget: %s: no reset hook", s)
		}
		t.OnReset()
		r.IRQs, err = t.edges()
		return r, err
	}
	if s.Write {
		err = v.Out(s.Port, size, s.Value)
	} else {
		r.Value, err = v.In(s.Port, size)
	}
	if err != nil {
		return r, fmt.Errorf("simtarget: vcpu%d %s: %w", v.ID(), s, err)
	}
	// The device model sets IRQ levels while it handles the request,
	// before it answers it, so the step's events are recorded by now.
	r.IRQs, err = t.edges()
	return r, err
}

// edges returns the level changes of the watched IRQs among the events
// recorded since the last step (or New), and marks those events seen. It
// fails when the simulator's event ring dropped events in between.
func (t *Target) edges() ([]qtest.IRQEvent, error) {
	var out []qtest.IRQEvent
	for _, e := range t.sim.EventsSince(t.seq) {
		if e.Seq != t.seq+1 {
			return out, fmt.Errorf("simtarget: events %d-%d were dropped from xensim's ring", t.seq+1, e.Seq-1)
		}
		t.seq = e.Seq
		if e.Kind != xensim.EventISAIRQ || e.Dom != t.dom.ID() || !slices.Contains(t.watch, int(e.IRQ)) {
			continue
		}
		if n := int(e.IRQ); t.levels[n] != e.Level {
			t.levels[n] = e.Level
			out = append(out, qtest.IRQEvent{Line: n, High: e.Level})
		}
	}
	return out, nil
}

// Dom returns the domain the target's vCPU belongs to.
func (t *Target) Dom() hyp.DomID { return t.dom.ID() }
