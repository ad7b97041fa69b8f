package domctl_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"godm/hyp/domctl"

	"golang.org/x/sys/unix"
)

// versionCalls are the calls of TestGolden, whose 0x15 encodings are
// checked byte for byte against libxenctrl there.
var versionCalls = []struct {
	name string
	call func(d *domctl.Domctl) error
}{
	{"bind_pt_pci_irq", func(d *domctl.Domctl) error {
		return d.BindPtIRQ(dom, domctl.IRQBinding{Kind: domctl.PCI, MachineIRQ: 55, Bus: 0, Device: 3, Intx: 0})
	}},
	{"bind_pt_isa_irq", func(d *domctl.Domctl) error {
		return d.BindPtIRQ(dom, domctl.IRQBinding{Kind: domctl.ISA, MachineIRQ: 9, ISAIRQ: 9})
	}},
	{"update_msi_irq", func(d *domctl.Domctl) error {
		return d.BindPtIRQ(dom, domctl.IRQBinding{Kind: domctl.MSI, MachineIRQ: 55, GVec: 0x41, GFlags: 0x5000, GTable: 0xfe002000})
	}},
	{"unbind_msi_irq", func(d *domctl.Domctl) error {
		return d.UnbindPtIRQ(dom, domctl.IRQBinding{Kind: domctl.MSI, MachineIRQ: 55, GVec: 0x41, GFlags: 0x5000})
	}},
	{"memory_mapping", func(d *domctl.Domctl) error { return d.MemoryMapping(dom, 0xf0000, 0xfe000, 16, true) }},
	{"ioport_mapping", func(d *domctl.Domctl) error { return d.IoportMapping(dom, 0xc000, 0xe000, 0x40, true) }},
	{"iomem_permission", func(d *domctl.Domctl) error { return d.IomemPermission(dom, 0xfe000, 16, true) }},
	{"ioport_permission", func(d *domctl.Domctl) error { return d.IoportPermission(dom, 0xe000, 0x40, true) }},
	{"irq_permission", func(d *domctl.Domctl) error { return d.IRQPermission(dom, 55, true) }},
}

// capture returns the struct xen_domctl call issues in interface version v.
func capture(t *testing.T, v uint32, call func(d *domctl.Domctl) error) []byte {
	t.Helper()
	k, c := setup(t)
	k.DomctlVersion = v
	var got []byte
	k.Domctl = func(op []byte) int64 {
		got = bytes.Clone(op)
		return 0
	}
	d, err := domctl.OpenVersion(c, v)
	if err != nil {
		t.Fatalf("OpenVersion(%#x): %v", v, err)
	}
	if err := call(d); err != nil {
		t.Fatalf("call in %#x: %v", v, err)
	}
	if got == nil {
		t.Fatalf("no domctl issued in %#x", v)
	}
	return got
}

// TestVersionLayouts checks every release's encoding against the 0x15
// one (itself golden): the same bytes with the release's interface
// version, except where the release's public domctl.h differs (4.15's
// irq_permission: uint8_t pirq, uint8_t allow_access).
func TestVersionLayouts(t *testing.T) {
	versions := []uint32{domctl.Version4_15, domctl.Version4_16, domctl.Version4_17,
		domctl.Version4_18, domctl.Version4_19, domctl.Version4_22}
	for _, v := range versions {
		for _, c := range versionCalls {
			t.Run(fmt.Sprintf("%#x/%s", v, c.name), func(t *testing.T) {
				base := capture(t, domctl.Version4_17, c.call)
				want := bytes.Clone(base)
				binary.LittleEndian.PutUint32(want[4:], v)
				if v == domctl.Version4_15 && c.name == "irq_permission" {
					u := want[16:]
					clear(u[:8])
					u[0], u[1] = 55, 1 // pirq, allow_access
				}
				got := capture(t, v, c.call)
				if !bytes.Equal(got, want) {
					t.Errorf("domctl in %#x =\n% x\nwant\n% x", v, got, want)
				}
			})
		}
	}
}

// TestVersionIRQPermissionRange: 4.15 cannot name a PIRQ above 255.
func TestVersionIRQPermissionRange(t *testing.T) {
	_, c := setup(t)
	d, err := domctl.OpenVersion(c, domctl.Version4_15)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.IRQPermission(dom, 256, true); !errors.Is(err, unix.EINVAL) {
		t.Errorf("IRQPermission(256) in 4.15: err = %v, want EINVAL", err)
	}
}

// TestOpenEachRelease: each release's xen_version selects its interface
// version without probing, and the fake Xen of that release accepts it.
func TestOpenEachRelease(t *testing.T) {
	tests := []struct {
		minor int
		want  uint32
	}{
		{15, 0x13}, {16, 0x14}, {17, 0x15}, {18, 0x16}, {19, 0x17}, {20, 0x17}, {21, 0x17}, {22, 0x18},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("4.%d", tt.minor), func(t *testing.T) {
			k, c := setup(t)
			k.XenMinor, k.DomctlVersion = tt.minor, tt.want
			d, err := domctl.Open(c)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if got := d.InterfaceVersion(); got != tt.want {
				t.Errorf("InterfaceVersion = %#x, want %#x", got, tt.want)
			}
			if got := len(k.Hypercalls()); got != 1 {
				t.Errorf("Open made %d hypercalls, want 1 (no probing)", got)
			}
			if _, err := d.GetDomainInfo(dom); err != nil {
				t.Errorf("GetDomainInfo: %v", err)
			}
		})
	}
}
