package passthrough

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"godm/devices"
)

func TestParseSBDF(t *testing.T) {
	tests := []struct {
		in   string
		want devices.SBDF
		ok   bool
	}{
		{"0000:03:00.0", devices.NewSBDF(0, 3, 0, 0), true},
		{"0001:ff:1f.7", devices.NewSBDF(1, 0xff, 31, 7), true},
		{"03:00.1", devices.NewSBDF(0, 3, 0, 1), true},
		{"0000:03:20.0", 0, false},
		{"0000:03:00.8", 0, false},
		{"03-00.0", 0, false},
		{"", 0, false},
		{"x:03:00.0", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseSBDF(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSBDF(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// TestParseSBDFMessages: a bad address is refused with a message that
// names the field and what is wrong with it.
func TestParseSBDFMessages(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"0000:03:00.9", `PCI address "0000:03:00.9": function 0x9 is out of range: a PCI function is 0..0x7`},
		{"0000:03:20.0", "device 0x20 is out of range: a PCI device is 0..0x1f"},
		{"0000:100:00.0", "bus 0x100 is out of range: a PCI bus is 0..0xff"},
		{"10000:03:00.0", `segment "10000": want 0..ffff`},
		{"0000:03:zz.0", `device "zz" is not a hexadecimal number`},
		{"0000:03:00.", `function "" is not a hexadecimal number`},
		{"03-00.0", "want SSSS:BB:DD.F"},
		{"", "want SSSS:BB:DD.F"},
	} {
		_, err := ParseSBDF(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "<nil>") {
			t.Errorf("ParseSBDF(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

// TestOpenHostSamples opens every real function of this machine (copied
// into testdata) from a fake tree, bound to pciback.
func TestOpenHostSamples(t *testing.T) {
	ents, err := os.ReadDir(filepath.Join("testdata", "devices"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Run(e.Name(), func(t *testing.T) {
			s := loadSample(t, e.Name())
			addr, _ := ParseSBDF(s.addr)
			h, err := OpenHost(HostOptions{SysfsRoot: tree(t, s)}, addr)
			if s.class>>16 == 0x06 {
				if !errors.Is(err, ErrBridge) {
					t.Fatalf("bridge %s: err = %v, want ErrBridge", s.addr, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenHost: %v", err)
			}
			defer h.Close()
			if h.Vendor != s.vendor || h.Device != s.device || h.Class != s.class || h.Driver != "pciback" {
				t.Errorf("host = %04x:%04x class %06x driver %q, want %04x:%04x class %06x pciback",
					h.Vendor, h.Device, h.Class, h.Driver, s.vendor, s.device, s.class)
			}
			if h.Resources[0] != s.resources[0] {
				t.Errorf("BAR0 = %+v, want %+v", h.Resources[0], s.resources[0])
			}
		})
	}
}

func TestOpenHostRefusals(t *testing.T) {
	syn := synthetic()
	unbound := syn
	unbound.driver = ""
	nic := syn
	nic.driver = "e1000e"
	bridge := syn
	bridge.config = append([]byte(nil), syn.config...)
	bridge.config[0x0e] = 0x01
	tests := []struct {
		name string
		dev  sysfsDevice
		addr string
		opts HostOptions
		want error
	}{
		{"missing", syn, "0000:04:00.0", HostOptions{}, ErrNoDevice},
		{"no driver", unbound, syn.addr, HostOptions{}, ErrNotAssignable},
		{"host driver", nic, syn.addr, HostOptions{}, ErrNotAssignable},
		{"other stub accepted", nic, syn.addr, HostOptions{StubDrivers: []string{"e1000e"}}, nil},
		{"bridge header", bridge, syn.addr, HostOptions{}, ErrBridge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.SysfsRoot = tree(t, tt.dev)
			addr, _ := ParseSBDF(tt.addr)
			h, err := OpenHost(tt.opts, addr)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				h.Close()
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestOpenHostSynthetic(t *testing.T) {
	h := openHost(t, synthetic())
	if h.GSI != 17 {
		t.Errorf("GSI = %d, want 17", h.GSI)
	}
	if got := h.Resources[2]; !got.IO() || got.Size() != 32 {
		t.Errorf("BAR2 = %+v, want 32 I/O ports", got)
	}
	if len(h.ROM) != 0x800 || h.ROM[0] != 0x55 {
		t.Errorf("ROM = %d bytes, want the 2K image", len(h.ROM))
	}
}
