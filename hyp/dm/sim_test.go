package dm_test

import (
	"errors"
	"testing"

	"godm/hyp/dm"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"
	"godm/internal/testfake"

	"golang.org/x/sys/unix"
)

// simClient returns a dm.Client for a fresh simulated guest, through the
// same kernel seam the real host uses.
func simClient(t testing.TB) (*dm.Client, *xensim.Sim, *xensim.Domain) {
	t.Helper()
	xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(2, 1<<20))
	sim, d := xen.Sim, xen.Dom
	p, err := privcmd.Open(sim.Kernel(0))
	if err != nil {
		t.Fatalf("privcmd.Open: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return dm.New(p, d.ID()), sim, d
}

func TestSimulatedXen(t *testing.T) {
	c, sim, d := simClient(t)
	id, err := c.CreateIOReqServer(xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC)
	if err != nil {
		t.Fatalf("CreateIOReqServer: %v", err)
	}
	if _, err := c.GetIOReqServerInfo(id, true); err != nil {
		t.Fatalf("GetIOReqServerInfo: %v", err)
	}
	if err := c.MapIORange(id, dm.PortRange, 0x3f8, 0x3ff); err != nil {
		t.Fatalf("MapIORange: %v", err)
	}
	if err := c.MapPCIDev(id, 0, 0, 3, 0); err != nil {
		t.Fatalf("MapPCIDev: %v", err)
	}
	if err := c.SetIOReqServerState(id, true); err != nil {
		t.Fatalf("SetIOReqServerState: %v", err)
	}
	n, err := c.NrVCPUs()
	if err != nil || n != 2 {
		t.Errorf("NrVCPUs = %d, %v; want 2", n, err)
	}
	mark := sim.LastSeq()
	if err := c.SetISAIRQLevel(4, true); err != nil {
		t.Fatalf("SetISAIRQLevel: %v", err)
	}
	if err := c.InjectMSI(0xfee01000, 0x4041); err != nil {
		t.Fatalf("InjectMSI: %v", err)
	}
	if err := c.SetPCIIntxLevel(0, 0, 3, 1, true); err != nil {
		t.Fatalf("SetPCIIntxLevel: %v", err)
	}
	if err := c.RemoteShutdown(xenabi.SHUTDOWN_reboot); err != nil {
		t.Fatalf("RemoteShutdown: %v", err)
	}
	var kinds []xensim.EventKind
	for _, e := range sim.EventsSince(mark) {
		kinds = append(kinds, e.Kind)
		switch e.Kind {
		case xensim.EventISAIRQ:
			if e.IRQ != 4 || !e.Level {
				t.Errorf("ISA IRQ event %v, want IRQ 4 high", e)
			}
		case xensim.EventMSI:
			if e.Addr != 0xfee01000 || e.Data != 0x4041 {
				t.Errorf("MSI event %v, want 0xfee01000/0x4041", e)
			}
		case xensim.EventPCIIntx:
			if e.Dev != 3 || e.Pin != 1 || !e.Level {
				t.Errorf("INTx event %v, want dev 3 INTB high", e)
			}
		}
	}
	want := []xensim.EventKind{xensim.EventISAIRQ, xensim.EventMSI, xensim.EventPCIIntx, xensim.EventShutdown}
	if len(kinds) != len(want) {
		t.Fatalf("events %v, want kinds %v", sim.EventsSince(mark), want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Errorf("event %d kind %d, want %d", i, kinds[i], want[i])
		}
	}
	if got := d.ShutdownReason(); got != xenabi.SHUTDOWN_reboot {
		t.Errorf("ShutdownReason = %d, want reboot", got)
	}
	if err := c.DestroyIOReqServer(id); err != nil {
		t.Fatalf("DestroyIOReqServer: %v", err)
	}
	if err := c.DestroyIOReqServer(id); err == nil {
		t.Errorf("second DestroyIOReqServer: got nil error")
	}
}

func TestSimulatedRestrict(t *testing.T) {
	xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(1, 1<<20))
	sim, d := xen.Sim, xen.Dom
	p, err := privcmd.Open(sim.Kernel(0))
	if err != nil {
		t.Fatalf("privcmd.Open: %v", err)
	}
	defer p.Close()
	if err := p.Restrict(d.ID() + 1); err != nil {
		t.Fatalf("Restrict: %v", err)
	}
	_, err = dm.New(p, d.ID()).NrVCPUs()
	if !errors.Is(err, unix.EPERM) {
		t.Errorf("DM op for another domain after Restrict = %v, want EPERM", err)
	}
}

// TestSimulatedSetIRQLevel checks that x86 Xen refuses the Arm-only
// set_irq_level: xen/arch/x86/hvm/dm.c has no case for it, so dm_op's
// default answers EOPNOTSUPP, and nothing is recorded.
func TestSimulatedSetIRQLevel(t *testing.T) {
	c, sim, _ := simClient(t)
	mark := sim.LastSeq()
	if err := c.SetIRQLevel(40, true); !errors.Is(err, unix.EOPNOTSUPP) {
		t.Errorf("SetIRQLevel on x86 = %v, want EOPNOTSUPP", err)
	}
	if evs := sim.EventsSince(mark); len(evs) != 0 {
		t.Errorf("events %v, want none", evs)
	}
}
