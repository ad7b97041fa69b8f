package xensim

import (
	"encoding/binary"
	"fmt"
	"testing"

	"godm/hyp"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// rawDomctl issues a struct xen_domctl with interface version v and union
// u from h's hypercall buffer, prefilling the rest of the union with
// fill, and returns the whole structure as Xen left it.
func (h *hc) rawDomctl(v, cmd uint32, dom uint16, u []byte, fill byte) ([]byte, error) {
	b := h.buf[:xenabi.XenDomctlSize]
	clear(b)
	for i := 16; i < len(b); i++ {
		b[i] = fill
	}
	binary.LittleEndian.PutUint32(b, cmd)
	binary.LittleEndian.PutUint32(b[4:], v)
	binary.LittleEndian.PutUint16(b[8:], dom)
	copy(b[16:], u)
	_, err := rawHypercall(h.pc, xenabi.HYPERVISOR_domctl, addr(b))
	return b, err
}

// releaseVersions is XEN_DOMCTL_INTERFACE_VERSION of each release, from
// the release tags' public/domctl.h.
var releaseVersions = map[int]uint32{15: 0x13, 16: 0x14, 17: 0x15, 18: 0x16, 19: 0x17, 20: 0x17, 21: 0x17, 22: 0x18}

// TestDomctlVersionPerRelease: each simulated release reports itself in
// xen_version and accepts exactly its own interface version; releases
// without a table accept none.
func TestDomctlVersionPerRelease(t *testing.T) {
	for _, rel := range [][2]int{{4, 14}, {4, 15}, {4, 16}, {4, 17}, {4, 18}, {4, 19}, {4, 20}, {4, 21}, {4, 22}, {4, 23}, {5, 0}} {
		t.Run(fmt.Sprintf("%d.%d", rel[0], rel[1]), func(t *testing.T) {
			s, d := newSim(t, Config{XenMajor: rel[0], XenMinor: rel[1]}, stdDomain())
			h := newHC(t, s, 0)
			r, err := rawHypercall(h.pc, xenabi.HYPERVISOR_xen_version, xenverVersion, 0)
			if err != nil || r != uintptr(rel[0]<<16|rel[1]) {
				t.Errorf("xen_version = %#x, %v, want %#x", r, err, rel[0]<<16|rel[1])
			}
			own, known := releaseVersions[rel[1]]
			known = known && rel[0] == 4
			for v := uint32(0); v < 0x20; v++ {
				_, err := h.rawDomctl(v, xenabi.XEN_DOMCTL_getdomaininfo, uint16(d.ID()), nil, 0)
				want := unix.EACCES
				if known && v == own {
					want = 0
				}
				if want == 0 && err != nil || want != 0 && !isErrno(err, want) {
					t.Errorf("getdomaininfo in version %#x: %v, want %v", v, err, want)
				}
			}
		})
	}
}

// TestDomctlGetDomainInfoPerRelease: which domain answers (the next one
// up to 4.17, exactly the one named from 4.18), the errors, and the
// answer's layout in each release (gpaddr_bits from 4.16, arch_config
// moving from 96 to 104), with the rest of the union left as it was.
func TestDomctlGetDomainInfoPerRelease(t *testing.T) {
	for minor, v := range releaseVersions {
		t.Run(fmt.Sprintf("4.%d", minor), func(t *testing.T) {
			s, d1 := newSim(t, Config{XenMajor: 4, XenMinor: minor}, stdDomain())
			d2, err := s.CreateDomain(DomainConfig{VCPUs: 1})
			if err != nil {
				t.Fatal(err)
			}
			d3, err := s.CreateDomain(DomainConfig{VCPUs: 3, RAM: []Region{{GPA: 0, Size: 0x10000}}})
			if err != nil {
				t.Fatal(err)
			}
			d1.SetDeviceModel(d3.ID())
			if err := d2.Close(); err != nil {
				t.Fatal(err)
			}
			h := newHC(t, s, 0)
			stub := newHC(t, s, uint16(d3.ID()))
			exact := minor >= 18

			// Domain 2 is gone: up to 4.17 domain 3 answers.
			b, err := h.rawDomctl(v, xenabi.XEN_DOMCTL_getdomaininfo, uint16(d2.ID()), nil, 0xee)
			if exact {
				if !isErrno(err, unix.ESRCH) {
					t.Errorf("getdomaininfo of a destroyed domain: %v, want ESRCH", err)
				}
			} else {
				if err != nil {
					t.Fatalf("getdomaininfo of a destroyed domain: %v, want the next one", err)
				}
				u := b[16:]
				if got := binary.LittleEndian.Uint16(u); got != uint16(d3.ID()) {
					t.Errorf("answered domain %d, want %d", got, d3.ID())
				}
				if got := binary.LittleEndian.Uint16(b[8:]); got != uint16(d3.ID()) {
					t.Errorf("header's domain %d, want %d (echoed)", got, d3.ID())
				}
			}
			for _, tt := range []struct {
				name   string
				h      *hc
				dom    hyp.DomID
				before unix.Errno // up to 4.17
				after  unix.Errno // 4.18 to 4.21
				at422  unix.Errno
			}{
				{"beyond the last", h, d3.ID() + 1, unix.ESRCH, unix.ESRCH, unix.ESRCH},
				{"reserved id", h, xenabi.DOMID_IO, unix.EINVAL, unix.ESRCH, unix.ESRCH},
				{"from a stub, existing", stub, d1.ID(), unix.EPERM, unix.EPERM, unix.EPERM},
				{"from a stub, missing", stub, d3.ID() + 1, unix.EPERM, unix.ESRCH, unix.EPERM},
			} {
				want := tt.before
				if minor >= 22 {
					want = tt.at422
				} else if exact {
					want = tt.after
				}
				if _, err := tt.h.rawDomctl(v, xenabi.XEN_DOMCTL_getdomaininfo, uint16(tt.dom), nil, 0); !isErrno(err, want) {
					t.Errorf("%s: %v, want %v", tt.name, err, want)
				}
			}

			b, err = h.rawDomctl(v, xenabi.XEN_DOMCTL_getdomaininfo, uint16(d3.ID()), nil, 0xee)
			if err != nil {
				t.Fatal(err)
			}
			u := b[16:]
			le := binary.LittleEndian
			size, emul := 112, 104
			if minor == 15 {
				size, emul = 104, 96
			}
			want := make([]byte, 128)
			for i := size; i < 128; i++ {
				want[i] = 0xee // beyond the structure: as the caller left it
			}
			le.PutUint16(want[0:], uint16(d3.ID()))
			le.PutUint32(want[4:], xenabi.XEN_DOMINF_running|xenabi.XEN_DOMINF_hvm_guest|xenabi.XEN_DOMINF_hap)
			le.PutUint64(want[8:], 16)  // tot_pages
			le.PutUint64(want[16:], 16) // max_pages
			le.PutUint32(want[64:], 3)  // nr_online_vcpus
			le.PutUint32(want[68:], 2)  // max_vcpu_id
			if minor >= 16 {
				want[96] = simGPAddrBits
			}
			le.PutUint32(want[emul:], simHVMEmuFlags)
			for i := range want {
				if u[i] != want[i] {
					t.Errorf("getdomaininfo answer byte %d = %#x, want %#x\n% x\nwant\n% x", i, u[i], want[i], u, want)
					break
				}
			}
		})
	}
}

// TestDomctlIRQPermissionPerRelease: 4.15's irq_permission is {uint8_t
// pirq; uint8_t allow_access;}, 4.16's {uint32_t pirq; uint8_t
// allow_access; uint8_t pad[3];}; each release reads its own.
func TestDomctlIRQPermissionPerRelease(t *testing.T) {
	narrow := []byte{0x37, 1}            // 4.15: pirq 0x37, allow
	wide := []byte{0x37, 1, 0, 0, 1}     // 4.16+: pirq 0x137, allow
	wideOnly := []byte{0x37, 0, 0, 0, 1} // 4.16+: pirq 0x37, allow; 4.15: pirq 0x37, deny
	tests := []struct {
		minor     int
		u         []byte
		pirq      uint64
		allow     bool
		wantErrno unix.Errno
	}{
		{15, narrow, 0x37, true, 0},
		{15, wide, 0x37, true, 0},
		{15, wideOnly, 0x37, false, 0},
		{16, narrow, 0x137, false, 0},
		{16, wide, 0x137, true, 0},
		{16, wideOnly, 0x37, true, 0},
		{22, wideOnly, 0x37, true, 0},
		{22, []byte{0, 4, 0, 0, 1}, 0x400, true, unix.EINVAL}, // beyond nr_pirqs
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("4.%d/% x", tt.minor, tt.u), func(t *testing.T) {
			s, d := newSim(t, Config{XenMajor: 4, XenMinor: tt.minor}, stdDomain())
			h := newHC(t, s, 0)
			mark := s.LastSeq()
			_, err := h.rawDomctl(releaseVersions[tt.minor], xenabi.XEN_DOMCTL_irq_permission, uint16(d.ID()), tt.u, 0)
			if tt.wantErrno != 0 {
				if !isErrno(err, tt.wantErrno) {
					t.Errorf("err = %v, want %v", err, tt.wantErrno)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			evs := s.EventsSince(mark)
			if len(evs) != 1 || evs[0].Kind != EventPermission || evs[0].First != tt.pirq || evs[0].Level != tt.allow {
				t.Errorf("events %+v, want pirq %#x allow %v", evs, tt.pirq, tt.allow)
			}
		})
	}
}

// TestDomctlMissingDomainPerRelease: a domctl on a domain that does not
// exist is ESRCH, except from 4.22 for a caller that is not the control
// domain (EPERM, so as not to reveal which domains exist).
func TestDomctlMissingDomainPerRelease(t *testing.T) {
	for minor, v := range releaseVersions {
		t.Run(fmt.Sprintf("4.%d", minor), func(t *testing.T) {
			s, d := newSim(t, Config{XenMajor: 4, XenMinor: minor}, stdDomain())
			stub, err := s.CreateDomain(DomainConfig{VCPUs: 1})
			if err != nil {
				t.Fatal(err)
			}
			d.SetDeviceModel(stub.ID())
			missing := uint16(stub.ID() + 10)
			want := unix.ESRCH
			if minor >= 22 {
				want = unix.EPERM
			}
			if _, err := newHC(t, s, uint16(stub.ID())).rawDomctl(v, xenabi.XEN_DOMCTL_bind_pt_irq, missing, nil, 0); !isErrno(err, want) {
				t.Errorf("from the stub: %v, want %v", err, want)
			}
			if _, err := newHC(t, s, 0).rawDomctl(v, xenabi.XEN_DOMCTL_bind_pt_irq, missing, nil, 0); !isErrno(err, unix.ESRCH) {
				t.Errorf("from dom0: %v, want ESRCH", err)
			}
		})
	}
}

// FuzzDomctl: any struct xen_domctl, in any release, gets an answer and
// leaves the simulator consistent (no panic).
func FuzzDomctl(f *testing.F) {
	f.Add(uint8(17), []byte{5, 0, 0, 0, 0x15, 0, 0, 0, 1, 0})
	f.Add(uint8(15), []byte{19, 0, 0, 0, 0x13, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xff, 1})
	f.Add(uint8(22), []byte{39, 0, 0, 0, 0x18, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xf, 0, 0, 0, 0, 0, 0, 0xe0, 0xf, 0, 0, 0, 0, 0, 1})
	f.Add(uint8(20), []byte{38, 0, 0, 0, 0x17, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 2, 0, 0, 0, 0x41})
	f.Add(uint8(16), []byte{40, 0, 0, 0, 0x14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0xff, 0, 0, 0, 0xe0, 0, 0, 0x20})
	f.Fuzz(func(t *testing.T, minor uint8, op []byte) {
		s, d := newSim(t, Config{XenMajor: 4, XenMinor: int(minor%10) + 14}, stdDomain())
		h := newHC(t, s, 0)
		if _, err := h.mapPIRQ(uint16(d.ID()), xenabi.MAP_PIRQ_TYPE_GSI, 20, 20); err != nil {
			t.Fatal(err)
		}
		b := h.buf[:xenabi.XenDomctlSize]
		clear(b)
		copy(b, op)
		_, _ = rawHypercall(h.pc, xenabi.HYPERVISOR_domctl, addr(b))
		// The simulator still answers.
		v, ok := s.domctlABI()
		if !ok {
			return
		}
		if _, err := h.rawDomctl(v.version, xenabi.XEN_DOMCTL_getdomaininfo, 0, nil, 0); err != nil {
			t.Errorf("getdomaininfo after the fuzzed domctl: %v", err)
		}
	})
}
