package board

import (
	"strings"
	"testing"

	"godm/devices"
	"godm/devices/virtioblk"
	"godm/memory"
)

func TestVirtioBlkDriver(t *testing.T) {
	hd, path := rawDrive(t, "vd0", "disk")
	env := testEnv()
	mem := make([]byte, 1<<20)
	mc, err := memory.NewMapCache(memory.FromBytes(mem), memory.MapCacheConfig{BucketShift: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	env.Memory = mc
	env.Drives = map[string]*Drive{"vd0": hd}
	b, err := New(env)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Build([]Entry{{Driver: "i440FX"}, {Driver: "PIIX3"},
		{Driver: "virtio-blk-pci", Props: map[string]string{"id": "vblk", "drive": "vd0", "addr": "06", "serial": "S1"}}}); err != nil {
		t.Fatal(err)
	}
	p := b.Device("vblk")
	if p == nil || p.PCI == nil {
		t.Fatal("no vblk on the bus")
	}
	if h := p.PCI.Header(); h.VendorID != 0x1af4 || h.DeviceID != virtioblk.PCIDeviceID || p.PCI.SBDF().Dev() != 6 {
		t.Errorf("vblk is %04x:%04x at %v", h.VendorID, h.DeviceID, p.PCI.SBDF())
	}
	if !locked(path) {
		t.Error("the drive is not locked")
	}
	vb := p.Dev.(*VirtioBlk)
	// Status and a queue through the legacy registers survive a
	// snapshot and restore.
	leg := vb.Transport().LegacyRegs()
	leg.Write(devices.Access{Offset: 18, Size: 1}, 3)
	leg.Write(devices.Access{Offset: 8, Size: 4}, 0x10)
	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	leg.Write(devices.Access{Offset: 18, Size: 1}, 0)
	if err := b.Restore(snap); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if v := leg.Read(devices.Access{Offset: 18, Size: 1}); v != 3 {
		t.Errorf("status after restore %#x", v)
	}
	if v := leg.Read(devices.Access{Offset: 8, Size: 4}); v != 0x10 {
		t.Errorf("queue PFN after restore %#x", v)
	}
	b.Reset()
	if v := leg.Read(devices.Access{Offset: 18, Size: 1}); v != 0 {
		t.Errorf("status after reset %#x", v)
	}
	for _, tc := range []struct{ props, want string }{
		{"drive=vd0", "already in use"},
		{"drive=nope", "can't find value 'nope'"},
		{"", "drive property not set"},
	} {
		pp, _ := ParseProps(tc.props)
		if _, err := b.Plug("virtio-blk-pci", "", pp); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.props, err, tc.want)
		}
	}
	var help strings.Builder
	Help(&help)
	if !strings.Contains(help.String(), "virtio-blk-pci") {
		t.Error("-device help lacks virtio-blk-pci")
	}
	// device_del: the device and its -drive go (QEMU deletes a legacy
	// drive with its device).
	if err := b.Unplug("vblk"); err != nil {
		t.Fatal(err)
	}
	if locked(path) || b.Device("vblk") != nil {
		t.Error("unplug left the device or the drive's lock")
	}
}
