package board

import (
	"strings"
	"testing"

	"godm/devices/e1000"
	"godm/netback"
)

type portBE struct{ *netback.Port }

func (p portBE) Close() error { p.Shutdown(); return nil }

func nicBoard(t *testing.T) (*Board, map[string]netback.Backend) {
	t.Helper()
	env := testEnv()
	nets := map[string]netback.Backend{}
	for _, id := range []string{"net0", "net1"} {
		be := portBE{netback.NewPort(netback.PortConfig{Depth: 8})}
		t.Cleanup(func() { be.Close() })
		nets[id] = be
	}
	env.Netdevs = nets
	b, err := New(env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.Build(append(defaultList[:len(defaultList):len(defaultList)],
		Entry{Driver: NICDriver, Props: map[string]string{"id": "nic0", "netdev": "net0", "mac": "00:16:3e:01:02:03"}},
		Entry{Driver: NICDriver, Props: map[string]string{"addr": "07"}})); err != nil {
		t.Fatal(err)
	}
	return b, nets
}

func TestNICPlug(t *testing.T) {
	b, _ := nicBoard(t)
	nic := b.Device("nic0").Dev.(*NIC)
	if nic.MAC() != [6]byte{0x00, 0x16, 0x3e, 1, 2, 3} || nic.Netdev != "net0" || !nic.LinkUp() {
		t.Fatalf("nic0: mac %x netdev %q link %v", nic.MAC(), nic.Netdev, nic.LinkUp())
	}
	other := b.Device("rtl8139.0").Dev.(*NIC)
	if other.MAC() != [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x57} || other.LinkUp() {
		t.Fatalf("default NIC: mac %x link %v (no netdev: no cable)", other.MAC(), other.LinkUp())
	}
	if s := b.Device("rtl8139.0").PCI.SBDF(); s.Dev() != 7 {
		t.Fatalf("addr=07 placed at %v", s)
	}
	for _, c := range []struct {
		props map[string]string
		want  string
	}{
		{map[string]string{"netdev": "nope"}, "can't find value 'nope'"},
		{map[string]string{"netdev": "net0"}, "it's in use by 'nic0'"},
		{map[string]string{"mac": "00:16:3e:01:02"}, "is not a MAC address"},
		{map[string]string{"mac": "01:16:3e:01:02:03"}, "multicast"},
		{map[string]string{"mac": "00:16:3e:01:02:0g"}, "is not a MAC address"},
		{map[string]string{"vlan": "1"}, "property 'vlan' not found"},
	} {
		_, err := b.Plug(NICDriver, "", NewProps(c.props))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.props, err, c.want)
		}
	}
	// Unplug frees the netdev for another NIC (QMP device_del, device_add).
	if err := b.Unplug("nic0"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Plug(NICDriver, "nic1", NewProps(map[string]string{"netdev": "net0"})); err != nil {
		t.Fatal(err)
	}
}

func TestNICUnplugByPlatform(t *testing.T) {
	b, _ := nicBoard(t)
	if err := b.UnplugNICs(); err != nil {
		t.Fatal(err)
	}
	for _, p := range b.Devices() {
		if p.Driver == NICDriver {
			t.Fatalf("%s still plugged", p.ID)
		}
	}
	if b.Device("td") == nil {
		t.Fatal("the test device went too")
	}
}

func TestNICSnapshot(t *testing.T) {
	b, _ := nicBoard(t)
	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := nicBoard(t)
	if err := b2.Restore(snap); err != nil {
		t.Fatal(err)
	}
	b.Reset()
}

// TestE1000Board: the e1000 driver on the same board vocabulary as the
// rtl8139: netdev=, mac=, addr=, id=, the default MACs counted across
// models, a netdev used once, snapshot and restore of its record, reset,
// set_link by id, the platform's unplug of NICs, -device help.
func TestE1000Board(t *testing.T) {
	b, _ := nicBoard(t)
	nic, err := b.Plug(E1000Driver, "e0", NewProps(map[string]string{"netdev": "net1", "mac": "00:16:3e:0a:0b:0c", "addr": "09"}))
	if err != nil {
		t.Fatal(err)
	}
	if s := nic.PCI.SBDF(); s.Dev() != 9 {
		t.Fatalf("addr=09 placed at %v", s)
	}
	n := nic.Dev.(*NIC)
	if _, ok := n.NICModel.(*e1000.Device); !ok || n.MAC() != [6]byte{0, 0x16, 0x3e, 0xa, 0xb, 0xc} || !n.LinkUp() {
		t.Fatalf("e1000: %T mac %x link %v", n.NICModel, n.MAC(), n.LinkUp())
	}
	if id := nic.PCI.ConfigRead(0, 4); id != 0x100e8086 {
		t.Fatalf("IDs %#x", id)
	}
	// A second e1000 without mac= takes the next default MAC (two NICs
	// made before it).
	d2, err := b.Plug(E1000Driver, "", NewProps(nil))
	if err != nil {
		t.Fatal(err)
	}
	if m := d2.Dev.(*NIC).MAC(); m != [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x59} {
		t.Errorf("default MAC %x", m)
	}
	if _, err := b.Plug(E1000Driver, "", NewProps(map[string]string{"netdev": "net1"})); err == nil ||
		!strings.Contains(err.Error(), "Property 'e1000.netdev' can't take value 'net1', it's in use by 'e0'") {
		t.Errorf("netdev used twice: %v", err)
	}
	if !b.SetLink("e0", false) || n.LinkUp() {
		t.Error("set_link e0 off")
	}
	b.SetLink("net1", true)
	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(snap), "e1000") {
		t.Error("no e1000 record in the snapshot")
	}
	b2, _ := nicBoard(t)
	if _, err := b2.Plug(E1000Driver, "e0", NewProps(map[string]string{"addr": "09"})); err != nil {
		t.Fatal(err)
	}
	if _, err := b2.Plug(E1000Driver, "", NewProps(nil)); err != nil {
		t.Fatal(err)
	}
	if err := b2.Restore(snap); err != nil {
		t.Fatal(err)
	}
	b.Reset()
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
	if !strings.Contains(help.String(), `name "e1000", bus PCI, desc "Intel Gigabit Ethernet (82540EM)"`) {
		t.Errorf("-device help:\n%s", help.String())
	}
}
