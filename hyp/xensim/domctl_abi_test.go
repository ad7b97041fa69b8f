package xensim

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"godm/hyp/xenabi"
)

// headerLayout is one file of hyp/domctl/testdata/layout: what
// tools/xencapture/domctl_layout.c prints from a release's public headers.
type headerLayout struct {
	Xen              string `json:"xen"`
	InterfaceVersion uint32 `json:"interface_version"`
	Structs          map[string]struct {
		Size   int               `json:"size"`
		Fields map[string][2]int `json:"fields"`
	} `json:"structs"`
	Constants map[string]uint64 `json:"constants"`
}

func loadHeaderLayout(t *testing.T, minor int) headerLayout {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "domctl", "testdata", "layout", fmt.Sprintf("xen-4.%d.json", minor)))
	if err != nil {
		t.Fatal(err)
	}
	var l headerLayout
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("4.%d", minor); l.Xen != want {
		t.Fatalf("layout file of 4.%d says Xen %q", minor, l.Xen)
	}
	return l
}

// TestDomctlABIMatchesHeaders checks the simulator's per-release domctl
// tables (written from the headers by hand) against the layouts printed
// from the same headers by the C compiler: every field the simulator
// reads or writes, at the header's offset and size, and absent where the
// release does not have it.
func TestDomctlABIMatchesHeaders(t *testing.T) {
	for _, minor := range domctlABIReleases() {
		t.Run(fmt.Sprintf("4.%d", minor), func(t *testing.T) {
			h := loadHeaderLayout(t, minor)
			a, ok := domctlABIFor(4, minor)
			if !ok {
				t.Fatalf("no domctl ABI for 4.%d", minor)
			}
			if a.version != h.InterfaceVersion || h.Constants["XEN_DOMCTL_INTERFACE_VERSION"] != uint64(a.version) {
				t.Errorf("interface version %#x, headers %#x", a.version, h.InterfaceVersion)
			}
			dc := h.Structs["xen_domctl"]
			if dc.Size != xenabi.XenDomctlSize || dc.Fields["u"] != [2]int{16, 128} {
				t.Errorf("xen_domctl: size %d, u at %v; the simulator assumes %d and [16 128]", dc.Size, dc.Fields["u"], xenabi.XenDomctlSize)
			}
			if h.Structs["xen_domctl_getdomaininfo"].Size != a.info.size {
				t.Errorf("getdomaininfo size %d, headers %d", a.info.size, h.Structs["xen_domctl_getdomaininfo"].Size)
			}
			check := func(st, name string, f abiField) {
				t.Helper()
				got, present := h.Structs[st].Fields[name]
				switch {
				case f.size == 0 && present:
					t.Errorf("%s.%s: the simulator says absent, headers %v", st, name, got)
				case f.size != 0 && got != [2]int{f.off, f.size}:
					t.Errorf("%s.%s = {%d %d}, headers %v (present %v)", st, name, f.off, f.size, got, present)
				}
			}
			i := a.info
			check("xen_domctl_getdomaininfo", "domain", i.domain)
			check("xen_domctl_getdomaininfo", "flags", i.flags)
			check("xen_domctl_getdomaininfo", "tot_pages", i.totPages)
			check("xen_domctl_getdomaininfo", "max_pages", i.maxPages)
			check("xen_domctl_getdomaininfo", "shared_info_frame", i.sharedInfoFrame)
			check("xen_domctl_getdomaininfo", "cpu_time", i.cpuTime)
			check("xen_domctl_getdomaininfo", "nr_online_vcpus", i.onlineVCPUs)
			check("xen_domctl_getdomaininfo", "max_vcpu_id", i.maxVCPUID)
			check("xen_domctl_getdomaininfo", "cpupool", i.cpupool)
			check("xen_domctl_getdomaininfo", "gpaddr_bits", i.gpaddrBits)
			// emulation_flags is the first member of the x86
			// xen_arch_domainconfig.
			if ac := h.Structs["xen_domctl_getdomaininfo"].Fields["arch_config"]; ac[0] != i.emulFlags.off {
				t.Errorf("arch_config at %d, the simulator writes emulation_flags at %d", ac[0], i.emulFlags.off)
			}
			b := a.bind
			check("xen_domctl_bind_pt_irq", "machine_irq", b.machineIRQ)
			check("xen_domctl_bind_pt_irq", "irq_type", b.irqType)
			check("xen_domctl_bind_pt_irq", "u.isa.isa_irq", b.isaIRQ)
			check("xen_domctl_bind_pt_irq", "u.pci.bus", b.bus)
			check("xen_domctl_bind_pt_irq", "u.pci.device", b.device)
			check("xen_domctl_bind_pt_irq", "u.pci.intx", b.intx)
			check("xen_domctl_bind_pt_irq", "u.msi.gvec", b.gvec)
			check("xen_domctl_bind_pt_irq", "u.msi.gflags", b.gflags)
			check("xen_domctl_bind_pt_irq", "u.msi.gtable", b.gtable)
			check("xen_domctl_memory_mapping", "first_gfn", a.memMap.firstGFN)
			check("xen_domctl_memory_mapping", "first_mfn", a.memMap.firstMFN)
			check("xen_domctl_memory_mapping", "nr_mfns", a.memMap.nrMFNs)
			check("xen_domctl_memory_mapping", "add_mapping", a.memMap.add)
			check("xen_domctl_ioport_mapping", "first_gport", a.ioMap.firstGport)
			check("xen_domctl_ioport_mapping", "first_mport", a.ioMap.firstMport)
			check("xen_domctl_ioport_mapping", "nr_ports", a.ioMap.nrPorts)
			check("xen_domctl_ioport_mapping", "add_mapping", a.ioMap.add)
			check("xen_domctl_iomem_permission", "first_mfn", a.iomemPerm.firstMFN)
			check("xen_domctl_iomem_permission", "nr_mfns", a.iomemPerm.nrMFNs)
			check("xen_domctl_iomem_permission", "allow_access", a.iomemPerm.allow)
			check("xen_domctl_ioport_permission", "first_port", a.ioportPerm.firstPort)
			check("xen_domctl_ioport_permission", "nr_ports", a.ioportPerm.nrPorts)
			check("xen_domctl_ioport_permission", "allow_access", a.ioportPerm.allow)
			check("xen_domctl_irq_permission", "pirq", a.irqPerm.pirq)
			check("xen_domctl_irq_permission", "allow_access", a.irqPerm.allow)
			// The assignment domctls are decoded at fixed offsets
			// (dev 0, flags 4, u.pci.machine_sbdf 8) in every release.
			as := h.Structs["xen_domctl_assign_device"].Fields
			if as["dev"] != [2]int{0, 4} || as["flags"] != [2]int{4, 4} || as["u.pci.machine_sbdf"] != [2]int{8, 4} {
				t.Errorf("xen_domctl_assign_device = %v, want dev [0 4], flags [4 4], u.pci.machine_sbdf [8 4]", as)
			}
			consts := map[string]uint64{
				"XEN_DOMCTL_getdomaininfo":     xenabi.XEN_DOMCTL_getdomaininfo,
				"XEN_DOMCTL_irq_permission":    xenabi.XEN_DOMCTL_irq_permission,
				"XEN_DOMCTL_iomem_permission":  xenabi.XEN_DOMCTL_iomem_permission,
				"XEN_DOMCTL_ioport_permission": xenabi.XEN_DOMCTL_ioport_permission,
				"XEN_DOMCTL_bind_pt_irq":       xenabi.XEN_DOMCTL_bind_pt_irq,
				"XEN_DOMCTL_memory_mapping":    xenabi.XEN_DOMCTL_memory_mapping,
				"XEN_DOMCTL_ioport_mapping":    xenabi.XEN_DOMCTL_ioport_mapping,
				"XEN_DOMCTL_unbind_pt_irq":     xenabi.XEN_DOMCTL_unbind_pt_irq,
				"DPCI_ADD_MAPPING":             xenabi.DPCI_ADD_MAPPING,
				"DPCI_REMOVE_MAPPING":          xenabi.DPCI_REMOVE_MAPPING,
				"PT_IRQ_TYPE_PCI":              xenabi.PT_IRQ_TYPE_PCI,
				"PT_IRQ_TYPE_ISA":              xenabi.PT_IRQ_TYPE_ISA,
				"PT_IRQ_TYPE_MSI":              xenabi.PT_IRQ_TYPE_MSI,
				"XEN_DOMINF_hvm_guest":         xenabi.XEN_DOMINF_hvm_guest,
				"XEN_DOMINF_hap":               xenabi.XEN_DOMINF_hap,
				"XEN_DOMINF_running":           xenabi.XEN_DOMINF_running,
				"XEN_DOMINF_shutdown":          xenabi.XEN_DOMINF_shutdown,
				"XEN_DOMINF_shutdownmask":      xenabi.XEN_DOMINF_shutdownmask,
				"XEN_DOMINF_shutdownshift":     xenabi.XEN_DOMINF_shutdownshift,
			}
			for name, want := range consts {
				if got, ok := h.Constants[name]; !ok || got != want {
					t.Errorf("%s = %d in the headers (present %v), the simulator uses %d", name, got, ok, want)
				}
			}
		})
	}
	if _, ok := domctlABIFor(4, 14); ok {
		t.Errorf("4.14 has a domctl ABI; the simulator covers 4.15..4.22")
	}
	if _, ok := domctlABIFor(4, 23); ok {
		t.Errorf("4.23 has a domctl ABI; the simulator covers 4.15..4.22")
	}
}
