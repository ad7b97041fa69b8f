package board

import (
	"strings"
	"testing"

	"godm/devices/nvme"
	"godm/pci"
)

func TestNVMeDriver(t *testing.T) {
	hd, path := rawDrive(t, "nv0", "disk")
	env := testEnv()
	env.Drives = map[string]*Drive{"nv0": hd}
	b, err := New(env)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Build([]Entry{{Driver: "i440FX"}, {Driver: "PIIX3"},
		{Driver: "nvme", Props: map[string]string{"id": "nvme0", "drive": "nv0", "addr": "06", "serial": "S1"}}}); err != nil {
		t.Fatal(err)
	}
	p := b.Device("nvme0")
	if p == nil || p.PCI == nil {
		t.Fatal("no nvme0 on the bus")
	}
	if h := p.PCI.Header(); h.VendorID != nvme.VendorID || h.DeviceID != nvme.DeviceID || h.Class != nvme.Class || p.PCI.SBDF().Dev() != 6 {
		t.Errorf("nvme0 is %04x:%04x class %06x at %v", h.VendorID, h.DeviceID, h.Class, p.PCI.SBDF())
	}
	if !locked(path) {
		t.Error("the drive is not locked")
	}
	if _, ok := p.Dev.(*NVMe); !ok {
		t.Fatalf("device is %T", p.Dev)
	}
	// BAR0 at 0xfe000000; the admin queues in the 1 MiB of RAM.
	sbdf := p.PCI.SBDF()
	cfg := func(off uint32, size uint8, v uint64) { env.Spaces.PCI.Write(sbdf, off, size, 0, v) }
	cfg(0x10, 4, 0xfe000000)
	cfg(0x14, 4, 0)
	cfg(pci.RegCommand, 2, pci.CommandMemory|pci.CommandMaster)
	rd := func(off uint64) uint64 { return env.Spaces.MMIO.Read(0xfe000000+off, 4, 0) }
	wr := func(off uint64, v uint64) { env.Spaces.MMIO.Write(0xfe000000+off, 4, 0, v) }
	if rd(0x08) != 0x10400 {
		t.Fatalf("VS %#x through the board", rd(0x08))
	}
	wr(0x24, 3<<16|3)
	wr(0x28, 0x10000)
	wr(0x30, 0x20000)
	wr(0x14, 6<<16|4<<20|1)
	if rd(0x1c) != 1 {
		t.Fatalf("CSTS %#x after enable", rd(0x1c))
	}
	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	wr(0x14, 0)
	wr(0x24, 0)
	if err := b.Restore(snap); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if rd(0x1c) != 1 || rd(0x24) != 3<<16|3 {
		t.Errorf("CSTS %#x AQA %#x after restore", rd(0x1c), rd(0x24))
	}
	b.Reset()
	if v := p.PCI.ConfigRead(pci.RegCommand, 2); v&pci.CommandMemory != 0 {
		t.Error("reset left memory decoding on")
	}
	cfg(0x10, 4, 0xfe000000)
	cfg(pci.RegCommand, 2, pci.CommandMemory)
	if rd(0x1c) != 0 || rd(0x14) != 0 || rd(0x24) != 0 {
		t.Errorf("CSTS %#x CC %#x AQA %#x after reset", rd(0x1c), rd(0x14), rd(0x24))
	}
	hd2, _ := rawDrive(t, "nv1", "disk")
	b.env.Drives["nv1"] = hd2
	for _, tc := range []struct{ props, want string }{
		{"drive=nv0,serial=x", "already in use"},
		{"drive=nope,serial=x", "can't find value 'nope'"},
		{"serial=x", "drive property not set"},
		{"drive=nv1", "serial property not set"},
		{"drive=nv1,serial=x,bogus=1", "bogus"},
	} {
		pp, _ := ParseProps(tc.props)
		if _, err := b.Plug("nvme", "", pp); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.props, err, tc.want)
		}
	}
	var help strings.Builder
	Help(&help)
	if !strings.Contains(help.String(), `"nvme"`) {
		t.Error("-device help lacks nvme")
	}
	help.Reset()
	if err := DriverHelp(&help, "nvme"); err != nil || !strings.Contains(help.String(), "serial") {
		t.Errorf("-device nvme,help: %v %q", err, help.String())
	}
	if err := b.Unplug("nvme0"); err != nil {
		t.Fatal(err)
	}
	if locked(path) || b.Device("nvme0") != nil {
		t.Error("unplug left the device or the drive's lock")
	}
}
