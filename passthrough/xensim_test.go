package passthrough

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"godm/devices"
	"godm/hyp"
	"godm/hyp/dm"
	"godm/hyp/domctl"
	"godm/hyp/hcall"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"
	"godm/internal/testfake"
	"godm/ioreq"
)

// simRig is a simulated Xen with one HVM guest (256 MiB of RAM) and a
// fake sysfs tree holding the synthetic function and a real sample.
type simRig struct {
	sim  *xensim.Sim
	dom  *xensim.Domain
	root string
}

func newSimRig(t *testing.T) *simRig {
	t.Helper()
	xen := testfake.NewXen(t, xensim.Config{IOReqTimeout: 20 * time.Second}, testfake.RAM(1, 256<<20))
	sim, dom := xen.Sim, xen.Dom
	r := &simRig{sim: sim, dom: dom, root: tree(t, synthetic(), loadSample(t, "0000_00_03.0"))}
	r.grantLikeLibxl(t)
	return r
}

// grantLikeLibxl gives the guest what libxl's pci_add_dm_done grants for
// both functions of the tree: their I/O memory and ports, and the
// functions themselves in the IOMMU (tools/libs/light/libxl_pci.c).
func (r *simRig) grantLikeLibxl(t *testing.T) {
	t.Helper()
	p, err := privcmd.Open(r.sim.Kernel(0))
	must(t, err)
	defer p.Close()
	dc, err := domctl.Open(hcall.New(p))
	must(t, err)
	for _, d := range []sysfsDevice{synthetic(), loadSample(t, "0000_00_03.0")} {
		addr, err := ParseSBDF(d.addr)
		must(t, err)
		must(t, dc.AssignDevice(r.dom.ID(), uint32(addr), 0))
		for _, res := range d.resources {
			switch {
			case res.Start == 0:
			case res.IO():
				must(t, dc.IoportPermission(r.dom.ID(), uint32(res.Start), uint32(res.Size()), true))
			default:
				must(t, dc.IomemPermission(r.dom.ID(), res.Start/pageSize, (res.Size()+pageSize-1)/pageSize, true))
			}
		}
	}
}

// revokeLikeLibxl takes the grants back (libxl's do_pci_remove).
func (r *simRig) revokeLikeLibxl(t *testing.T) {
	t.Helper()
	p, err := privcmd.Open(r.sim.Kernel(0))
	must(t, err)
	defer p.Close()
	dc, err := domctl.Open(hcall.New(p))
	must(t, err)
	for _, d := range []sysfsDevice{synthetic(), loadSample(t, "0000_00_03.0")} {
		addr, err := ParseSBDF(d.addr)
		must(t, err)
		must(t, dc.DeassignDevice(r.dom.ID(), uint32(addr)))
		for _, res := range d.resources {
			switch {
			case res.Start == 0:
			case res.IO():
				must(t, dc.IoportPermission(r.dom.ID(), uint32(res.Start), uint32(res.Size()), false))
			default:
				must(t, dc.IomemPermission(r.dom.ID(), res.Start/pageSize, (res.Size()+pageSize-1)/pageSize, false))
			}
		}
	}
}

// standalone runs Standalone for host in a goroutine and returns the
// plugged device, a stop function and the channel Standalone's result
// arrives on.
func (r *simRig) standalone(t *testing.T, host string, slot uint8) (*Device, context.CancelFunc, chan error) {
	t.Helper()
	addr, err := ParseSBDF(host)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ready := make(chan *Device, 1)
	done := make(chan error, 1)
	go func() {
		done <- Standalone(ctx, r.sim.Kernel(0), StandaloneConfig{Dom: r.dom.ID(), Host: addr, Slot: slot,
			HostOptions: HostOptions{SysfsRoot: r.root}, Ready: func(d *Device, _ dm.ServerID) { ready <- d }})
	}()
	select {
	case d := <-ready:
		return d, cancel, done
	case err := <-done:
		t.Fatalf("Standalone: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("Standalone did not become ready")
	}
	return nil, nil, nil
}

func wait(t *testing.T, done chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Standalone did not return")
	}
	return nil
}

// hvState is what the recorded hypercalls leave in the hypervisor.
type hvState struct {
	pirqs    map[uint64]bool
	bindings map[uint64]bool
	frames   map[uint64]uint64
	ports    map[uint64]uint64
	servers  int
	// iomem is the machine frames the guest may access, and ungranted the
	// memory_mapping adds of frames it was not granted: real Xen refuses
	// them (xen/common/domctl.c checks the target domain's
	// iomem_access_permitted as well as the caller's); the simulator only
	// checks the caller, so replay checks the rest.
	iomem     map[uint64]bool
	ungranted []xensim.Event
	// lost counts the first events xensim's ring no longer held: a
	// replay without them cannot tell what is left, so clean fails.
	lost uint64
}

func replay(evs []xensim.Event) hvState {
	s := hvState{pirqs: map[uint64]bool{}, bindings: map[uint64]bool{}, frames: map[uint64]uint64{}, ports: map[uint64]uint64{},
		iomem: map[uint64]bool{}}
	if len(evs) > 0 {
		s.lost = evs[0].Seq - 1
	}
	for _, e := range evs {
		switch e.Kind {
		case xensim.EventMapPIRQ:
			s.pirqs[e.Data] = true
		case xensim.EventUnmapPIRQ:
			delete(s.pirqs, e.Data)
		case xensim.EventBindPtIRQ:
			if e.Level {
				s.bindings[e.Data] = true
			} else {
				delete(s.bindings, e.Data)
			}
		case xensim.EventPermission:
			if e.Type == xenabi.XEN_DOMCTL_iomem_permission {
				for i := uint64(0); i < e.Nr; i++ {
					if e.Level {
						s.iomem[e.First+i] = true
					} else {
						delete(s.iomem, e.First+i)
					}
				}
			}
		case xensim.EventMemoryMapping:
			for i := uint64(0); e.Level && i < e.Nr; i++ {
				if !s.iomem[e.Addr+i] {
					s.ungranted = append(s.ungranted, e)
					break
				}
			}
			for i := uint64(0); i < e.Nr; i++ {
				if e.Level {
					s.frames[e.First+i] = e.Addr + i
				} else {
					delete(s.frames, e.First+i)
				}
			}
		case xensim.EventIOPortMapping:
			for i := uint64(0); i < e.Nr; i++ {
				if e.Level {
					s.ports[e.First+i] = e.Addr + i
				} else {
					delete(s.ports, e.First+i)
				}
			}
		case xensim.EventIOReqServer:
			switch e.Detail {
			case "create":
				s.servers++
			case "destroy":
				s.servers--
			}
		}
	}
	return s
}

func (s hvState) clean() error {
	if s.lost != 0 {
		return fmt.Errorf("xensim's event ring dropped the first %d events: the replay cannot check what is left", s.lost)
	}
	if len(s.ungranted) != 0 {
		return fmt.Errorf("memory_mapping of frames the guest was not granted (real Xen: EPERM): %v", s.ungranted)
	}
	if len(s.pirqs)+len(s.bindings)+len(s.frames)+len(s.ports)+s.servers != 0 {
		return fmt.Errorf("left in the hypervisor: pirqs %v, bindings %v, %d frames, %d ports, %d ioreq servers",
			s.pirqs, s.bindings, len(s.frames), len(s.ports), s.servers)
	}
	return nil
}

func kinds(evs []xensim.Event, ks ...xensim.EventKind) []xensim.Event {
	var out []xensim.Event
	for _, e := range evs {
		for _, k := range ks {
			if e.Kind == k {
				out = append(out, e)
			}
		}
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestStandaloneScenario drives the synthetic function from a simulated
// guest through the standalone server: BAR sizing and placement, memory
// decoding, MSI then MSI-X, masking, hidden and reserved writes, and an
// abrupt stop, checking each step against the recorded hypercalls.
func TestStandaloneScenario(t *testing.T) {
	r := newSimRig(t)
	dev, stop, done := r.standalone(t, "0000:03:00.0", 5)
	sbdf := uint32(devices.NewSBDF(0, 0, 5, 0))
	v := r.dom.VCPU(0)
	cr := func(reg uint32, size int) uint64 {
		t.Helper()
		x, err := v.PCIConfigRead(sbdf, reg, size)
		must(t, err)
		return x
	}
	cw := func(reg uint32, size int, val uint64) {
		t.Helper()
		must(t, v.PCIConfigWrite(sbdf, reg, size, val))
	}
	// INTx: GSI 17 mapped and bound to 00:05.0 INTA at plug time.
	evs := r.sim.Events()
	pt := kinds(evs, xensim.EventMapPIRQ, xensim.EventBindPtIRQ)
	if len(pt) != 2 || pt[0].Type != xenabi.MAP_PIRQ_TYPE_GSI || pt[0].Addr != 17 ||
		pt[1].Type != xenabi.PT_IRQ_TYPE_PCI || pt[1].Data != pt[0].Data || pt[1].Dev != 5 || pt[1].Pin != 0 || !pt[1].Level {
		t.Fatalf("INTx set-up events = %v", pt)
	}
	if got := cr(0, 4); got != 0x10d38086 {
		t.Fatalf("guest reads vendor/device %#x", got)
	}
	// Another slot is not claimed.
	if got, _ := v.PCIConfigRead(uint32(devices.NewSBDF(0, 0, 6, 0)), 0, 4); got != 0xffffffff {
		t.Errorf("unclaimed slot reads %#x", got)
	}

	// BAR sizing and placement, then decoding.
	mark := r.sim.LastSeq()
	cw(0x10, 4, 0xffffffff)
	if got := cr(0x10, 4); got != 0xfffe0000 {
		t.Errorf("BAR0 size probe = %#x", got)
	}
	cw(0x10, 4, 0xe0000000)
	cw(0x18, 4, 0xc000)
	cw(0x1c, 4, 0xe0100000)
	if m := kinds(r.sim.EventsSince(mark), xensim.EventMemoryMapping, xensim.EventIOPortMapping); len(m) != 0 {
		t.Errorf("mapped with decoding off: %v", m)
	}
	cw(0x04, 2, 0x0007)
	m := kinds(r.sim.EventsSince(mark), xensim.EventMemoryMapping, xensim.EventIOPortMapping)
	type mp struct {
		k       xensim.EventKind
		g, m, n uint64
		add     bool
	}
	var got []mp
	for _, e := range m {
		got = append(got, mp{e.Kind, e.First, e.Addr, e.Nr, e.Level})
	}
	want := []mp{
		{xensim.EventMemoryMapping, 0xe0000, 0xf7c00, 32, true},
		{xensim.EventIOPortMapping, 0xc000, 0xe000, 32, true},
		{xensim.EventMemoryMapping, 0xe0101, 0xf7c21, 1, true},
		{xensim.EventMemoryMapping, 0xe0103, 0xf7c23, 1, true},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("mappings = %v, want %v", got, want)
	}
	// The mapped BAR is hardware now (the simulator has none: all-ones);
	// the MSI-X table page still reaches godm.
	if x, err := v.MMIORead(0xe0000000, 4); err != nil || x != 0xffffffff {
		t.Errorf("mapped BAR0 read = %#x, %v", x, err)
	}
	must(t, v.MMIOWrite(0xe0100008, 4, 0x77))
	if x, err := v.MMIORead(0xe0100008, 4); err != nil || x != 0x77 {
		t.Errorf("MSI-X table through the trap = %#x, %v", x, err)
	}

	// Move BAR0.
	mark = r.sim.LastSeq()
	cw(0x10, 4, 0xe0400000)
	m = kinds(r.sim.EventsSince(mark), xensim.EventMemoryMapping)
	if len(m) != 2 || m[0].Level || m[0].First != 0xe0000 || !m[1].Level || m[1].First != 0xe0400 {
		t.Errorf("move events = %v", m)
	}

	// MSI: enable, reprogram, disable.
	mark = r.sim.LastSeq()
	cw(0xd4, 4, 0xfee00000)
	cw(0xdc, 2, 0x41)
	cw(0xd2, 2, 1)
	ev := kinds(r.sim.EventsSince(mark), xensim.EventMapPIRQ, xensim.EventBindPtIRQ)
	if len(ev) != 2 || ev[0].Type != xenabi.MAP_PIRQ_TYPE_MSI || ev[0].First != 3 || ev[0].Nr != 0 ||
		ev[1].Type != xenabi.PT_IRQ_TYPE_MSI || ev[1].First != 0x41 || ev[1].Data != ev[0].Data {
		t.Fatalf("MSI enable events = %v", ev)
	}
	msiPirq := ev[0].Data
	mark = r.sim.LastSeq()
	cw(0xdc, 2, 0x42)
	ev = kinds(r.sim.EventsSince(mark), xensim.EventMapPIRQ, xensim.EventBindPtIRQ)
	if len(ev) != 1 || ev[0].Kind != xensim.EventBindPtIRQ || ev[0].First != 0x42 || ev[0].Data != msiPirq {
		t.Errorf("MSI reprogram events = %v", ev)
	}
	mark = r.sim.LastSeq()
	cw(0xd2, 2, 0)
	ev = kinds(r.sim.EventsSince(mark), xensim.EventUnmapPIRQ, xensim.EventBindPtIRQ)
	if len(ev) != 2 || ev[0].Level || ev[0].Data != msiPirq || ev[1].Kind != xensim.EventUnmapPIRQ || ev[1].Data != msiPirq {
		t.Errorf("MSI disable events = %v", ev)
	}

	// MSI-X: program two entries, enable, mask and unmask.
	mark = r.sim.LastSeq()
	for i, vec := range []uint64{0x51, 0x52} {
		base := 0xe0100000 + uint64(16*i)
		must(t, v.MMIOWrite(base, 4, 0xfee00000|uint64(i)<<12))
		must(t, v.MMIOWrite(base+4, 4, 0))
		must(t, v.MMIOWrite(base+8, 4, vec))
		must(t, v.MMIOWrite(base+12, 4, 0))
	}
	cw(0xa2, 2, 0x8000)
	ev = kinds(r.sim.EventsSince(mark), xensim.EventMapPIRQ, xensim.EventBindPtIRQ)
	if len(ev) != 4 {
		t.Fatalf("MSI-X enable events = %v", ev)
	}
	for i, e := range ev[1:2] {
		if e.Addr != 0xe0100000 || e.First != 0x51+uint64(i) {
			t.Errorf("MSI-X binding %d = %v, want gtable 0xe0100000", i, e)
		}
	}
	mark = r.sim.LastSeq()
	must(t, v.MMIOWrite(0xe0100000+12, 4, 1)) // mask entry 0
	must(t, v.MMIOWrite(0xe0100000+8, 4, 0x61))
	must(t, v.MMIOWrite(0xe0100000+12, 4, 0)) // unmask: rebind
	ev = kinds(r.sim.EventsSince(mark), xensim.EventMapPIRQ, xensim.EventBindPtIRQ)
	if len(ev) != 1 || ev[0].First != 0x61 {
		t.Errorf("mask/unmask events = %v", ev)
	}

	// Hidden and reserved registers: nothing reaches the host.
	h := dev.cfg.Host
	cw(0x40, 4, 0xffffffff)
	cw(0x38, 4, 0xffffffff)
	cw(0xf0, 1, 0x12)
	if got := hostCfg(t, h, 0x40, 2); got != 0xc803 {
		t.Errorf("hidden VPD header on the host = %#x", got)
	}
	if got := hostCfg(t, h, 0xf0, 1); got != 0x77 {
		t.Errorf("uncovered byte on the host = %#x", got)
	}
	if got := cr(0x40, 4); got != 0 {
		t.Errorf("hidden capability reads %#x", got)
	}

	// Abrupt stop with everything enabled.
	stop()
	if err := wait(t, done); err != nil {
		t.Fatalf("Standalone: %v", err)
	}
	if err := replay(r.sim.Events()).clean(); err != nil {
		t.Error(err)
	}
	for _, e := range r.sim.Violations() {
		t.Errorf("protocol violation: %v", e)
	}
}

// TestStandaloneRealSample passes this machine's virtio-net function (a
// fake tree from its real config space) through and stops.
func TestStandaloneRealSample(t *testing.T) {
	r := newSimRig(t)
	_, stop, done := r.standalone(t, "0000:00:03.0", 3)
	sbdf := uint32(devices.NewSBDF(0, 0, 3, 0))
	v := r.dom.VCPU(0)
	must(t, v.PCIConfigWrite(sbdf, 0x10, 4, 0))
	must(t, v.PCIConfigWrite(sbdf, 0x14, 4, 0x8))
	must(t, v.PCIConfigWrite(sbdf, 0x04, 2, 0x6))
	if err := v.MMIOWrite(0x8_0000_8000, 4, 0xfee00000); err != nil {
		t.Fatal(err)
	}
	if x, err := v.MMIORead(0x8_0000_8000, 4); err != nil || x != 0xfee00000 {
		t.Errorf("table entry read = %#x, %v", x, err)
	}
	if n := len(kinds(r.sim.Events(), xensim.EventMemoryMapping)); n != 3 {
		t.Errorf("%d memory mappings, want 3 (around the table and PBA pages)", n)
	}
	stop()
	must(t, wait(t, done))
	if err := replay(r.sim.Events()).clean(); err != nil {
		t.Error(err)
	}
}

// TestStandaloneRefusals: nothing reaches the hypervisor.
func TestStandaloneRefusals(t *testing.T) {
	tests := []struct {
		name string
		host string
		asg  Assignments
		want error
	}{
		{"no such function", "0000:09:00.0", nil, ErrNoDevice},
		{"not assigned", "0000:03:00.0", XenstoreAssignments{XS: fakeXS{}}, ErrNotGranted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newSimRig(t)
			addr, _ := ParseSBDF(tt.host)
			err := Standalone(context.Background(), r.sim.Kernel(0), StandaloneConfig{Dom: r.dom.ID(), Host: addr,
				HostOptions: HostOptions{SysfsRoot: r.root}, Assignments: tt.asg})
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if ev := kinds(r.sim.Events(), xensim.EventMapPIRQ, xensim.EventBindPtIRQ, xensim.EventMemoryMapping,
				xensim.EventIOReqServer); len(ev) != 0 {
				t.Errorf("hypervisor touched: %v", ev)
			}
		})
	}
}

// fakeXS is a xenstore in which libxl assigned 0000:03:00.0 to domain 99
// (backend entry) and 0000:05:00.0 to domain 98 (info node only, as
// while the device model is being asked).
type fakeXS struct{}

var fakeXSData = map[string]string{
	"/local/domain/0/backend/pci/99/0/num_devs": "1",
	"/local/domain/0/backend/pci/99/0/dev-0":    "0000:03:00.0",
	"/libxl/pci/0000-05-00-0/domid":             "98",
}

func (fakeXS) Directory(_ context.Context, p string) ([]string, error) {
	var out []string
	for k := range fakeXSData {
		if dir, name, _ := cutLast(k); dir == p {
			out = append(out, name)
		}
	}
	if out == nil {
		return nil, errors.New("ENOENT")
	}
	return out, nil
}

func (fakeXS) Read(_ context.Context, p string) ([]byte, error) {
	if v, ok := fakeXSData[p]; ok {
		return []byte(v), nil
	}
	return nil, errors.New("ENOENT")
}

func cutLast(p string) (string, string, bool) {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[:i], p[i+1:], true
		}
	}
	return "", p, false
}

func TestXenstoreAssignments(t *testing.T) {
	a := XenstoreAssignments{XS: fakeXS{}}
	ctx := context.Background()
	if err := a.Assigned(ctx, 99, devices.NewSBDF(0, 3, 0, 0)); err != nil {
		t.Errorf("assigned function refused: %v", err)
	}
	if err := a.Assigned(ctx, 99, devices.NewSBDF(0, 3, 0, 1)); !errors.Is(err, ErrNotGranted) {
		t.Errorf("other function: err = %v", err)
	}
	if err := a.Assigned(ctx, 2, devices.NewSBDF(0, 3, 0, 0)); !errors.Is(err, ErrNotGranted) {
		t.Errorf("other domain: err = %v", err)
	}
	if err := a.Assigned(ctx, 98, devices.NewSBDF(0, 5, 0, 0)); err != nil {
		t.Errorf("function named by /libxl/pci only: %v", err)
	}
	if err := a.Assigned(ctx, 99, devices.NewSBDF(0, 5, 0, 0)); !errors.Is(err, ErrNotGranted) {
		t.Errorf("function libxl assigns to another domain: err = %v", err)
	}
}

// TestHotplug plugs the function into a running ioreq server's bus (the
// full device model's way), removes it at run time, and plugs it again.
func TestHotplug(t *testing.T) {
	r := newSimRig(t)
	k := r.sim.Kernel(0)
	p, err := privcmd.Open(k)
	must(t, err)
	defer p.Close()
	c := hcall.New(p)
	dc, err := domctl.Open(c)
	must(t, err)
	bus := devices.NewBus()
	srv, err := ioreq.NewServer(p, k, ioreq.Config{Dom: r.dom.ID(), Bus: bus})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	addr, _ := ParseSBDF("0000:03:00.0")
	host, err := OpenHost(HostOptions{SysfsRoot: r.root}, addr)
	must(t, err)
	defer host.Close()
	x := NewXen(c, dc)
	sbdf := uint32(devices.NewSBDF(0, 0, 7, 0))
	v := r.dom.VCPU(0)
	for round := 0; round < 2; round++ {
		dev, err := New(Config{Dom: r.dom.ID(), Host: host, Xen: x, Slot: 7})
		must(t, err)
		must(t, dev.Plug(bus))
		if got, err := v.PCIConfigRead(sbdf, 0, 4); err != nil || got != 0x10d38086 {
			t.Fatalf("round %d: vendor = %#x, %v", round, got, err)
		}
		must(t, v.PCIConfigWrite(sbdf, 0x1c, 4, 0xe0100000))
		must(t, v.PCIConfigWrite(sbdf, 0x04, 2, 0x6))
		must(t, v.MMIOWrite(0xe0100008, 4, 0x51))
		must(t, v.MMIOWrite(0xe0100000, 4, 0xfee00000))
		must(t, v.MMIOWrite(0xe010000c, 4, 0))
		must(t, v.PCIConfigWrite(sbdf, 0xa2, 2, 0x8000))
		must(t, dev.Unplug())
		st := replay(r.sim.Events())
		st.servers = 0 // the server stays
		if err := st.clean(); err != nil {
			t.Errorf("round %d after Unplug: %v", round, err)
		}
		if got, _ := v.PCIConfigRead(sbdf, 0, 4); got != 0xffffffff {
			t.Errorf("round %d: removed function reads %#x", round, got)
		}
		if got, _ := v.MMIORead(0xe0100008, 4); got != 0xffffffff {
			t.Errorf("round %d: removed MSI-X table reads %#x", round, got)
		}
	}
	cancel()
	must(t, <-served)
	must(t, srv.Close())
	if err := replay(r.sim.Events()).clean(); err != nil {
		t.Error(err)
	}
	_ = hyp.DomID(0)
}

// simXen returns the real hypervisor interface on the simulated Xen.
func simXen(t *testing.T, r *simRig) (Xen, *privcmd.Handle) {
	t.Helper()
	p, err := privcmd.Open(r.sim.Kernel(0))
	must(t, err)
	t.Cleanup(func() { p.Close() })
	c := hcall.New(p)
	dc, err := domctl.Open(c)
	must(t, err)
	return NewXen(c, dc), p
}

func TestDetectMSIXAllWrites(t *testing.T) {
	r := newSimRig(t)
	_, p := simXen(t, r)
	all, err := DetectMSIXAllWrites(p)
	if err != nil || all {
		t.Errorf("DetectMSIXAllWrites on xensim (no feature bits) = %v, %v; want false, nil", all, err)
	}
}

// TestSharedGSI: two functions on one host interrupt line share its PIRQ;
// only the last user unmaps it.
func TestSharedGSI(t *testing.T) {
	r := newSimRig(t)
	x, _ := simXen(t, r)
	req := hcall.MapPIRQRequest{Type: xenabi.MAP_PIRQ_TYPE_GSI, Index: 17, PIRQ: 17}
	for i := 0; i < 2; i++ {
		if p, err := x.MapPIRQ(r.dom.ID(), req); err != nil || p != 17 {
			t.Fatalf("MapPIRQ #%d = %d, %v", i, p, err)
		}
	}
	mark := r.sim.LastSeq()
	must(t, x.UnmapPIRQ(r.dom.ID(), 17))
	if ev := kinds(r.sim.EventsSince(mark), xensim.EventUnmapPIRQ); len(ev) != 0 {
		t.Errorf("first user's unmap reached Xen: %v", ev)
	}
	must(t, x.UnmapPIRQ(r.dom.ID(), 17))
	if ev := kinds(r.sim.EventsSince(mark), xensim.EventUnmapPIRQ); len(ev) != 1 {
		t.Errorf("last user's unmap: events %v, want one", ev)
	}
}

// TestBAROverRAM: a BAR the guest places over its own RAM is mapped (as
// Xen accepts it), follows the guest when moved, and nothing is left
// behind.
func TestBAROverRAM(t *testing.T) {
	r := newSimRig(t)
	x, _ := simXen(t, r)
	addr, _ := ParseSBDF("0000:03:00.0")
	host, err := OpenHost(HostOptions{SysfsRoot: r.root}, addr)
	must(t, err)
	defer host.Close()
	dev, err := New(Config{Dom: r.dom.ID(), Host: host, Xen: x, Slot: 9})
	must(t, err)
	bus := devices.NewBus()
	must(t, dev.Plug(bus))
	c := cfgIO{dev}
	c.w(0x10, 4, 0x01000000) // inside the guest's 256 MiB of RAM
	c.w(0x04, 2, 0x0002)
	// Xen accepts a BAR mapped over the guest's own RAM: set_typed_p2m_entry
	// (xen/arch/x86/mm/p2m.c) replaces the RAM entries and only invalidates
	// their m2p. The guest hurts nobody but itself, and QEMU's xen_pt does
	// not refuse it either, so godm maps it like any other placement.
	if got := dev.Stats().MapErrors; got != 0 {
		t.Errorf("MapErrors = %d, want 0", got)
	}
	if got := dev.Mappings(); len(got) != 1 || got[0].Guest != 0x1000 {
		t.Errorf("Mappings over RAM = %+v, want one at gfn 0x1000", got)
	}
	c.w(0x10, 4, 0xe0000000) // moved out of RAM: remapped
	if got := dev.Mappings(); len(got) != 1 || got[0].Guest != 0xe0000 {
		t.Errorf("Mappings after the move = %+v", got)
	}
	must(t, dev.Unplug())
	if err := replay(r.sim.Events()).clean(); err != nil {
		t.Error(err)
	}
}
