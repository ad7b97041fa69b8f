package passthrough

import (
	"encoding/binary"
	"testing"

	"godm/hyp/domctl"
	"godm/hyp/xenabi"
)

// withExtended returns d with a 4096-byte host configuration space whose
// extended space holds capabilities godm does not virtualise: AER at
// 0x100 (next 0x148) and ACS at 0x148, with nonzero registers.
func withExtended(d sysfsDevice) sysfsDevice {
	c := make([]byte, 4096)
	copy(c, d.config)
	le := binary.LittleEndian
	le.PutUint32(c[0x100:], 0x14820001) // AER, version 2, next 0x148
	le.PutUint32(c[0x104:], 0x00001000) // uncorrectable error status
	le.PutUint32(c[0x148:], 0x0001000d) // ACS, version 1, next 0
	le.PutUint32(c[0xffc:], 0xdeadbeef)
	d.config = c
	return d
}

// TestExtendedConfigSpace: the guest never sees the host's extended
// space. A PCI Express function shows an empty extended capability list
// (0 from 0x100 on), a conventional one has no extended space
// (all-ones); an access straddling 0x100 gets the virtualised low part;
// writes there are dropped (counted) and never reach the host.
func TestExtendedConfigSpace(t *testing.T) {
	pcie := withExtended(synthetic())                   // PCIe v2 capability at 0x60
	conv := withExtended(loadSample(t, "0000_00_03.0")) // virtio-net, conventional
	tests := []struct {
		name string
		dev  sysfsDevice
		reg  uint32
		size uint8
		want uint64
	}{
		{"pcie header at 0x100", pcie, 0x100, 4, 0},
		{"pcie AER status", pcie, 0x104, 4, 0},
		{"pcie last dword", pcie, 0xffc, 4, 0},
		{"pcie byte", pcie, 0x148, 1, 0},
		{"pcie straddle", pcie, 0xfe, 4, 0},                  // 0xfe-0xff emulated 0 (no rule: host bytes 0)
		{"pcie 8 bytes straddle", pcie, 0xfc, 8, 0x00000000}, // host 0xfc-0xff are 0
		{"conventional header at 0x100", conv, 0x100, 4, 0xffffffff},
		{"conventional word", conv, 0x200, 2, 0xffff},
		{"conventional straddle", conv, 0xfe, 4, 0xffff0000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev, _, _, _ := plugged(t, tt.dev, true) // permissive: even then
			if got := (cfgIO{dev}).r(tt.reg, tt.size); got != tt.want {
				t.Errorf("read %#x/%d = %#x, want %#x", tt.reg, tt.size, got, tt.want)
			}
		})
	}
	t.Run("writes", func(t *testing.T) {
		dev, x, _, h := plugged(t, pcie, true)
		c := cfgIO{dev}
		before := dev.Stats().DroppedWrites
		c.w(0x104, 4, 0xffffffff) // AER status: write-1-to-clear on the host
		c.w(0x148, 4, 0)
		c.w(0xfe, 4, 0xffffffff)
		if got := dev.Stats().DroppedWrites - before; got != 3 {
			t.Errorf("DroppedWrites = %d, want 3", got)
		}
		if got := hostCfg(t, h, 0x104, 4); got != 0x1000 {
			t.Errorf("host AER status = %#x, want it untouched", got)
		}
		if got := hostCfg(t, h, 0x148, 4); got != 0x0001000d {
			t.Errorf("host ACS header = %#x, want it untouched", got)
		}
		if got := hostCfg(t, h, 0xfc, 4); got != 0 {
			t.Errorf("host 0xfc = %#x, want it untouched", got)
		}
		if x.count() != 2 { // INTx map and bind at plug
			t.Errorf("extended writes reached Xen: %v", x.since(2))
		}
	})
	t.Run("after unplug", func(t *testing.T) {
		dev, _, _, _ := plugged(t, pcie, false)
		if err := dev.Unplug(); err != nil {
			t.Fatal(err)
		}
		if got := (cfgIO{dev}).r(0x100, 4); got != 0xffffffff {
			t.Errorf("read after unplug = %#x, want all-ones", got)
		}
	})
}

// TestMultiMessageRefused: a guest asking for several MSI vectors
// (Multiple Message Enable) gets one: Multiple Message Capable and Enable
// read 0, one PIRQ is mapped and bound, the request is counted.
func TestMultiMessageRefused(t *testing.T) {
	d := synthetic()
	// The host function can do 8 vectors (MMC = 3).
	binary.LittleEndian.PutUint16(d.config[0xd2:], 0x0186)
	dev, x, _, h := plugged(t, d, false)
	c := cfgIO{dev}
	if got := c.r(0xd2, 2); got&0x7e != 0 {
		t.Errorf("MSI control = %#x, want MMC and MME 0", got)
	}
	c.w(0xd4, 4, 0xfee00000)
	c.w(0xdc, 2, 0x0048)
	mark := x.count()
	c.w(0xd2, 2, 0x0031) // MME = 8 vectors, enable
	flags := uint32(xenabi.XEN_DOMCTL_VMSI_X86_UNMASKED)
	checkCalls(t, x.since(mark), []call{
		{op: "map_pirq", pirq: 100},
		{op: "bind", b: domctl.IRQBinding{Kind: domctl.MSI, MachineIRQ: 100, GVec: 0x48, GFlags: flags}},
	})
	if got := x.since(mark); len(got) > 0 && (got[0].req.Type != xenabi.MAP_PIRQ_TYPE_MSI || got[0].req.EntryNr != 0) {
		t.Errorf("map_pirq = %+v, want one MSI (not MULTI_MSI)", got[0].req)
	}
	if got := c.r(0xd2, 2); got != 0x0081 {
		t.Errorf("MSI control = %#x, want 0x81 (enabled, one vector)", got)
	}
	if got := hostCfg(t, h, 0xd2, 2); got&0x70 != 0 {
		t.Errorf("host MSI control = %#x: MME reached the host", got)
	}
	if got := dev.Stats().MultiMessage; got != 1 {
		t.Errorf("MultiMessage = %d, want 1", got)
	}
}
