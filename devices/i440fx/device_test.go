package i440fx

import (
	"testing"

	"godm/devices"
	"godm/devices/devicetest"
	"godm/pci"
)

func attach(t *testing.T) (*Device, *devices.Bus, devices.SBDF) {
	t.Helper()
	spaces := devices.NewBus()
	b, err := pci.NewBus(pci.BusConfig{Spaces: spaces})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{RAMSize: 128 << 20})
	if err != nil {
		t.Fatal(err)
	}
	s, err := d.Attach(b)
	if err != nil {
		t.Fatal(err)
	}
	return d, spaces, s
}

func TestRegisters(t *testing.T) {
	d, spaces, s := attach(t)
	if want := devices.NewSBDF(0, 0, 0, 0); s != want {
		t.Errorf("SBDF = %v, want %v", s, want)
	}
	cfg := spaces.PCI
	for _, tc := range []struct {
		name  string
		reg   uint32
		size  uint8
		write uint64 // written first when non-zero
		want  uint64
	}{
		{"id", 0x00, 4, 0, 0x12378086},
		{"class+rev", 0x08, 4, 0, 0x06000002},
		{"header type", 0x0e, 1, 0, 0},
		{"smram reset", RegSMRAM, 1, 0, 0x02},
		{"smram writable", RegSMRAM, 1, 0xff, 0xff},
		{"ram size", RegRAMSize, 1, 0, 0x10},
		{"subsystem", 0x2c, 4, 0, 0x11001af4},
		{"pam0", RegPAM, 1, 0x30, 0x30},
		{"pam1..4", RegPAM + 1, 4, 0x33333333, 0x33333333},
		{"pam6", RegPAM + 6, 1, 0x11, 0x11},
		{"beyond", 0x100, 4, 0, 0xffffffff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.write != 0 {
				cfg.Write(s, tc.reg, tc.size, 0, tc.write)
			}
			if got := cfg.Read(s, tc.reg, tc.size, 0); got != tc.want {
				t.Errorf("read %#x/%d = %#x, want %#x", tc.reg, tc.size, got, tc.want)
			}
		})
	}
	if got := d.PAM(0); got != 0x30 {
		t.Errorf("PAM(0) = %#x, want 0x30", got)
	}
	if got := d.PAM(6); got != 0x11 {
		t.Errorf("PAM(6) = %#x, want 0x11", got)
	}
	if got := d.PAM(7); got != 0 {
		t.Errorf("PAM(7) = %#x, want 0", got)
	}
	if got := d.SMRAM(); got != 0xff {
		t.Errorf("SMRAM = %#x, want 0xff", got)
	}
	// QEMU's i440FX has no reset handler: a system reset keeps PAM and
	// SMRAM; only a new bridge has the power-on values.
	d.Reset()
	if got := d.SMRAM(); got != 0xff {
		t.Errorf("SMRAM after reset = %#x, want 0xff (kept)", got)
	}
	if got := d.PAM(6); got != 0x11 {
		t.Errorf("PAM(6) after reset = %#x, want 0x11 (kept)", got)
	}
	if n, _ := New(Config{}); n.SMRAM() != smramReset || n.PAM(0) != 0 {
		t.Errorf("new bridge SMRAM %#x PAM(0) %#x, want %#x and 0", n.SMRAM(), n.PAM(0), smramReset)
	}
}

func TestConformance(t *testing.T) {
	devicetest.Run(t, func() devices.Handler {
		d, err := New(Config{RAMSize: 128 << 20})
		if err != nil {
			t.Fatal(err)
		}
		return d.Function()
	}, pci.ConfigSize)
}

func FuzzConfig(f *testing.F) {
	f.Add(uint16(RegSMRAM), uint8(1), uint32(0xff))
	f.Add(uint16(RegPAM), uint8(4), uint32(0x33333333))
	f.Add(uint16(0), uint8(4), uint32(0xffffffff))
	f.Fuzz(func(t *testing.T, reg uint16, size uint8, v uint32) {
		d, spaces, s := attach(t)
		size = []uint8{1, 2, 4, 8}[size%4]
		spaces.PCI.Write(s, uint32(reg), size, 0, uint64(v))
		_ = spaces.PCI.Read(s, uint32(reg), size, 0)
		if got := spaces.PCI.Read(s, 0, 4, 0); got != 0x12378086 {
			t.Fatalf("identity changed: %#x", got)
		}
		if got := spaces.PCI.Read(s, 0x2c, 4, 0); got != 0x11001af4 {
			t.Fatalf("subsystem changed: %#x", got)
		}
		_ = d.SMRAM()
	})
}
