package hyptest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"godm/hyp/hcall"
	"godm/hyp/kernel"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"
	"godm/hyp/xensim/xenstored"
	"godm/hyp/xenstore"
)

// SimName is the name Simulated gives its guest in xenstore.
const SimName = "hyptest-guest"

// Simulated returns a Target on a fresh simulated Xen, closed when the test
// ends: a 3-vCPU HVM guest with 16 MiB of RAM around the legacy VGA hole
// (as libxl builds it), a xenstored reachable through the xenbus device
// holding the guest's home and name, an xenstore event channel the
// toolstack's way (a guest port offered to dom0, in
// HVM_PARAM_STORE_EVTCHN), and the guest played by the simulator.
func Simulated(t *testing.T) Target {
	t.Helper()
	sim := xensim.New(xensim.Config{})
	t.Cleanup(func() { sim.Close() })
	d, err := sim.CreateDomain(xensim.DomainConfig{VCPUs: 3, RAM: []xensim.Region{
		{GPA: 0, Size: HoleGFN * privcmd.PageSize},
		{GPA: 0xc0000, Size: 16<<20 - 0xc0000},
	}})
	if err != nil {
		t.Fatalf("CreateDomain: %v", err)
	}

	xs := xenstored.New(xenstored.Config{})
	t.Cleanup(func() { xs.Close() })
	sim.SetDevice(kernel.Xenbus, xs.XenbusFile)
	home := fmt.Sprintf("/local/domain/%d", d.ID())
	if err := xs.Write(home+"/name", []byte(SimName)); err != nil {
		t.Fatalf("xenstore: %v", err)
	}
	if err := xs.IntroduceDomain(d.ID()); err != nil {
		t.Fatalf("xenstore: introduce: %v", err)
	}

	// The toolstack's part: the guest's xenstore channel.
	port, err := d.AllocUnboundPort(0)
	if err != nil {
		t.Fatalf("store port: %v", err)
	}
	p, err := privcmd.Open(sim.Kernel(0))
	if err != nil {
		t.Fatalf("privcmd: %v", err)
	}
	defer p.Close()
	if err := hcall.New(p).SetHVMParam(d.ID(), xenabi.HVM_PARAM_STORE_EVTCHN, uint64(port)); err != nil {
		t.Fatalf("set HVM_PARAM_STORE_EVTCHN: %v", err)
	}

	k := sim.Kernel(0)
	return Target{
		Kernel: k,
		Dom:    d.ID(),
		Guest:  simGuest{sim: sim, d: d},
		XenStore: func(ctx context.Context) (*xenstore.Client, error) {
			return xenstore.OpenXenbus(k)
		},
		Name: SimName,
	}
}

// simGuest plays the guest's side on the simulated Xen.
type simGuest struct {
	sim *xensim.Sim
	d   *xensim.Domain
}

func (g simGuest) ReadRAM(gpa uint64, p []byte) error  { return g.d.ReadRAM(gpa, p) }
func (g simGuest) WriteRAM(gpa uint64, p []byte) error { return g.d.WriteRAM(gpa, p) }
func (g simGuest) OfferPort() (uint32, error)          { return g.d.AllocUnboundPort(0) }
func (g simGuest) Notify(p uint32) error               { return g.d.Notify(p) }

// ExpectNotify waits for the simulator's record of a device-model notify
// arriving at guest port p.
func (g simGuest) ExpectNotify(p uint32) func(time.Duration) error {
	mark := g.sim.LastSeq()
	dom := g.d.ID()
	return func(timeout time.Duration) error {
		_, err := g.sim.WaitEvent(mark, timeout, func(e xensim.Event) bool {
			return e.Kind == xensim.EventGuestNotify && e.Dom == dom && e.Data == uint64(p)
		})
		return err
	}
}

var _ Guest = simGuest{}
