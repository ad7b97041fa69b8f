package passthrough

import (
	"context"
	"errors"
	"testing"
	"time"

	"godm/devices"
	"godm/hyp/dm"
	"godm/hyp/domctl"
	"godm/hyp/hcall"
	"godm/hyp/privcmd"
	"godm/hyp/xensim"
	"godm/ioreq"
)

// enableAll has the guest use everything the synthetic function at slot
// has: BARs placed and decoded, bus mastering, MSI-X with two vectors
// routed (INTx is bound at plug).
func enableAll(t *testing.T, v *xensim.VCPU, slot uint8) {
	t.Helper()
	sbdf := uint32(devices.NewSBDF(0, 0, slot, 0))
	for _, w := range []struct {
		reg uint32
		val uint64
	}{{0x10, 0xe0000000}, {0x18, 0xc000}, {0x1c, 0xe0100000}, {0x04, 0x0007}} {
		must(t, v.PCIConfigWrite(sbdf, w.reg, 4, w.val))
	}
	for i := uint64(0); i < 2; i++ {
		must(t, v.MMIOWrite(0xe0100000+16*i, 4, 0xfee00000))
		must(t, v.MMIOWrite(0xe0100008+16*i, 4, 0x51+i))
		must(t, v.MMIOWrite(0xe010000c+16*i, 4, 0))
	}
	must(t, v.PCIConfigWrite(sbdf, 0xa2, 2, 0x8000))
}

// inUse fails the test unless the hypervisor holds the function's
// mappings and bindings (so that the exit has something to undo).
func inUse(t *testing.T, r *simRig) {
	t.Helper()
	st := replay(r.sim.Events())
	if len(st.frames) == 0 || len(st.ports) == 0 || len(st.bindings) < 3 || len(st.pirqs) < 3 {
		t.Fatalf("not in use before the exit: %d frames, %d ports, bindings %v, pirqs %v",
			len(st.frames), len(st.ports), st.bindings, st.pirqs)
	}
}

// TestExitPathsLeaveNothing: every way out of passthrough leaves no PIRQ,
// binding, p2m or port mapping, ioreq server, permission or assignment it
// made, on xensim's recorded state: the context ending with everything in
// use (what SIGINT/SIGTERM do in godm, run.go's signal.NotifyContext),
// an error after the plug, a plug that fails, a grant that fails half
// way, removal at run time with everything in use, and the end of a
// Standalone that granted the function itself.
func TestExitPathsLeaveNothing(t *testing.T) {
	host := devices.NewSBDF(0, 3, 0, 0)
	tests := []struct {
		name string
		run  func(t *testing.T, r *simRig) error // the exit's error
		want error                               // errors.Is, nil for success
		// grants: godm did the toolstack's part (Grant), so nothing
		// of it may stay; otherwise the toolstack's grants and
		// assignment must stay as they were.
		grants bool
	}{
		{"context cancelled while in use", func(t *testing.T, r *simRig) error {
			_, stop, done := r.standalone(t, host.String(), 5)
			enableAll(t, r.dom.VCPU(0), 5)
			inUse(t, r)
			stop()
			return wait(t, done)
		}, nil, false},
		{"error after plug", func(t *testing.T, r *simRig) error {
			return Standalone(context.Background(), r.sim.Kernel(0), StandaloneConfig{Dom: r.dom.ID(), Host: host, Slot: 5,
				HostOptions: HostOptions{SysfsRoot: r.root}, afterPlug: func() error {
					if len(replay(r.sim.Events()).pirqs) == 0 {
						t.Error("INTx not set up before the injected error")
					}
					return errBoom
				}})
		}, errBoom, false},
		{"plug fails", func(t *testing.T, r *simRig) error {
			x, _ := simXen(t, r)
			h, err := OpenHost(HostOptions{SysfsRoot: r.root}, host)
			must(t, err)
			defer h.Close()
			dev, err := New(Config{Dom: r.dom.ID(), Host: h, Xen: x, Slot: 5})
			must(t, err)
			bus := devices.NewBus()
			must(t, bus.PCI.Register(devices.NewSBDF(0, 0, 5, 0), romHandler{})) // slot taken
			err = dev.Plug(bus)
			if dev.Unplug() != nil {
				t.Error("Unplug after a failed Plug")
			}
			return err
		}, devices.ErrOverlap, false},
		{"grant fails half way", func(t *testing.T, r *simRig) error {
			r.revokeLikeLibxl(t)
			return Standalone(context.Background(), r.sim.Kernel(0), StandaloneConfig{Dom: r.dom.ID(), Host: host, Slot: 5,
				HostOptions: HostOptions{SysfsRoot: r.root}, Grant: true,
				toolstack: func(ts Toolstack) Toolstack {
					return &stubAssign{Toolstack: ts, assigned: map[uint32]bool{}, failOn: "assign"}
				}})
		}, errBoom, true},
		{"granted, then cancelled while in use", func(t *testing.T, r *simRig) error {
			r.revokeLikeLibxl(t)
			ctx, cancel := context.WithCancel(context.Background())
			ready, done := make(chan struct{}), make(chan error, 1)
			go func() {
				done <- Standalone(ctx, r.sim.Kernel(0), StandaloneConfig{Dom: r.dom.ID(), Host: host, Slot: 5,
					HostOptions: HostOptions{SysfsRoot: r.root}, Grant: true, Ready: func(*Device, dm.ServerID) { close(ready) }})
			}()
			select {
			case <-ready:
			case err := <-done:
				t.Fatalf("Standalone: %v", err)
			case <-time.After(20 * time.Second):
				t.Fatal("Standalone did not become ready")
			}
			enableAll(t, r.dom.VCPU(0), 5)
			inUse(t, r)
			cancel()
			return wait(t, done)
		}, nil, true},
		{"removed at run time while in use", func(t *testing.T, r *simRig) error {
			p, err := privcmd.Open(r.sim.Kernel(0))
			must(t, err)
			defer p.Close()
			c := hcall.New(p)
			dc, err := domctl.Open(c)
			must(t, err)
			bus := devices.NewBus()
			srv, err := ioreq.NewServer(p, r.sim.Kernel(0), ioreq.Config{Dom: r.dom.ID(), Bus: bus})
			must(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ctx) }()
			m := NewManager(ManagerConfig{Dom: r.dom.ID(), Bus: bus, Xen: NewXen(c, dc),
				HostOptions: HostOptions{SysfsRoot: r.root}, Assign: dc})
			_, err = m.Add(DeviceSpec{ID: "a", HostAddr: host, Slot: 5})
			must(t, err)
			enableAll(t, r.dom.VCPU(0), 5)
			inUse(t, r)
			err = m.Remove("a")
			st := replay(r.sim.Events())
			st.servers = 0 // the server stays
			if cerr := st.clean(); cerr != nil {
				t.Errorf("after Remove, before the server stops: %v", cerr)
			}
			cancel()
			must(t, <-served)
			must(t, srv.Close())
			return err
		}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newSimRig(t)
			libxl := permState(r.sim.Events()) // what the toolstack granted
			err := tt.run(t, r)
			if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("exit error = %v, want %v", err, tt.want)
			}
			evs := r.sim.Events()
			if err := replay(evs).clean(); err != nil {
				t.Error(err)
			}
			perms := permState(evs)
			dom, assigned := r.sim.AssignedTo(uint32(host))
			if tt.grants {
				if len(perms) != 0 || assigned {
					t.Errorf("godm's grants left: permissions %v, assigned to %v %v", perms, dom, assigned)
				}
			} else if len(perms) != len(libxl) || !assigned || dom != r.dom.ID() {
				t.Errorf("the toolstack's grants changed: permissions %v (were %v), assigned to %v %v",
					perms, libxl, dom, assigned)
			}
			for _, v := range r.sim.Violations() {
				t.Errorf("protocol violation: %v", v)
			}
		})
	}
}
