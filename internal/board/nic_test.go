package board

import (
	"strings"
	"testing"

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
