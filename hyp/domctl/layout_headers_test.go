package domctl_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"godm/hyp/domctl"
	"godm/hyp/xenabi"
)

// headerLayout is one file of testdata/layout: what
// tools/xencapture/domctl_layout.c prints from one Xen release's public
// headers (domctl-layouts.sh: the installed libxen-dev, Debian trixie's
// for 4.20, the RELEASE-4.NN tags of the Xen tree for all of them).
type headerLayout struct {
	Xen              string `json:"xen"`
	InterfaceVersion uint32 `json:"interface_version"`
	Structs          map[string]struct {
		Size   int               `json:"size"`
		Fields map[string][2]int `json:"fields"`
	} `json:"structs"`
	Constants map[string]uint64 `json:"constants"`
}

// headerReleases are the minor versions of the Xen 4 releases with a
// layout file; godm supports every one of them.
var headerReleases = []int{15, 16, 17, 18, 19, 20, 21, 22}

func loadLayout(t *testing.T, minor int) headerLayout {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "layout", fmt.Sprintf("xen-4.%d.json", minor)))
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

// put writes v, little-endian, in the member name of struct st at its
// header offset and size, into u (the union, or the whole struct
// xen_domctl for st "xen_domctl"). A member the release does not have
// fails the test.
func (l headerLayout) put(t *testing.T, u []byte, st, name string, v uint64) {
	t.Helper()
	f, ok := l.Structs[st].Fields[name]
	if !ok {
		t.Fatalf("Xen %s has no %s.%s", l.Xen, st, name)
	}
	off, size := f[0], f[1]
	if size > 8 {
		t.Fatalf("%s.%s is %d bytes", st, name, size)
	}
	if size < 8 && v>>(8*size) != 0 {
		t.Fatalf("%s.%s: %#x does not fit %d bytes", st, name, v, size)
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	copy(u[off:off+size], b[:size])
}

func (l headerLayout) constant(t *testing.T, name string) uint64 {
	t.Helper()
	v, ok := l.Constants[name]
	if !ok {
		t.Fatalf("Xen %s headers: no %s", l.Xen, name)
	}
	return v
}

type member struct {
	name string
	v    uint64
}

// headerCalls are godm's domctls with the members, as the headers name
// them, each must set. Values fill their members where the member allows
// it, so a member written too wide or too narrow shows. "@NAME" is the
// header constant NAME.
var headerCalls = []struct {
	name    string
	call    func(d *domctl.Domctl) error
	cmd     string // XEN_DOMCTL_*
	st      string // the union member's struct
	members []member
	consts  map[string]string // member -> constant
}{
	{"bind pci", func(d *domctl.Domctl) error {
		return d.BindPtIRQ(dom, domctl.IRQBinding{Kind: domctl.PCI, MachineIRQ: 0x11223344, Bus: 0x12, Device: 0x1f, Intx: 3})
	}, "XEN_DOMCTL_bind_pt_irq", "xen_domctl_bind_pt_irq",
		[]member{{"machine_irq", 0x11223344}, {"u.pci.bus", 0x12}, {"u.pci.device", 0x1f}, {"u.pci.intx", 3}},
		map[string]string{"irq_type": "PT_IRQ_TYPE_PCI"}},
	{"bind isa", func(d *domctl.Domctl) error {
		return d.BindPtIRQ(dom, domctl.IRQBinding{Kind: domctl.ISA, MachineIRQ: 0x0a0b0c0d, ISAIRQ: 0x0e})
	}, "XEN_DOMCTL_bind_pt_irq", "xen_domctl_bind_pt_irq",
		[]member{{"machine_irq", 0x0a0b0c0d}, {"u.isa.isa_irq", 0x0e}},
		map[string]string{"irq_type": "PT_IRQ_TYPE_ISA"}},
	{"bind msi", func(d *domctl.Domctl) error {
		return d.BindPtIRQ(dom, domctl.IRQBinding{Kind: domctl.MSI, MachineIRQ: 0x21222324, GVec: 0xa5, GFlags: 0x8badf00d, GTable: 0x0102030405060708})
	}, "XEN_DOMCTL_bind_pt_irq", "xen_domctl_bind_pt_irq",
		[]member{{"machine_irq", 0x21222324}, {"u.msi.gvec", 0xa5}, {"u.msi.gflags", 0x8badf00d}, {"u.msi.gtable", 0x0102030405060708}},
		map[string]string{"irq_type": "PT_IRQ_TYPE_MSI"}},
	{"unbind msi", func(d *domctl.Domctl) error {
		return d.UnbindPtIRQ(dom, domctl.IRQBinding{Kind: domctl.MSI, MachineIRQ: 0x21222324, GVec: 0xa5, GFlags: 0x8badf00d, GTable: 0x0102030405060708})
	}, "XEN_DOMCTL_unbind_pt_irq", "xen_domctl_bind_pt_irq",
		[]member{{"machine_irq", 0x21222324}, {"u.msi.gvec", 0xa5}, {"u.msi.gflags", 0x8badf00d}}, // gtable not sent
		map[string]string{"irq_type": "PT_IRQ_TYPE_MSI"}},
	{"unbind pci", func(d *domctl.Domctl) error {
		return d.UnbindPtIRQ(dom, domctl.IRQBinding{Kind: domctl.PCI, MachineIRQ: 0x11223344, Bus: 0x12, Device: 0x1f, Intx: 3})
	}, "XEN_DOMCTL_unbind_pt_irq", "xen_domctl_bind_pt_irq",
		[]member{{"machine_irq", 0x11223344}, {"u.pci.bus", 0x12}, {"u.pci.device", 0x1f}, {"u.pci.intx", 3}},
		map[string]string{"irq_type": "PT_IRQ_TYPE_PCI"}},
	{"memory_mapping add", func(d *domctl.Domctl) error {
		return d.MemoryMapping(dom, 0x0a0b0c0d0e0f1011, 0x0102030405060708, 0x1000, true)
	}, "XEN_DOMCTL_memory_mapping", "xen_domctl_memory_mapping",
		[]member{{"first_gfn", 0x0a0b0c0d0e0f1011}, {"first_mfn", 0x0102030405060708}, {"nr_mfns", 0x1000}},
		map[string]string{"add_mapping": "DPCI_ADD_MAPPING"}},
	{"memory_mapping remove", func(d *domctl.Domctl) error {
		return d.MemoryMapping(dom, 0x0a0b0c0d0e0f1011, 0x0102030405060708, 0x1000, false)
	}, "XEN_DOMCTL_memory_mapping", "xen_domctl_memory_mapping",
		[]member{{"first_gfn", 0x0a0b0c0d0e0f1011}, {"first_mfn", 0x0102030405060708}, {"nr_mfns", 0x1000}},
		map[string]string{"add_mapping": "DPCI_REMOVE_MAPPING"}},
	{"ioport_mapping add", func(d *domctl.Domctl) error {
		return d.IoportMapping(dom, 0x11121314, 0x21222324, 0x31323334, true)
	}, "XEN_DOMCTL_ioport_mapping", "xen_domctl_ioport_mapping",
		[]member{{"first_gport", 0x11121314}, {"first_mport", 0x21222324}, {"nr_ports", 0x31323334}},
		map[string]string{"add_mapping": "DPCI_ADD_MAPPING"}},
	{"ioport_mapping remove", func(d *domctl.Domctl) error {
		return d.IoportMapping(dom, 0x11121314, 0x21222324, 0x31323334, false)
	}, "XEN_DOMCTL_ioport_mapping", "xen_domctl_ioport_mapping",
		[]member{{"first_gport", 0x11121314}, {"first_mport", 0x21222324}, {"nr_ports", 0x31323334}},
		map[string]string{"add_mapping": "DPCI_REMOVE_MAPPING"}},
	{"iomem_permission allow", func(d *domctl.Domctl) error {
		return d.IomemPermission(dom, 0x0102030405060708, 0x1112131415161718, true)
	}, "XEN_DOMCTL_iomem_permission", "xen_domctl_iomem_permission",
		[]member{{"first_mfn", 0x0102030405060708}, {"nr_mfns", 0x1112131415161718}, {"allow_access", 1}}, nil},
	{"iomem_permission deny", func(d *domctl.Domctl) error {
		return d.IomemPermission(dom, 0x0102030405060708, 0x1112131415161718, false)
	}, "XEN_DOMCTL_iomem_permission", "xen_domctl_iomem_permission",
		[]member{{"first_mfn", 0x0102030405060708}, {"nr_mfns", 0x1112131415161718}}, nil},
	{"ioport_permission allow", func(d *domctl.Domctl) error {
		return d.IoportPermission(dom, 0x01020304, 0x11121314, true)
	}, "XEN_DOMCTL_ioport_permission", "xen_domctl_ioport_permission",
		[]member{{"first_port", 0x01020304}, {"nr_ports", 0x11121314}, {"allow_access", 1}}, nil},
	{"irq_permission allow", func(d *domctl.Domctl) error {
		return d.IRQPermission(dom, 0xfe, true) // the largest 4.15 can name
	}, "XEN_DOMCTL_irq_permission", "xen_domctl_irq_permission",
		[]member{{"pirq", 0xfe}, {"allow_access", 1}}, nil},
	{"irq_permission deny", func(d *domctl.Domctl) error {
		return d.IRQPermission(dom, 0xfe, false)
	}, "XEN_DOMCTL_irq_permission", "xen_domctl_irq_permission",
		[]member{{"pirq", 0xfe}}, nil},
	{"assign_device", func(d *domctl.Domctl) error {
		return d.AssignDevice(dom, 0xfedcba98, domctl.RDMRelaxed)
	}, "XEN_DOMCTL_assign_device", "xen_domctl_assign_device",
		[]member{{"u.pci.machine_sbdf", 0xfedcba98}},
		map[string]string{"dev": "XEN_DOMCTL_DEV_PCI", "flags": "XEN_DOMCTL_DEV_RDM_RELAXED"}},
	{"test_assign_device", func(d *domctl.Domctl) error {
		return d.TestAssignDevice(dom, 0xfedcba98)
	}, "XEN_DOMCTL_test_assign_device", "xen_domctl_assign_device",
		[]member{{"u.pci.machine_sbdf", 0xfedcba98}},
		map[string]string{"dev": "XEN_DOMCTL_DEV_PCI"}},
	{"deassign_device", func(d *domctl.Domctl) error {
		return d.DeassignDevice(dom, 0xfedcba98)
	}, "XEN_DOMCTL_deassign_device", "xen_domctl_assign_device",
		[]member{{"u.pci.machine_sbdf", 0xfedcba98}},
		map[string]string{"dev": "XEN_DOMCTL_DEV_PCI"}},
}

// TestHeaderLayouts checks every domctl godm issues, in every release
// from 4.15 to 4.22, against the layout the C compiler gives the
// release's public headers: the structure godm sends must be exactly the
// zeroed struct xen_domctl with the header and the call's members set at
// the headers' offsets and sizes (unlike TestVersionLayouts, which
// derives the other releases from the libxenctrl-checked 0x15 encoding,
// this needs nothing but the headers).
func TestHeaderLayouts(t *testing.T) {
	for _, minor := range headerReleases {
		l := loadLayout(t, minor)
		for _, c := range headerCalls {
			t.Run(fmt.Sprintf("4.%d/%s", minor, c.name), func(t *testing.T) {
				size := l.Structs["xen_domctl"].Size
				want := make([]byte, size)
				l.put(t, want, "xen_domctl", "cmd", l.constant(t, c.cmd))
				l.put(t, want, "xen_domctl", "interface_version", uint64(l.InterfaceVersion))
				l.put(t, want, "xen_domctl", "domain", dom)
				u := want[l.Structs["xen_domctl"].Fields["u"][0]:]
				if got := l.Structs[c.st].Size; got > len(u) {
					t.Fatalf("%s is %d bytes, the union %d", c.st, got, len(u))
				}
				for _, m := range c.members {
					l.put(t, u, c.st, m.name, m.v)
				}
				for name, k := range c.consts {
					l.put(t, u, c.st, name, l.constant(t, k))
				}
				got := capture(t, l.InterfaceVersion, c.call)
				if !bytes.Equal(got, want) {
					t.Errorf("Xen 4.%d %s =\n% x\nwant (headers)\n% x", minor, c.name, got, want)
				}
			})
		}
	}
}

// TestHeaderGetDomainInfo decodes a getdomaininfo answer laid out by
// each release's headers, every member set (the ones godm does not read
// too, so a member read from the wrong place shows).
func TestHeaderGetDomainInfo(t *testing.T) {
	const st = "xen_domctl_getdomaininfo"
	want := domctl.DomainInfo{
		Domain: dom, Flags: 0x00ff0122, TotPages: 0x0101010101010101, MaxPages: 0x0202020202020202,
		SharedInfoFrame: 0x0606060606060606, CPUTime: 0x0707070707070707,
		OnlineVCPUs: 0x08080808, MaxVCPUID: 0x09090909, CPUPool: 0x0b0b0b0b,
	}
	for _, minor := range headerReleases {
		t.Run(fmt.Sprintf("4.%d", minor), func(t *testing.T) {
			l := loadLayout(t, minor)
			k, c := setup(t)
			k.DomctlVersion = l.InterfaceVersion
			d, err := domctl.OpenVersion(c, l.InterfaceVersion)
			if err != nil {
				t.Fatal(err)
			}
			uoff := l.Structs["xen_domctl"].Fields["u"][0]
			k.Domctl = func(op []byte) int64 {
				if got := binary.LittleEndian.Uint32(op); uint64(got) != l.constant(t, "XEN_DOMCTL_getdomaininfo") {
					t.Errorf("cmd %d, want getdomaininfo", got)
				}
				u := op[uoff:]
				// Junk everywhere first: members godm must not read.
				for i := range l.Structs[st].Size {
					u[i] = 0xee
				}
				for _, m := range []member{
					{"domain", uint64(want.Domain)}, {"flags", uint64(want.Flags)},
					{"tot_pages", want.TotPages}, {"max_pages", want.MaxPages},
					{"shared_info_frame", want.SharedInfoFrame}, {"cpu_time", want.CPUTime},
					{"nr_online_vcpus", uint64(want.OnlineVCPUs)}, {"max_vcpu_id", uint64(want.MaxVCPUID)},
					{"cpupool", uint64(want.CPUPool)},
				} {
					l.put(t, u, st, m.name, m.v)
				}
				return 0
			}
			got, err := d.GetDomainInfo(dom)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("Xen 4.%d: GetDomainInfo =\n%+v\nwant\n%+v", minor, got, want)
			}
		})
	}
}

// TestHeaderReleases: for each release's headers, Open on a Xen of that
// release selects the headers' XEN_DOMCTL_INTERFACE_VERSION, and the
// constants godm copies into hyp/xenabi are the headers' in every release.
func TestHeaderReleases(t *testing.T) {
	for _, minor := range headerReleases {
		t.Run(fmt.Sprintf("4.%d", minor), func(t *testing.T) {
			l := loadLayout(t, minor)
			if l.Constants["XEN_DOMCTL_INTERFACE_VERSION"] != uint64(l.InterfaceVersion) {
				t.Fatalf("layout file inconsistent: %d vs %d", l.Constants["XEN_DOMCTL_INTERFACE_VERSION"], l.InterfaceVersion)
			}
			k, c := setup(t)
			k.XenMinor, k.DomctlVersion = minor, l.InterfaceVersion
			d, err := domctl.Open(c)
			if err != nil {
				t.Fatalf("Open on Xen 4.%d: %v", minor, err)
			}
			if got := d.InterfaceVersion(); got != l.InterfaceVersion {
				t.Errorf("Open on Xen 4.%d chose %#x, the headers say %#x", minor, got, l.InterfaceVersion)
			}
			consts := map[string]uint64{
				"XEN_DOMCTL_getdomaininfo":         xenabi.XEN_DOMCTL_getdomaininfo,
				"XEN_DOMINF_dying":                 xenabi.XEN_DOMINF_dying,
				"XEN_DOMINF_hvm_guest":             xenabi.XEN_DOMINF_hvm_guest,
				"XEN_DOMINF_shutdown":              xenabi.XEN_DOMINF_shutdown,
				"XEN_DOMINF_shutdownmask":          xenabi.XEN_DOMINF_shutdownmask,
				"XEN_DOMINF_shutdownshift":         xenabi.XEN_DOMINF_shutdownshift,
				"PT_IRQ_TYPE_MSI_TRANSLATE":        uint64(domctl.MSITranslate),
				"XEN_DOMCTL_DEV_RDM_RELAXED":       uint64(domctl.RDMRelaxed),
				"XEN_DOMCTL_VMSI_X86_UNMASKED":     xenabi.XEN_DOMCTL_VMSI_X86_UNMASKED,
				"XEN_DOMCTL_VMSI_X86_TRIG_MASK":    xenabi.XEN_DOMCTL_VMSI_X86_TRIG_MASK,
				"XEN_DOMCTL_VMSI_X86_DELIV_MASK":   xenabi.XEN_DOMCTL_VMSI_X86_DELIV_MASK,
				"XEN_DOMCTL_VMSI_X86_DM_MASK":      xenabi.XEN_DOMCTL_VMSI_X86_DM_MASK,
				"XEN_DOMCTL_VMSI_X86_RH_MASK":      xenabi.XEN_DOMCTL_VMSI_X86_RH_MASK,
				"XEN_DOMCTL_VMSI_X86_DEST_ID_MASK": xenabi.XEN_DOMCTL_VMSI_X86_DEST_ID_MASK,
			}
			for name, v := range consts {
				if got := l.constant(t, name); got != v {
					t.Errorf("%s = %#x in Xen 4.%d, godm uses %#x", name, got, minor, v)
				}
			}
		})
	}
}
