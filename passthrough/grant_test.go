package passthrough

import (
	"context"
	"errors"
	"testing"

	"godm/devices"
	"godm/hyp"
	"godm/hyp/dm"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"
)

// stubAssign forwards permissions to the simulated Xen and records
// assignments instead of making them, or fails them (failOn).
type stubAssign struct {
	Toolstack
	assigned map[uint32]bool
	failOn   string
}

func (s *stubAssign) AssignDevice(dom hyp.DomID, sbdf, flags uint32) error {
	if s.failOn == "assign" {
		return errBoom
	}
	s.assigned[sbdf] = true
	return nil
}

func (s *stubAssign) DeassignDevice(dom hyp.DomID, sbdf uint32) error {
	delete(s.assigned, sbdf)
	return nil
}

// permState replays the permission events.
func permState(evs []xensim.Event) map[string]bool {
	st := map[string]bool{}
	for _, e := range kinds(evs, xensim.EventPermission) {
		k := fmtPerm(e)
		if e.Level {
			st[k] = true
		} else {
			delete(st, k)
		}
	}
	return st
}

func fmtPerm(e xensim.Event) string {
	switch e.Type {
	case xenabi.XEN_DOMCTL_iomem_permission:
		return "iomem " + hex(e.First) + "+" + hex(e.Nr)
	case xenabi.XEN_DOMCTL_ioport_permission:
		return "ioport " + hex(e.First) + "+" + hex(e.Nr)
	}
	return "irq " + hex(e.First)
}

func hex(v uint64) string {
	const digits = "0123456789abcdef"
	if v == 0 {
		return "0"
	}
	var b []byte
	for ; v > 0; v >>= 4 {
		b = append([]byte{digits[v&15]}, b...)
	}
	return string(b)
}

// TestStandaloneGrant: with Grant, the standalone server grants the
// function's resources and assigns it as libxl would, and revokes
// everything on exit.
func TestStandaloneGrant(t *testing.T) {
	r := newSimRig(t)
	r.revokeLikeLibxl(t) // no toolstack here
	sbdf := uint32(devices.NewSBDF(0, 3, 0, 0))
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *Device, 1)
	done := make(chan error, 1)
	go func() {
		done <- Standalone(ctx, r.sim.Kernel(0), StandaloneConfig{Dom: r.dom.ID(), Host: devices.NewSBDF(0, 3, 0, 0), Slot: 5,
			HostOptions: HostOptions{SysfsRoot: r.root}, Grant: true, RequireAssigned: true,
			Ready: func(d *Device, _ dm.ServerID) { ready <- d }})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Standalone: %v", err)
	}
	got := permState(r.sim.Events())
	for _, want := range []string{"iomem f7c00+20", "ioport e000+20", "iomem f7c20+4", "iomem f7b00+10", "irq 11"} {
		if !got[want] {
			t.Errorf("permission %q not granted; have %v", want, got)
		}
	}
	if dom, ok := r.sim.AssignedTo(sbdf); !ok || dom != r.dom.ID() {
		t.Errorf("function assigned to %v (%v), want %v", dom, ok, r.dom.ID())
	}
	cancel()
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	if got := permState(r.sim.Events()); len(got) != 0 {
		t.Errorf("permissions left: %v", got)
	}
	if dom, ok := r.sim.AssignedTo(sbdf); ok {
		t.Errorf("still assigned to %v", dom)
	}
	if err := replay(r.sim.Events()).clean(); err != nil {
		t.Error(err)
	}
}

// TestGrantFailureUndone: a failed assignment undoes the permissions and
// the PIRQ, and Standalone stops before serving.
func TestGrantFailureUndone(t *testing.T) {
	r := newSimRig(t)
	r.revokeLikeLibxl(t)
	stub := &stubAssign{assigned: map[uint32]bool{}, failOn: "assign"}
	err := Standalone(context.Background(), r.sim.Kernel(0), StandaloneConfig{Dom: r.dom.ID(), Host: devices.NewSBDF(0, 3, 0, 0),
		Slot: 5, HostOptions: HostOptions{SysfsRoot: r.root}, Grant: true,
		toolstack: func(ts Toolstack) Toolstack { stub.Toolstack = ts; return stub }})
	if !errors.Is(err, errBoom) {
		t.Fatalf("err = %v, want the assignment failure", err)
	}
	if got := permState(r.sim.Events()); len(got) != 0 {
		t.Errorf("permissions left: %v", got)
	}
	if ev := kinds(r.sim.Events(), xensim.EventIOReqServer); len(ev) != 0 {
		t.Errorf("served anyway: %v", ev)
	}
	if err := replay(r.sim.Events()).clean(); err != nil {
		t.Error(err)
	}
}

// TestUngrantedMapping: Xen (and xensim) refuse to map a BAR whose frames
// the guest was not granted (xen/common/domctl.c checks the target's
// iomem_access_permitted); the device counts the failure, maps nothing,
// and the replay finds nothing ungranted.
func TestUngrantedMapping(t *testing.T) {
	r := newSimRig(t)
	r.revokeLikeLibxl(t)
	x, _ := simXen(t, r)
	host, err := OpenHost(HostOptions{SysfsRoot: r.root}, devices.NewSBDF(0, 3, 0, 0))
	must(t, err)
	defer host.Close()
	dev, err := New(Config{Dom: r.dom.ID(), Host: host, Xen: x, Slot: 9})
	must(t, err)
	must(t, dev.Plug(devices.NewBus()))
	defer dev.Unplug()
	c := cfgIO{dev}
	c.w(0x10, 4, 0xe0000000)
	c.w(0x04, 2, 0x0002)
	if got := dev.Stats().MapErrors; got == 0 {
		t.Errorf("MapErrors = 0, want the refused BAR0 mapping counted")
	}
	if got := dev.Mappings(); len(got) != 0 {
		t.Errorf("Mappings = %+v, want none", got)
	}
	if st := replay(r.sim.Events()); len(st.ungranted) != 0 {
		t.Errorf("ungranted mappings = %v, want none (Xen refuses them)", st.ungranted)
	}
}
