package domctl_test

import (
	"errors"
	"fmt"
	"testing"

	"godm/hyp"
	"godm/hyp/domctl"
	"godm/hyp/hcall"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"
	"godm/hyp/xensim"
	"godm/internal/testfake"

	"golang.org/x/sys/unix"
)

// The tests below run hyp/domctl against xensim simulating each Xen
// release. xensim decodes the domctls with its own per-release tables
// (hyp/xensim/domctl_abi.go, written from the headers independently of
// this package's codecs), so a round trip that records the right values
// checks both sides; both are checked against the headers' layouts by
// TestHeaderLayouts here and TestDomctlABIMatchesHeaders there.

// simRelease is a Sim of Xen 4.minor with one HVM guest (2 vCPUs, 1 MiB of
// RAM), and dom0's hypercall caller.
func simRelease(t *testing.T, minor int) (*xensim.Sim, *xensim.Domain, *hcall.Caller) {
	t.Helper()
	xen := testfake.NewXen(t, xensim.Config{XenMajor: 4, XenMinor: minor}, testfake.RAM(2, 1<<20))
	s, d := xen.Sim, xen.Dom
	p, err := privcmd.Open(s.Kernel(0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return s, d, hcall.New(p)
}

// openRelease opens domctl on xensim's Xen 4.minor and checks it chose
// the release's interface version (as the release's headers define it).
func openRelease(t *testing.T, minor int) (*xensim.Sim, *xensim.Domain, *hcall.Caller, *domctl.Domctl) {
	t.Helper()
	s, d, c := simRelease(t, minor)
	dc, err := domctl.Open(c)
	if err != nil {
		t.Fatalf("Open on Xen 4.%d: %v", minor, err)
	}
	if got, want := dc.InterfaceVersion(), loadLayout(t, minor).InterfaceVersion; got != want {
		t.Fatalf("Open on Xen 4.%d chose %#x, want %#x", minor, got, want)
	}
	return s, d, c, dc
}

// eventsSince returns the passthrough events after mark, Seq cleared.
func eventsSince(s *xensim.Sim, mark uint64) []xensim.Event {
	var out []xensim.Event
	for _, e := range s.EventsSince(mark) {
		switch e.Kind {
		case xensim.EventPermission, xensim.EventMemoryMapping, xensim.EventIOPortMapping,
			xensim.EventBindPtIRQ, xensim.EventMapPIRQ, xensim.EventUnmapPIRQ:
			e.Seq = 0
			out = append(out, e)
		}
	}
	return out
}

func checkEvents(t *testing.T, what string, got, want []xensim.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: events\n%+v\nwant\n%+v", what, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("%s: event %d =\n%+v\nwant\n%+v", what, i, got[i], want[i])
		}
	}
}

// TestXensimReleases: on each release, Open detects it, and every domctl
// godm issues round-trips: xensim decodes the values sent (recorded
// events, assignment state) and getdomaininfo's answer decodes.
func TestXensimReleases(t *testing.T) {
	for _, minor := range headerReleases {
		t.Run(fmt.Sprintf("4.%d", minor), func(t *testing.T) {
			s, d, c, dc := openRelease(t, minor)
			dom := d.ID()

			info, err := dc.GetDomainInfo(dom)
			if err != nil {
				t.Fatalf("GetDomainInfo: %v", err)
			}
			if info.Domain != dom || !info.HVM() || info.Dying() || info.TotPages != 256 || info.MaxPages != 256 ||
				info.OnlineVCPUs != 2 || info.MaxVCPUID != 1 {
				t.Errorf("GetDomainInfo = %+v", info)
			}
			if down, _ := info.Shutdown(); down {
				t.Errorf("GetDomainInfo: shut down")
			}
			if info, err := dc.GetDomainInfo(0); err != nil || info.Domain != 0 || info.HVM() {
				t.Errorf("GetDomainInfo(0) = %+v, %v", info, err)
			}
			// Up to 4.17 Xen answers the next domain, from 4.18 none:
			// either way no answer for a domain that does not exist.
			if _, err := dc.GetDomainInfo(dom + 1); !errors.Is(err, unix.ESRCH) {
				t.Errorf("GetDomainInfo(%v): %v, want ESRCH", dom+1, err)
			}

			pirq, err := c.MapGSI(dom, 20, -1)
			if err != nil {
				t.Fatal(err)
			}
			msi, err := c.MapMSI(dom, -1, -1, 3<<3, 0, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			mark := s.LastSeq()
			type call struct {
				name string
				do   func() error
				want xensim.Event
			}
			perm := func(cmd uint32, first, nr uint64, allow bool) xensim.Event {
				return xensim.Event{Kind: xensim.EventPermission, Dom: dom, Type: cmd, First: first, Nr: nr, Level: allow}
			}
			calls := []call{
				{"iomem_permission", func() error { return dc.IomemPermission(dom, 0xfe000, 0x10, true) },
					perm(xenabi.XEN_DOMCTL_iomem_permission, 0xfe000, 0x10, true)},
				{"ioport_permission", func() error { return dc.IoportPermission(dom, 0xe000, 0x40, true) },
					perm(xenabi.XEN_DOMCTL_ioport_permission, 0xe000, 0x40, true)},
				{"irq_permission", func() error { return dc.IRQPermission(dom, uint32(pirq), true) },
					perm(xenabi.XEN_DOMCTL_irq_permission, uint64(pirq), 1, true)},
				{"memory_mapping", func() error { return dc.MemoryMapping(dom, 0xf0000, 0xfe000, 0x10, true) },
					xensim.Event{Kind: xensim.EventMemoryMapping, Dom: dom, First: 0xf0000, Addr: 0xfe000, Nr: 0x10, Level: true}},
				{"ioport_mapping", func() error { return dc.IoportMapping(dom, 0xc000, 0xe000, 0x40, true) },
					xensim.Event{Kind: xensim.EventIOPortMapping, Dom: dom, First: 0xc000, Addr: 0xe000, Nr: 0x40, Level: true}},
				{"bind pci", func() error {
					return dc.BindPtIRQ(dom, domctl.IRQBinding{Kind: domctl.PCI, MachineIRQ: uint32(pirq), Bus: 0, Device: 4, Intx: 1})
				}, xensim.Event{Kind: xensim.EventBindPtIRQ, Dom: dom, Type: xenabi.PT_IRQ_TYPE_PCI, Data: uint64(pirq), Dev: 4, Pin: 1, Level: true}},
				{"bind isa", func() error {
					return dc.BindPtIRQ(dom, domctl.IRQBinding{Kind: domctl.ISA, MachineIRQ: uint32(pirq), ISAIRQ: 10})
				}, xensim.Event{Kind: xensim.EventBindPtIRQ, Dom: dom, Type: xenabi.PT_IRQ_TYPE_ISA, Data: uint64(pirq), IRQ: 10, Level: true}},
				{"bind msi", func() error {
					return dc.BindPtIRQ(dom, domctl.IRQBinding{Kind: domctl.MSI, MachineIRQ: uint32(msi), GVec: 0x41, GFlags: 0x10203, GTable: 0xfebf0000})
				}, xensim.Event{Kind: xensim.EventBindPtIRQ, Dom: dom, Type: xenabi.PT_IRQ_TYPE_MSI, Data: uint64(msi), First: 0x41, Nr: 0x10203, Addr: 0xfebf0000, Level: true}},
				{"unbind msi", func() error {
					return dc.UnbindPtIRQ(dom, domctl.IRQBinding{Kind: domctl.MSI, MachineIRQ: uint32(msi), GVec: 0x41, GFlags: 0x10203, GTable: 0xfebf0000})
				}, xensim.Event{Kind: xensim.EventBindPtIRQ, Dom: dom, Type: xenabi.PT_IRQ_TYPE_MSI, Data: uint64(msi), First: 0x41, Nr: 0x10203}},
				{"unbind pci", func() error {
					return dc.UnbindPtIRQ(dom, domctl.IRQBinding{Kind: domctl.PCI, MachineIRQ: uint32(pirq), Bus: 0, Device: 4, Intx: 1})
				}, xensim.Event{Kind: xensim.EventBindPtIRQ, Dom: dom, Type: xenabi.PT_IRQ_TYPE_PCI, Data: uint64(pirq), Dev: 4, Pin: 1}},
				{"ioport_mapping remove", func() error { return dc.IoportMapping(dom, 0xc000, 0xe000, 0x40, false) },
					xensim.Event{Kind: xensim.EventIOPortMapping, Dom: dom, First: 0xc000, Addr: 0xe000, Nr: 0x40}},
				{"memory_mapping remove", func() error { return dc.MemoryMapping(dom, 0xf0000, 0xfe000, 0x10, false) },
					xensim.Event{Kind: xensim.EventMemoryMapping, Dom: dom, First: 0xf0000, Addr: 0xfe000, Nr: 0x10}},
				{"irq_permission deny", func() error { return dc.IRQPermission(dom, uint32(pirq), false) },
					perm(xenabi.XEN_DOMCTL_irq_permission, uint64(pirq), 1, false)},
				{"ioport_permission deny", func() error { return dc.IoportPermission(dom, 0xe000, 0x40, false) },
					perm(xenabi.XEN_DOMCTL_ioport_permission, 0xe000, 0x40, false)},
				{"iomem_permission deny", func() error { return dc.IomemPermission(dom, 0xfe000, 0x10, false) },
					perm(xenabi.XEN_DOMCTL_iomem_permission, 0xfe000, 0x10, false)},
			}
			for _, cl := range calls {
				mark = s.LastSeq()
				if err := cl.do(); err != nil {
					t.Errorf("%s: %v", cl.name, err)
					continue
				}
				checkEvents(t, cl.name, eventsSince(s, mark), []xensim.Event{cl.want})
			}

			// Device assignment: test, assign, test again (taken),
			// deassign, test (free again).
			const sbdf = 0x00000318 // 0000:03:03.0
			if err := dc.TestAssignDevice(dom, sbdf); err != nil {
				t.Errorf("TestAssignDevice of a free function: %v", err)
			}
			if err := dc.AssignDevice(dom, sbdf, domctl.RDMRelaxed); err != nil {
				t.Fatalf("AssignDevice: %v", err)
			}
			if owner, ok := s.AssignedTo(sbdf); !ok || owner != dom {
				t.Errorf("AssignedTo = %v, %v, want %v", owner, ok, dom)
			}
			if err := dc.TestAssignDevice(dom, sbdf); !errors.Is(err, unix.EINVAL) {
				t.Errorf("TestAssignDevice of an assigned function: %v, want EINVAL", err)
			}
			if err := dc.DeassignDevice(dom, sbdf); err != nil {
				t.Errorf("DeassignDevice: %v", err)
			}
			if owner, ok := s.AssignedTo(sbdf); ok {
				t.Errorf("after DeassignDevice, assigned to %v", owner)
			}
			if err := dc.TestAssignDevice(dom, sbdf); err != nil {
				t.Errorf("TestAssignDevice after deassignment: %v", err)
			}
		})
	}
}

// TestXensimOtherVersionRefused: each simulated release refuses every
// other release's interface version with EACCES, as xen/common/domctl.c
// does, for every kind of domctl.
func TestXensimOtherVersionRefused(t *testing.T) {
	for _, minor := range headerReleases {
		t.Run(fmt.Sprintf("4.%d", minor), func(t *testing.T) {
			_, d, c := simRelease(t, minor)
			own := loadLayout(t, minor).InterfaceVersion
			for _, other := range headerReleases {
				v := loadLayout(t, other).InterfaceVersion
				if v == own {
					continue
				}
				dc, err := domctl.OpenVersion(c, v)
				if err != nil {
					t.Fatal(err)
				}
				calls := map[string]error{
					"getdomaininfo": func() error { _, err := dc.GetDomainInfo(d.ID()); return err }(),
					"iomem":         dc.IomemPermission(d.ID(), 1, 1, true),
					"mapping":       dc.MemoryMapping(d.ID(), 1, 1, 1, true),
					"assign":        dc.AssignDevice(d.ID(), 8, 0),
					"test_assign":   dc.TestAssignDevice(d.ID(), 8),
				}
				for name, err := range calls {
					if !errors.Is(err, unix.EACCES) {
						t.Errorf("%s in %#x on Xen 4.%d: %v, want EACCES", name, v, minor, err)
					}
				}
			}
		})
	}
}

// TestXensimUnknownRelease: on a release godm has no layout for, Open
// probes every layout, Xen refuses them all, and Open says so.
func TestXensimUnknownRelease(t *testing.T) {
	for _, minor := range []int{14, 23} {
		t.Run(fmt.Sprintf("4.%d", minor), func(t *testing.T) {
			_, _, c := simRelease(t, minor)
			if _, err := domctl.Open(c); !errors.Is(err, hyp.ErrNotSupported) || !errors.Is(err, unix.EACCES) {
				t.Errorf("Open on Xen 4.%d: %v, want ErrNotSupported and EACCES", minor, err)
			}
		})
	}
}

// TestXensimPassthrough is the passthrough sequence on each release:
// the toolstack's grant (permissions for the BARs and the GSI's PIRQ,
// IOMMU assignment, as libxl_pci.c does), the device model's BAR mappings
// when the guest enables decoding, INTx bound to the guest's slot, an MSI
// mapped and bound with the guest's vector and flags; then everything
// undone in reverse, leaving no mapping, binding, permission or
// assignment behind.
func TestXensimPassthrough(t *testing.T) {
	const (
		sbdf     = 0x00000500 // 0000:05:00.0, the host function
		bus      = 5
		devfn    = 0
		bar0MFN  = 0xfd000 // 64 KiB memory BAR at 0xfd000000 ...
		bar0GFN  = 0xf1000 // ... where the guest's firmware put it
		bar0Nr   = 16
		bar2Port = 0xd000 // 32-port I/O BAR
		bar2G    = 0xc100
		bar2Nr   = 32
		gsi      = 17
		slot     = 5          // guest device number
		msiAddr  = 0xfee01000 // destination APIC ID 1, physical, no redirection hint
		msiData  = 0x4061     // vector 0x61, fixed delivery, edge
		table    = 0          // plain MSI: no MSI-X table
	)
	// The binding's flags from the guest's address and data, as the
	// XEN_DOMCTL_VMSI_X86_* masks lay them out: destination ID, then
	// delivery mode at 12 and trigger mode at 15.
	gflags := uint32(msiAddr>>12&0xff) | uint32(msiData>>8&7)<<12 | uint32(msiData>>15&1)<<15
	if gflags != 1 {
		t.Fatalf("gflags = %#x, want 1", gflags)
	}
	for _, minor := range headerReleases {
		t.Run(fmt.Sprintf("4.%d", minor), func(t *testing.T) {
			s, d, c, dc := openRelease(t, minor)
			dom := d.ID()
			mark := s.LastSeq()

			// Grant (the toolstack).
			must(t, "iomem", dc.IomemPermission(dom, bar0MFN, bar0Nr, true))
			must(t, "ioport", dc.IoportPermission(dom, bar2Port, bar2Nr, true))
			pirq, err := c.MapGSI(dom, gsi, -1)
			must(t, "map GSI", err)
			must(t, "irq", dc.IRQPermission(dom, uint32(pirq), true))
			must(t, "test_assign", dc.TestAssignDevice(dom, sbdf))
			must(t, "assign", dc.AssignDevice(dom, sbdf, 0))

			// The device model: BARs, INTx, MSI.
			must(t, "map BAR0", dc.MemoryMapping(dom, bar0GFN, bar0MFN, bar0Nr, true))
			must(t, "map BAR2", dc.IoportMapping(dom, bar2G, bar2Port, bar2Nr, true))
			intx := domctl.IRQBinding{Kind: domctl.PCI, MachineIRQ: uint32(pirq), Device: slot, Intx: 0}
			must(t, "bind INTx", dc.BindPtIRQ(dom, intx))
			msiPIRQ, err := c.MapMSI(dom, -1, -1, devfn, bus, 0, table)
			must(t, "map MSI", err)
			msi := domctl.IRQBinding{Kind: domctl.MSI, MachineIRQ: uint32(msiPIRQ), GVec: msiData & 0xff, GFlags: gflags, GTable: table}
			must(t, "bind MSI", dc.BindPtIRQ(dom, msi))
			if owner, ok := s.AssignedTo(sbdf); !ok || owner != dom {
				t.Errorf("assigned to %v, %v", owner, ok)
			}

			// Everything undone, in reverse.
			must(t, "unbind MSI", dc.UnbindPtIRQ(dom, msi))
			must(t, "unmap MSI", c.UnmapPIRQ(dom, msiPIRQ))
			must(t, "unbind INTx", dc.UnbindPtIRQ(dom, intx))
			must(t, "unmap BAR2", dc.IoportMapping(dom, bar2G, bar2Port, bar2Nr, false))
			must(t, "unmap BAR0", dc.MemoryMapping(dom, bar0GFN, bar0MFN, bar0Nr, false))
			must(t, "deassign", dc.DeassignDevice(dom, sbdf))
			must(t, "irq deny", dc.IRQPermission(dom, uint32(pirq), false))
			must(t, "unmap GSI", c.UnmapPIRQ(dom, pirq))
			must(t, "ioport deny", dc.IoportPermission(dom, bar2Port, bar2Nr, false))
			must(t, "iomem deny", dc.IomemPermission(dom, bar0MFN, bar0Nr, false))
			if owner, ok := s.AssignedTo(sbdf); ok {
				t.Errorf("still assigned to %v", owner)
			}
			// The BAR frames are no longer the guest's to map.
			if err := dc.MemoryMapping(dom, bar0GFN, bar0MFN, 1, true); !errors.Is(err, unix.EPERM) {
				t.Errorf("mapping after the grant was revoked: %v, want EPERM", err)
			}

			perm := func(cmd uint32, first, nr uint64, allow bool) xensim.Event {
				return xensim.Event{Kind: xensim.EventPermission, Dom: dom, Type: cmd, First: first, Nr: nr, Level: allow}
			}
			bindINTx := xensim.Event{Kind: xensim.EventBindPtIRQ, Dom: dom, Type: xenabi.PT_IRQ_TYPE_PCI, Data: uint64(pirq), Dev: slot}
			bindMSI := xensim.Event{Kind: xensim.EventBindPtIRQ, Dom: dom, Type: xenabi.PT_IRQ_TYPE_MSI, Data: uint64(msiPIRQ), First: msiData & 0xff, Nr: uint64(gflags), Addr: table}
			on := func(e xensim.Event) xensim.Event { e.Level = true; return e }
			want := []xensim.Event{
				perm(xenabi.XEN_DOMCTL_iomem_permission, bar0MFN, bar0Nr, true),
				perm(xenabi.XEN_DOMCTL_ioport_permission, bar2Port, bar2Nr, true),
				{Kind: xensim.EventMapPIRQ, Dom: dom, Type: xenabi.MAP_PIRQ_TYPE_GSI, Addr: gsi, Data: uint64(pirq)},
				perm(xenabi.XEN_DOMCTL_irq_permission, uint64(pirq), 1, true),
				{Kind: xensim.EventMemoryMapping, Dom: dom, First: bar0GFN, Addr: bar0MFN, Nr: bar0Nr, Level: true},
				{Kind: xensim.EventIOPortMapping, Dom: dom, First: bar2G, Addr: bar2Port, Nr: bar2Nr, Level: true},
				on(bindINTx),
				{Kind: xensim.EventMapPIRQ, Dom: dom, Type: xenabi.MAP_PIRQ_TYPE_MSI, Addr: 0xffffffff, Data: uint64(msiPIRQ), First: bus, Nr: devfn},
				on(bindMSI),
				bindMSI,
				{Kind: xensim.EventUnmapPIRQ, Dom: dom, Data: uint64(msiPIRQ)},
				bindINTx,
				{Kind: xensim.EventIOPortMapping, Dom: dom, First: bar2G, Addr: bar2Port, Nr: bar2Nr},
				{Kind: xensim.EventMemoryMapping, Dom: dom, First: bar0GFN, Addr: bar0MFN, Nr: bar0Nr},
				perm(xenabi.XEN_DOMCTL_irq_permission, uint64(pirq), 1, false),
				{Kind: xensim.EventUnmapPIRQ, Dom: dom, Data: uint64(pirq)},
				perm(xenabi.XEN_DOMCTL_ioport_permission, bar2Port, bar2Nr, false),
				perm(xenabi.XEN_DOMCTL_iomem_permission, bar0MFN, bar0Nr, false),
			}
			checkEvents(t, "passthrough", eventsSince(s, mark), want)
		})
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
