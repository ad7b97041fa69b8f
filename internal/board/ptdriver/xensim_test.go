package ptdriver

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"godm/devices"
	"godm/hyp/domctl"
	"godm/hyp/hcall"
	"godm/hyp/privcmd"
	"godm/hyp/xensim"
	"godm/internal/board"
	"godm/internal/machine"
	"godm/internal/testfake"
	"godm/passthrough"
	"godm/passthrough/pttest"
	"godm/pci"
)

// A xen-pci-passthrough device plugged through the board's driver table
// shows the host function to the guest at the slot asked for; unplugging
// it leaves Xen's records of the ioreq server as they were.
func TestPassthroughThroughBoard(t *testing.T) {
	if passthrough.DriverName != board.PassthroughDriver {
		t.Fatalf("driver names differ: %q, %q", passthrough.DriverName, board.PassthroughDriver)
	}
	xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(1, 16<<20))
	sim, dom := xen.Sim, xen.Dom
	m, err := machine.New(sim.Kernel(0), machine.Spec{Dom: dom.ID(), VCPUs: 1, MemBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	p, err := privcmd.Open(sim.Kernel(0))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := hcall.New(p)
	dc, err := domctl.Open(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := dc.AssignDevice(dom.ID(), uint32(devices.NewSBDF(0, 0, 3, 0)), 0); err != nil {
		t.Fatal(err)
	}
	if err := dc.IomemPermission(dom.ID(), 0x4000100, 0x80, true); err != nil {
		t.Fatal(err)
	}
	mgr := passthrough.NewManager(passthrough.ManagerConfig{
		Dom: dom.ID(), Bus: m.Spaces, Xen: passthrough.NewXen(c, dc),
		HostOptions: passthrough.HostOptions{SysfsRoot: pttest.SampleSysfs(t)},
		Assign:      dc, Slots: m.PCI,
	})
	defer mgr.Close()
	m.Board.SetPassthrough(func() (board.PCIPassthrough, error) { return Adapter{mgr}, nil })

	before, _ := dom.IOReqRanges(uint16(m.Server.ID()))
	pl, err := m.Board.Plug(board.PassthroughDriver, "pt0", board.NewProps(map[string]string{"hostaddr": "0000:00:03.0", "addr": "07"}))
	if err != nil {
		t.Fatal(err)
	}
	if g := pl.Dev.(*board.Passthrough).Guest; g.Dev() != 7 {
		t.Errorf("passed through at %v, want slot 7", g)
	}
	v := dom.VCPU(0)
	if got, err := v.PCIConfigRead(7<<3, 0, 4); err != nil || got != 0x10411af4 {
		t.Errorf("guest 00:07.0 IDs = %#x, %v; want the host's virtio-net 1af4:1041", got, err)
	}
	// query-pci's view: the guest's identity and the host BARs' shapes,
	// decoding nowhere until the guest places them.
	view := pl.Dev.(*board.Passthrough).View
	if view == nil || view.SBDF().Dev() != 7 || view.ConfigRead(0, 4) != 0x10411af4 {
		t.Fatalf("view %v", view)
	}
	regs := view.Regions()
	t.Logf("regions %+v", regs)
	if len(regs) == 0 {
		t.Fatal("no regions")
	}
	for _, r := range regs {
		if r.Mapped || r.Size == 0 || r.Size&(r.Size-1) != 0 {
			t.Errorf("region before placement: %+v", r)
		}
	}
	// The guest places the first memory BAR and enables memory decoding.
	var first pci.Region
	for _, r := range regs {
		if !r.IO && r.BAR < 6 {
			first = r
			break
		}
	}
	reg := uint32(0x10 + 4*first.BAR)
	if err := v.PCIConfigWrite(7<<3, reg, 4, 0xe0000000); err != nil {
		t.Fatal(err)
	}
	if first.Mem64 {
		if err := v.PCIConfigWrite(7<<3, reg+4, 4, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.PCIConfigWrite(7<<3, 4, 2, 2); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range view.Regions() {
		if r.BAR == first.BAR {
			found = true
			if !r.Mapped || r.Address != 0xe0000000 || r.Size != first.Size {
				t.Errorf("BAR %d after placement: %+v", r.BAR, r)
			}
		}
	}
	if !found {
		t.Errorf("BAR %d gone", first.BAR)
	}
	// A passed-through function's state is the host's: the board refuses
	// to snapshot it, naming it.
	if _, err := m.Board.Snapshot(); !errors.Is(err, board.ErrNotSavable) || !strings.Contains(err.Error(), "'pt0'") {
		t.Errorf("snapshot with a passed-through function: %v", err)
	}
	if err := m.Board.Unplug("pt0"); err != nil {
		t.Fatal(err)
	}
	if got, _ := v.PCIConfigRead(7<<3, 0, 4); got != 0xffffffff {
		t.Errorf("slot 7 after unplug answers %#x", got)
	}
	if after, _ := dom.IOReqRanges(uint16(m.Server.ID())); !reflect.DeepEqual(after, before) {
		t.Errorf("Xen claims after unplug %v, before %v", after, before)
	}
	if len(mgr.List()) != 0 {
		t.Errorf("manager still lists %v", mgr.List())
	}
}
