package machine

import (
	"testing"

	"godm/devices"
	"godm/hyp/domctl"
	"godm/hyp/hcall"
	"godm/hyp/privcmd"
	"godm/hyp/xensim"
	"godm/internal/board"
	"godm/internal/board/ptdriver"
	"godm/passthrough"
	"godm/passthrough/pttest"
	"godm/pci"
)

// TestPassthroughSlots: a passed-through function's slot is reserved in
// the machine's PCI registry, so emulated functions placed automatically
// go around it (in both orders of plugging); the guest's ACPI eject of the
// slot removes the function, undoes everything in Xen and frees the slot.
func TestPassthroughSlots(t *testing.T) {
	r := newRig(t)
	p, err := privcmd.Open(r.sim.Kernel(0))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := hcall.New(p)
	dc, err := domctl.Open(c)
	if err != nil {
		t.Fatal(err)
	}
	host := devices.NewSBDF(0, 0, 3, 0)
	if err := dc.AssignDevice(r.dom.ID(), uint32(host), 0); err != nil {
		t.Fatal(err)
	}
	if err := dc.IomemPermission(r.dom.ID(), 0x4000100, 0x80, true); err != nil {
		t.Fatal(err)
	}
	mgr := passthrough.NewManager(passthrough.ManagerConfig{
		Dom: r.dom.ID(), Bus: r.m.Spaces, Xen: passthrough.NewXen(c, dc),
		HostOptions: passthrough.HostOptions{SysfsRoot: pttest.SampleSysfs(t)},
		Assign:      dc, Slots: r.m.PCI,
	})
	defer mgr.Close()
	r.m.SetEjectHook(mgr.RemoveSlot)
	defer r.m.SetEjectHook(nil)

	// The machine holds slots 0 (host bridge), 1 (PIIX), 2 (platform) and
	// 5 (test device): the passed-through function gets 3.
	pl, err := mgr.AddWith(passthrough.DeviceSpec{ID: "pt", HostAddr: host, Slot: -1},
		passthrough.AddOptions{RequireAssigned: true})
	if err != nil {
		t.Fatal(err)
	}
	if pl.SBDF.Dev() != 3 || !r.m.PCI.Reserved(3) {
		t.Fatalf("passed through at %v (reserved %v), want slot 3", pl.SBDF, r.m.PCI.Reserved(3))
	}
	if got := r.cfg(3, 0, 0); got != 0x10411af4 {
		t.Errorf("guest reads %#x at 00:03.0, want the virtio-net IDs", got)
	}
	// Emulated functions placed afterwards go around it.
	f, err := pci.NewFunction(pci.Header{VendorID: 0x1b36, DeviceID: 0x0005, Class: 0xff0000})
	if err != nil {
		t.Fatal(err)
	}
	sbdf, err := r.m.PCI.AddAuto(f)
	if err != nil || sbdf.Dev() != 4 {
		t.Errorf("AddAuto after passthrough = %v, %v; want slot 4", sbdf, err)
	}
	// A fixed slot an emulated function holds is refused, nothing left.
	mark := r.sim.LastSeq()
	if _, err := mgr.Add(passthrough.DeviceSpec{ID: "pt2", HostAddr: host, Slot: 4}); err == nil {
		t.Error("passthrough into an emulated function's slot succeeded")
	}
	if ev := r.sim.EventsSince(mark); len(ev) != 0 {
		t.Errorf("refused Add reached Xen: %v", ev)
	}

	// The guest enables the function, then ejects its slot.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	s := uint32(pl.SBDF)
	must(r.v.PCIConfigWrite(s, 0x10, 4, 0xe000000c))
	must(r.v.PCIConfigWrite(s, 0x14, 4, 0))
	must(r.v.PCIConfigWrite(s, 0x04, 2, 0x0006))
	if n := len(kindsOf(r.sim.Events(), xensim.EventMemoryMapping)); n == 0 {
		t.Fatal("BAR0 not mapped")
	}
	must((ejector{r.m}).EjectPCISlot(3))
	if got := r.cfg(3, 0, 0); got != 0xffffffff {
		t.Errorf("ejected function still answers: %#x", got)
	}
	if r.m.PCI.Reserved(3) || len(mgr.List()) != 0 {
		t.Errorf("after eject: reserved %v, devices %v", r.m.PCI.Reserved(2), mgr.List())
	}
	frames := map[uint64]bool{}
	for _, e := range kindsOf(r.sim.Events(), xensim.EventMemoryMapping) {
		for i := uint64(0); i < e.Nr; i++ {
			if e.Level {
				frames[e.First+i] = true
			} else {
				delete(frames, e.First+i)
			}
		}
	}
	if len(frames) != 0 {
		t.Errorf("frames left mapped after eject: %d", len(frames))
	}
	// The freed slot takes an emulated function.
	f2, err := pci.NewFunction(pci.Header{VendorID: 0x1b36, DeviceID: 0x0005, Class: 0xff0000})
	must(err)
	if sbdf, err := r.m.PCI.AddAuto(f2); err != nil || sbdf.Dev() != 3 {
		t.Errorf("AddAuto after eject = %v, %v; want slot 3", sbdf, err)
	}
}

func kindsOf(evs []xensim.Event, k xensim.EventKind) []xensim.Event {
	var out []xensim.Event
	for _, e := range evs {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// TestPassthroughBoardEject: a function passed through by the board's
// xen-pci-passthrough driver (as godm serve -device and libxl's
// device_add plug it) is found by id; the guest's ACPI eject of its slot
// unplugs it from the board (no stale entry a later device_del or
// query-pci would find), the Manager and Xen.
func TestPassthroughBoardEject(t *testing.T) {
	r := newRig(t)
	p, err := privcmd.Open(r.sim.Kernel(0))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := hcall.New(p)
	dc, err := domctl.Open(c)
	if err != nil {
		t.Fatal(err)
	}
	host := devices.NewSBDF(0, 0, 3, 0)
	if err := dc.AssignDevice(r.dom.ID(), uint32(host), 0); err != nil {
		t.Fatal(err)
	}
	if err := dc.IomemPermission(r.dom.ID(), 0x4000100, 0x80, true); err != nil {
		t.Fatal(err)
	}
	mgr := passthrough.NewManager(passthrough.ManagerConfig{
		Dom: r.dom.ID(), Bus: r.m.Spaces, Xen: passthrough.NewXen(c, dc),
		HostOptions: passthrough.HostOptions{SysfsRoot: pttest.SampleSysfs(t)},
		Assign:      dc, Slots: r.m.PCI,
	})
	defer mgr.Close()
	r.m.Board.SetPassthrough(func() (board.PCIPassthrough, error) { return ptdriver.Adapter{M: mgr}, nil })
	// A command-line device: plugged while the board is being built, so
	// it must be assigned to the domain already.
	if err := r.m.Board.Build([]board.Entry{{Driver: board.PassthroughDriver,
		Props: map[string]string{"id": "pt0", "hostaddr": "0000:00:03.0", "addr": "6"}}}); err != nil {
		t.Fatal(err)
	}
	pl := r.m.Board.Device("pt0")
	if pl == nil {
		t.Fatal("pt0 not on the board")
	}
	pt := pl.Dev.(*board.Passthrough)
	if pt.Guest.Dev() != 6 || len(mgr.List()) != 1 {
		t.Fatalf("passed through at %v, manager holds %v", pt.Guest, mgr.List())
	}
	if got := r.cfg(6, 0, 0); got != 0x10411af4 {
		t.Errorf("guest reads %#x at 00:06.0, want the virtio-net IDs", got)
	}
	s := uint32(pt.Guest)
	for _, w := range []struct {
		off  uint32
		size int
		v    uint64
	}{{0x10, 4, 0xe000000c}, {0x14, 4, 0}, {0x04, 2, 0x0006}} {
		if err := r.v.PCIConfigWrite(s, w.off, w.size, w.v); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(kindsOf(r.sim.Events(), xensim.EventMemoryMapping)); n == 0 {
		t.Fatal("BAR0 not mapped")
	}
	if err := (ejector{r.m}).EjectPCISlot(6); err != nil {
		t.Fatal(err)
	}
	if r.m.Board.Device("pt0") != nil {
		t.Error("the ejected function is still on the board")
	}
	if len(mgr.List()) != 0 || r.m.PCI.Reserved(6) {
		t.Errorf("after eject: manager holds %v, slot reserved %v", mgr.List(), r.m.PCI.Reserved(6))
	}
	if got := r.cfg(6, 0, 0); got != 0xffffffff {
		t.Errorf("ejected function still answers: %#x", got)
	}
	frames := map[uint64]bool{}
	for _, e := range kindsOf(r.sim.Events(), xensim.EventMemoryMapping) {
		for i := uint64(0); i < e.Nr; i++ {
			if e.Level {
				frames[e.First+i] = true
			} else {
				delete(frames, e.First+i)
			}
		}
	}
	if len(frames) != 0 {
		t.Errorf("frames left mapped after eject: %d", len(frames))
	}
	// A function not assigned to the domain is refused on the command
	// line, and nothing stays.
	if err := r.m.Board.Build([]board.Entry{{Driver: board.PassthroughDriver,
		Props: map[string]string{"id": "pt1", "hostaddr": "0000:00:04.0"}}}); err == nil {
		t.Error("an unassigned function was passed through from the command line")
	}
	if r.m.Board.Device("pt1") != nil || len(mgr.List()) != 0 {
		t.Error("the refused function left something behind")
	}
}
