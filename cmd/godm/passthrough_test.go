package main

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"godm/devices"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"
	"godm/internal/cli"
	"godm/internal/machine"
	"godm/internal/testfake"
	"godm/passthrough"
	"godm/passthrough/pttest"
)

// TestServePassthrough: godm serve's passthrough composition on the
// simulated Xen. A -device function nobody assigned is refused with
// nothing left behind; with -pt-grant it is granted, assigned, passed
// through, and on close removed and revoked, leaving the hypervisor as
// it was.
func TestServePassthrough(t *testing.T) {
	host := devices.NewSBDF(0, 0, 3, 0)
	for _, grant := range []bool{false, true} {
		t.Run(map[bool]string{false: "not assigned", true: "pt-grant"}[grant], func(t *testing.T) {
			xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(1, 64<<20))
			sim, dom := xen.Sim, xen.Dom
			m, err := machine.New(sim.Kernel(0), machine.Spec{Dom: dom.ID(), VCPUs: 1, MemBytes: 64 << 20, NoPS2: true})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			spec, err := passthrough.ParseDeviceOption("xen-pci-passthrough,hostaddr=0000:00:03.0,addr=6")
			if err != nil {
				t.Fatal(err)
			}
			mark := sim.LastSeq()
			var out bytes.Buffer
			closePT, err := addPassthrough(m, []passthrough.DeviceSpec{spec}, pttest.SampleSysfs(t), grant,
				slog.New(slog.DiscardHandler), &out)
			if !grant {
				if !errors.Is(err, passthrough.ErrNotGranted) {
					t.Fatalf("addPassthrough of an unassigned function: %v, want ErrNotGranted", err)
				}
				if ev := sim.EventsSince(mark); len(ev) != 0 {
					t.Errorf("refused function reached Xen: %v", ev)
				}
				if m.PCI.Reserved(6) {
					t.Error("slot 6 left reserved")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), "as 0000:00:06.0") {
				t.Errorf("output %q", out.String())
			}
			// Plugged by the board's driver: found again by its id.
			if d := m.Board.Device(spec.ID); d == nil || d.Driver != "xen-pci-passthrough" {
				t.Errorf("board device %q: %+v", spec.ID, d)
			}
			if d, ok := sim.AssignedTo(uint32(host)); !ok || d != dom.ID() {
				t.Errorf("assigned to %v %v, want %v", d, ok, dom.ID())
			}
			// (No ioreq server is serving here: drive the bus directly.)
			if got := m.Spaces.PCI.Read(devices.NewSBDF(0, 0, 6, 0), 0, 4, 0); got != 0x10411af4 {
				t.Errorf("00:06.0 reads %#x", got)
			}
			m.Spaces.PCI.Write(devices.NewSBDF(0, 0, 6, 0), 0x14, 4, 0, 8)
			m.Spaces.PCI.Write(devices.NewSBDF(0, 0, 6, 0), 0x04, 2, 0, 6)
			mapped := 0
			for _, e := range sim.EventsSince(mark) {
				if e.Kind == xensim.EventMemoryMapping && e.Level {
					mapped++
				}
			}
			if mapped != 3 {
				t.Errorf("%d memory mappings, want BAR0's 3 pieces", mapped)
			}
			closePT()
			closePT() // idempotent
			if m.Board.Device(spec.ID) != nil {
				t.Errorf("board device %q left after close", spec.ID)
			}
			var frames, pirqs, perms int
			for _, e := range sim.EventsSince(mark) {
				d := 1
				if !e.Level {
					d = -1
				}
				switch e.Kind {
				case xensim.EventMemoryMapping:
					frames += d * int(e.Nr)
				case xensim.EventMapPIRQ:
					pirqs++
				case xensim.EventUnmapPIRQ:
					pirqs--
				case xensim.EventPermission:
					if e.Type == xenabi.XEN_DOMCTL_iomem_permission {
						perms += d
					}
				}
			}
			if frames != 0 || pirqs != 0 || perms != 0 {
				t.Errorf("left behind: %d frames, %d pirqs, %d iomem grants", frames, pirqs, perms)
			}
			if _, ok := sim.AssignedTo(uint32(host)); ok {
				t.Error("still assigned")
			}
			if m.PCI.Reserved(6) {
				t.Error("slot 6 still reserved")
			}
		})
	}
}

// TestRevokeFailureLogged: without -v, a failure to revoke what -pt-grant
// granted (here: the domain vanished first) still reaches stderr as a
// structured error line, and the debug detail does not.
func TestRevokeFailureLogged(t *testing.T) {
	xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(1, 64<<20))
	sim, dom := xen.Sim, xen.Dom
	m, err := machine.New(sim.Kernel(0), machine.Spec{Dom: dom.ID(), VCPUs: 1, MemBytes: 64 << 20, NoPS2: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	spec, err := passthrough.ParseDeviceOption("xen-pci-passthrough,hostaddr=0000:00:03.0,addr=6")
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	log := cli.NewLogger(&stderr, false)
	closePT, err := addPassthrough(m, []passthrough.DeviceSpec{spec}, pttest.SampleSysfs(t), true, log, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("detail only -v shows")
	if err := dom.Close(); err != nil {
		t.Fatal(err)
	}
	closePT()
	got := stderr.String()
	if !strings.Contains(got, `level=ERROR msg="passthrough: revoking grants"`) {
		t.Errorf("stderr lacks the revocation failure as a structured line:\n%s", got)
	}
	if strings.Contains(got, "detail only -v shows") {
		t.Errorf("debug detail logged without -v:\n%s", got)
	}
}
