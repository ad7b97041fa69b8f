package board

import (
	"strings"
	"testing"

	"godm/devices"
	"godm/devices/virtionet"
	"godm/memory"
	"godm/netback"
)

// TestVirtioNetBoard: virtio-net-pci through the NIC driver: netdev=,
// mac=, addr=, id=, x-godm-bar32, the default MACs counted across models,
// set_link by netdev, snapshot and restore of its record, the platform's
// unplug of NICs, -device help; refused without pinnable memory.
func TestVirtioNetBoard(t *testing.T) {
	env := testEnv()
	flat, err := New(env)
	if err != nil {
		t.Fatal(err)
	}
	defer flat.Close()
	if _, err := flat.Plug(VirtioNetDriver, "", NewProps(nil)); err == nil || !strings.Contains(err.Error(), "pinnable") {
		t.Errorf("virtio-net on flat memory: %v", err)
	}

	mk := func() *Board {
		env := testEnv()
		mc, err := memory.NewMapCache(memory.FromBytes(make([]byte, 1<<20)), memory.MapCacheConfig{BucketShift: 16})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { mc.Close() })
		env.Memory = mc
		be := portBE{netback.NewPort(netback.PortConfig{Depth: 8})}
		t.Cleanup(func() { be.Close() })
		env.Netdevs = map[string]netback.Backend{"net0": be}
		b, err := New(env)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		if err := b.Build([]Entry{{Driver: "i440FX"}, {Driver: "PIIX3"}, {Driver: "xen-platform", Props: map[string]string{"addr": "02"}}}); err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := mk()
	p, err := b.Plug(VirtioNetDriver, "vn0", NewProps(map[string]string{"netdev": "net0", "mac": "00:16:3e:01:02:03", "addr": "05", "x-godm-bar32": "on"}))
	if err != nil {
		t.Fatal(err)
	}
	if h := p.PCI.Header(); h.VendorID != 0x1af4 || h.DeviceID != virtionet.PCIDeviceID || p.PCI.SBDF().Dev() != 5 {
		t.Fatalf("virtio-net is %04x:%04x at %v", h.VendorID, h.DeviceID, p.PCI.SBDF())
	}
	n := p.Dev.(*NIC)
	vn, ok := n.NICModel.(*virtionet.Device)
	if !ok || n.MAC() != [6]byte{0, 0x16, 0x3e, 1, 2, 3} || !n.LinkUp() {
		t.Fatalf("%T mac %x", n.NICModel, n.MAC())
	}
	// x-godm-bar32: BAR4 is a 32-bit memory BAR.
	if v := p.PCI.ConfigRead(0x20, 4); v&0x6 != 0 {
		t.Errorf("BAR4 %#x is not 32-bit", v)
	}
	d2, err := b.Plug(VirtioNetDriver, "", NewProps(nil))
	if err != nil {
		t.Fatal(err)
	}
	if m := d2.Dev.(*NIC).MAC(); m != [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x57} {
		t.Errorf("default MAC %x", m)
	}
	if !b.SetLink("net0", false) || n.LinkUp() {
		t.Error("set_link net0 off")
	}
	leg := vn.Transport().LegacyRegs()
	leg.Write(devices.Access{Offset: 18, Size: 1}, 3)
	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(snap), virtionet.RecordName) {
		t.Error("no virtio-net record in the snapshot")
	}
	b2 := mk()
	if _, err := b2.Plug(VirtioNetDriver, "vn0", NewProps(map[string]string{"netdev": "net0", "addr": "05", "x-godm-bar32": "on"})); err != nil {
		t.Fatal(err)
	}
	if _, err := b2.Plug(VirtioNetDriver, "", NewProps(nil)); err != nil {
		t.Fatal(err)
	}
	if err := b2.Restore(snap); err != nil {
		t.Fatal(err)
	}
	n2 := b2.Device("vn0").Dev.(*NIC)
	if n2.LinkUp() || n2.NICModel.(*virtionet.Device).Transport().Status() != 3 {
		t.Error("link or status not restored")
	}
	if err := b.UnplugNICs(); err != nil {
		t.Fatal(err)
	}
	for _, p := range b.Devices() {
		if _, ok := p.Dev.(*NIC); ok {
			t.Fatalf("%s (%s) still plugged", p.ID, p.Driver)
		}
	}
	var help strings.Builder
	if err := Help(&help); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(help.String(), `name "virtio-net-pci", bus PCI, desc "virtio network device`) {
		t.Errorf("-device help:\n%s", help.String())
	}
}
