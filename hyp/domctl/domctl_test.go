package domctl_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"godm/hyp"
	"godm/hyp/domctl"
	"godm/hyp/hcall"
	"godm/hyp/hcall/hcalltest"
	"godm/hyp/internal/golden"
	"godm/hyp/internal/kerneltest"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

const dom = 7 // the guest of every captured call (tools/xencapture/driver.c)

func setup(t *testing.T) (*hcalltest.Kernel, *hcall.Caller) {
	t.Helper()
	k := hcalltest.New()
	p, err := privcmd.Open(k)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return k, hcall.New(p)
}

func open(t *testing.T) (*hcalltest.Kernel, *domctl.Domctl) {
	t.Helper()
	k, c := setup(t)
	d, err := domctl.Open(c)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	k.ResetHypercalls()
	return k, d
}

// TestGolden issues each domctl the way tools/xencapture/driver.c calls
// libxenctrl and compares the last hypercall (the domctl itself, after any
// checks libxenctrl makes first) byte for byte with the fixture.
func TestGolden(t *testing.T) {
	tests := []struct {
		fixture string
		call    func(d *domctl.Domctl) error
	}{
		{"xc_bind_pt_pci_irq", func(d *domctl.Domctl) error {
			return d.BindPtIRQ(dom, domctl.IRQBinding{Kind: domctl.PCI, MachineIRQ: 55, Bus: 0, Device: 3, Intx: 0})
		}},
		{"xc_bind_pt_isa_irq", func(d *domctl.Domctl) error {
			return d.BindPtIRQ(dom, domctl.IRQBinding{Kind: domctl.ISA, MachineIRQ: 9, ISAIRQ: 9})
		}},
		{"xc_unbind_pt_irq", func(d *domctl.Domctl) error {
			return d.UnbindPtIRQ(dom, domctl.IRQBinding{Kind: domctl.PCI, MachineIRQ: 55, Device: 3})
		}},
		{"xc_update_msi_irq", func(d *domctl.Domctl) error {
			return d.BindPtIRQ(dom, domctl.IRQBinding{Kind: domctl.MSI, MachineIRQ: 55, GVec: 0x41, GFlags: 0x5000, GTable: 0xfe002000})
		}},
		{"xc_unbind_msi_irq", func(d *domctl.Domctl) error {
			return d.UnbindPtIRQ(dom, domctl.IRQBinding{Kind: domctl.MSI, MachineIRQ: 55, GVec: 0x41, GFlags: 0x5000, GTable: 0xfe002000})
		}},
		{"xc_memory_mapping_add", func(d *domctl.Domctl) error {
			return d.MemoryMapping(dom, 0xf0000, 0xfe000, 16, true)
		}},
		{"xc_memory_mapping_remove", func(d *domctl.Domctl) error {
			return d.MemoryMapping(dom, 0xf0000, 0xfe000, 16, false)
		}},
		{"xc_ioport_mapping_add", func(d *domctl.Domctl) error {
			return d.IoportMapping(dom, 0xc000, 0xe000, 0x40, true)
		}},
		{"xc_iomem_permission", func(d *domctl.Domctl) error {
			return d.IomemPermission(dom, 0xfe000, 16, true)
		}},
		{"xc_ioport_permission", func(d *domctl.Domctl) error {
			return d.IoportPermission(dom, 0xe000, 0x40, true)
		}},
		{"xc_irq_permission", func(d *domctl.Domctl) error {
			return d.IRQPermission(dom, 55, true)
		}},
		{"xc_getdomaininfo", func(d *domctl.Domctl) error {
			info, err := d.GetDomainInfo(dom)
			if err != nil {
				return err
			}
			// The fixture's result: domid=7 hvm=1 vcpus=4 max_vcpu_id=3.
			want := domctl.DomainInfo{Domain: dom, Flags: xenabi.XEN_DOMINF_hvm_guest | xenabi.XEN_DOMINF_hap,
				TotPages: hcalltest.FakeDomainTotPages, MaxPages: hcalltest.FakeDomainMaxPages,
				SharedInfoFrame: hcalltest.FakeSharedInfoFrame, OnlineVCPUs: 4, MaxVCPUID: 3}
			if info != want || !info.HVM() || info.Dying() {
				t.Errorf("GetDomainInfo = %+v, want %+v", info, want)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			f := golden.Load(t, tt.fixture)
			k, d := open(t)
			if err := tt.call(d); err != nil {
				t.Fatalf("call: %v", err)
			}
			kerneltest.CheckIoctl(t, k.LastHypercall(t), f.Last(t, xenabi.IOCTL_PRIVCMD_HYPERCALL))
		})
	}
}

// TestOpen checks the choice of layout for each kind of hypervisor.
func TestOpen(t *testing.T) {
	tests := []struct {
		name          string
		xenMinor      int
		domctlVersion uint32
		failVersion   bool // xen_version fails
		wantVersion   uint32
		wantCalls     int // hypercalls Open makes
		wantErr       error
	}{
		{"Xen 4.17 by version", 17, 0x15, false, 0x15, 1, nil},
		{"Xen 4.19 by version", 19, 0x17, false, 0x17, 1, nil},
		{"Xen 4.15 by version", 15, 0x13, false, 0x13, 1, nil},
		// Probes go newest first: 0x18, 0x17, 0x16, 0x15, 0x14, 0x13.
		{"unknown Xen probed", 99, 0x15, false, 0x15, 5, nil},
		{"unknown Xen, newest probed first", 99, 0x18, false, 0x18, 2, nil},
		{"unknown Xen, no layout accepted", 99, 0x42, false, 0, 7, hyp.ErrNotSupported},
		{"no xen_version, probed", 17, 0x15, true, 0x15, 5, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, c := setup(t)
			k.XenMinor, k.DomctlVersion = tt.xenMinor, tt.domctlVersion
			if tt.failVersion {
				k.FailOp, k.FailErrno = xenabi.HYPERVISOR_xen_version, unix.ENOSYS
			}
			d, err := domctl.Open(c)
			if got := len(k.Hypercalls()); got != tt.wantCalls {
				t.Errorf("Open made %d hypercalls, want %d", got, tt.wantCalls)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Open: err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if got := d.InterfaceVersion(); got != tt.wantVersion {
				t.Errorf("InterfaceVersion = %#x, want %#x", got, tt.wantVersion)
			}
		})
	}
}

func TestOpenVersion(t *testing.T) {
	_, c := setup(t)
	if d, err := domctl.OpenVersion(c, 0x15); err != nil || d.InterfaceVersion() != 0x15 {
		t.Errorf("OpenVersion(0x15) = %v, %v", d, err)
	}
	if _, err := domctl.OpenVersion(c, 0x12); !errors.Is(err, hyp.ErrNotSupported) {
		t.Errorf("OpenVersion(0x12) err = %v, want ErrNotSupported", err)
	}
}

// TestVersionMismatch: a domctl in another version's layout is refused by
// Xen with EACCES, and the error says so.
func TestVersionMismatch(t *testing.T) {
	k, d := open(t)
	k.DomctlVersion = 0x16
	if err := d.IRQPermission(dom, 5, true); !errors.Is(err, unix.EACCES) {
		t.Errorf("err = %v, want EACCES", err)
	}
}

func TestGetDomainInfoOtherDomain(t *testing.T) {
	k, d := open(t)
	k.Domctl = func(op []byte) int64 {
		binary.LittleEndian.PutUint16(op[16:], 9) // Xen answers the next domain
		return 0
	}
	if _, err := d.GetDomainInfo(dom); !errors.Is(err, unix.ESRCH) {
		t.Errorf("err = %v, want ESRCH", err)
	}
}

func TestDomainInfoShutdown(t *testing.T) {
	i := domctl.DomainInfo{Flags: xenabi.XEN_DOMINF_shutdown | xenabi.SHUTDOWN_reboot<<xenabi.XEN_DOMINF_shutdownshift}
	if down, why := i.Shutdown(); !down || why != xenabi.SHUTDOWN_reboot {
		t.Errorf("Shutdown() = %v, %d, want true, %d", down, why, xenabi.SHUTDOWN_reboot)
	}
	if down, _ := (domctl.DomainInfo{}).Shutdown(); down {
		t.Errorf("zero DomainInfo reports shut down")
	}
}

type mapping struct {
	gfn, mfn, nr uint64
	add          bool
}

// TestMemoryMappingBatches checks libxenctrl's batching: E2BIG halves the
// batch; a failed mapping is rolled back; an unmapping goes on past
// errors and reports the first.
func TestMemoryMappingBatches(t *testing.T) {
	tests := []struct {
		name    string
		add     bool
		answer  func(m mapping, n int) int64 // n: calls so far
		want    []mapping
		wantErr error
	}{
		{"one batch", true, func(mapping, int) int64 { return 0 },
			[]mapping{{0x100, 0x900, 16, true}}, nil},
		{"halved to 4", true, func(m mapping, _ int) int64 {
			if m.nr > 4 {
				return -int64(unix.E2BIG)
			}
			return 0
		}, []mapping{{0x100, 0x900, 16, true}, {0x100, 0x900, 8, true}, {0x100, 0x900, 4, true},
			{0x104, 0x904, 4, true}, {0x108, 0x908, 4, true}, {0x10c, 0x90c, 4, true}}, nil},
		{"always E2BIG", true, func(mapping, int) int64 { return -int64(unix.E2BIG) },
			[]mapping{{0x100, 0x900, 16, true}, {0x100, 0x900, 8, true}, {0x100, 0x900, 4, true},
				{0x100, 0x900, 2, true}, {0x100, 0x900, 1, true}}, unix.E2BIG},
		{"add fails, rolled back", true, func(m mapping, n int) int64 {
			if m.nr > 8 {
				return -int64(unix.E2BIG)
			}
			if m.add && m.gfn == 0x108 {
				return -int64(unix.EPERM)
			}
			return 0
		}, []mapping{{0x100, 0x900, 16, true}, {0x100, 0x900, 8, true}, {0x108, 0x908, 8, true},
			{0x100, 0x900, 8, false}}, unix.EPERM},
		{"remove continues", false, func(m mapping, n int) int64 {
			if m.nr > 8 {
				return -int64(unix.E2BIG)
			}
			if m.gfn == 0x100 {
				return -int64(unix.ENOENT)
			}
			return 0
		}, []mapping{{0x100, 0x900, 16, false}, {0x100, 0x900, 8, false}, {0x108, 0x908, 8, false}}, unix.ENOENT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, d := open(t)
			var got []mapping
			k.Domctl = func(op []byte) int64 {
				le := binary.LittleEndian
				if le.Uint32(op) != xenabi.XEN_DOMCTL_memory_mapping {
					return -int64(unix.ENOSYS)
				}
				m := mapping{le.Uint64(op[16:]), le.Uint64(op[24:]), le.Uint64(op[32:]), le.Uint32(op[40:]) == 1}
				got = append(got, m)
				return tt.answer(m, len(got))
			}
			err := d.MemoryMapping(dom, 0x100, 0x900, 16, tt.add)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("domctls = %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("domctl %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
	_, d := open(t)
	if err := d.MemoryMapping(dom, 1, 2, 0, true); err != nil {
		t.Errorf("empty mapping: %v", err)
	}
}

// TestErrorsWrapped checks every call wraps the hypervisor's error.
func TestErrorsWrapped(t *testing.T) {
	calls := map[string]func(d *domctl.Domctl) error{
		"bind":    func(d *domctl.Domctl) error { return d.BindPtIRQ(dom, domctl.IRQBinding{Kind: domctl.PCI}) },
		"unbind":  func(d *domctl.Domctl) error { return d.UnbindPtIRQ(dom, domctl.IRQBinding{Kind: domctl.MSI}) },
		"mmap":    func(d *domctl.Domctl) error { return d.MemoryMapping(dom, 1, 2, 3, true) },
		"ioport":  func(d *domctl.Domctl) error { return d.IoportMapping(dom, 1, 2, 3, false) },
		"iomem":   func(d *domctl.Domctl) error { return d.IomemPermission(dom, 1, 2, false) },
		"ioperm":  func(d *domctl.Domctl) error { return d.IoportPermission(dom, 1, 2, false) },
		"irqperm": func(d *domctl.Domctl) error { return d.IRQPermission(dom, 1, false) },
		"info":    func(d *domctl.Domctl) error { _, err := d.GetDomainInfo(dom); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			k, d := open(t)
			k.Domctl = func([]byte) int64 { return -int64(unix.EPERM) }
			if err := call(d); !errors.Is(err, unix.EPERM) {
				t.Errorf("err = %v, want EPERM", err)
			}
		})
	}
}
