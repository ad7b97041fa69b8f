package passthrough

import (
	"context"
	"errors"
	"strings"
	"testing"

	"godm/devices"
	"godm/ioreq"
)

func TestParseDeviceOption(t *testing.T) {
	h := devices.NewSBDF(0, 3, 0, 0)
	tests := []struct {
		in   string
		want DeviceSpec
		ok   bool
	}{
		{"xen-pci-passthrough,id=pci-pt-03_00.0,hostaddr=0000:03:00.0", DeviceSpec{ID: "pci-pt-03_00.0", HostAddr: h, Slot: -1}, true},
		{"xen-pci-passthrough,hostaddr=0000:03:00.0,addr=0a.0,permissive=on", DeviceSpec{ID: "pci-pt-03_00.0", HostAddr: h, Slot: 10, Permissive: true}, true},
		{"xen-pci-passthrough,hostaddr=0000:03:00.0,addr=5", DeviceSpec{ID: "pci-pt-03_00.0", HostAddr: h, Slot: 5}, true},
		{"xen-pci-passthrough,hostaddr=0000:03:00.0,addr=5.1", DeviceSpec{}, false},
		{"xen-pci-passthrough,hostaddr=0000:03:00.0,addr=20.0", DeviceSpec{}, false},
		{"xen-pci-passthrough,hostaddr=0000:03:00.0,permissive=maybe", DeviceSpec{}, false},
		{"xen-pci-passthrough,id=x", DeviceSpec{}, false},
		{"e1000,hostaddr=0000:03:00.0", DeviceSpec{}, false},
		{"xen-pci-passthrough,hostaddr", DeviceSpec{}, false},
		// QEMU's option syntax: every spelling of a boolean, the short
		// form, the driver key spelled out.
		{"xen-pci-passthrough,hostaddr=0000:03:00.0,permissive=y", DeviceSpec{ID: "pci-pt-03_00.0", HostAddr: h, Slot: -1, Permissive: true}, true},
		{"xen-pci-passthrough,hostaddr=0000:03:00.0,permissive", DeviceSpec{ID: "pci-pt-03_00.0", HostAddr: h, Slot: -1, Permissive: true}, true},
		{"xen-pci-passthrough,hostaddr=0000:03:00.0,nopermissive", DeviceSpec{ID: "pci-pt-03_00.0", HostAddr: h, Slot: -1}, true},
		{"driver=xen-pci-passthrough,hostaddr=0000:03:00.0,permissive=false", DeviceSpec{ID: "pci-pt-03_00.0", HostAddr: h, Slot: -1}, true},
	}
	for _, tt := range tests {
		got, err := ParseDeviceOption(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("ParseDeviceOption(%q) = %+v, %v; want %+v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
	// Refusals name -device and the key (before this went through
	// internal/qemuopts, a repeated key silently kept its last value and
	// an unknown one was ignored).
	for in, want := range map[string]string{
		"xen-pci-passthrough,hostaddr=0000:03:00.0,hostaddr=0000:04:00.0": "-device xen-pci-passthrough: property 'hostaddr' given twice",
		"xen-pci-passthrough,hostaddr=0000:03:00.0,rombar=0":              "-device xen-pci-passthrough: unknown property 'rombar'",
		"xen-pci-passthrough,hostaddr=0000:03:00.0,permissive=maybe":      "-device xen-pci-passthrough: property 'permissive' expects 'on' or 'off', not \"maybe\"",
		"xen-pci-passthrough,id=a,,b,hostaddr=0000:03:00.0":               "-device xen-pci-passthrough: property 'id' expects an identifier",
		"xen-pci-passthrough,help":                                        "godm -device xen-pci-passthrough,help lists its properties",
	} {
		_, err := ParseDeviceOption(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseDeviceOption(%q) = %v, want an error containing %q", in, err, want)
		}
	}
	// QMP arguments: permissive as a JSON boolean.
	got, err := DeviceSpecFromArgs(map[string]any{"driver": DriverName, "id": "pci-pt-03_00.0",
		"hostaddr": "0000:03:00.0", "permissive": true})
	if err != nil || !got.Permissive || got.Slot != -1 {
		t.Errorf("DeviceSpecFromArgs = %+v, %v", got, err)
	}
	if _, err := DeviceSpecFromArgs(map[string]any{"driver": DriverName, "hostaddr": 3}); err == nil {
		t.Errorf("numeric hostaddr accepted")
	}
}

// TestManagerOnXensim adds two functions at run time to a served bus,
// refuses duplicates, removes them and checks nothing is left.
func TestManagerOnXensim(t *testing.T) {
	r := newSimRig(t)
	x, p := simXen(t, r)
	bus := devices.NewBus()
	srv, err := ioreq.NewServer(p, r.sim.Kernel(0), ioreq.Config{Dom: r.dom.ID(), Bus: bus})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	m := NewManager(ManagerConfig{Dom: r.dom.ID(), Bus: bus, Xen: x, HostOptions: HostOptions{SysfsRoot: r.root}})
	a, err := m.Add(DeviceSpec{ID: "a", HostAddr: devices.NewSBDF(0, 3, 0, 0), Slot: -1})
	must(t, err)
	b, err := m.Add(DeviceSpec{ID: "b", HostAddr: devices.NewSBDF(0, 0, 3, 0), Slot: -1})
	must(t, err)
	if a.SBDF != devices.NewSBDF(0, 0, 1, 0) || b.SBDF != devices.NewSBDF(0, 0, 2, 0) {
		t.Errorf("auto slots = %v, %v; want 00:01.0, 00:02.0", a.SBDF, b.SBDF)
	}
	v := r.dom.VCPU(0)
	if got, err := v.PCIConfigRead(uint32(b.SBDF), 0, 4); err != nil || got != 0x10411af4 {
		t.Errorf("second function reads %#x, %v", got, err)
	}
	for _, bad := range []DeviceSpec{
		{ID: "a", HostAddr: devices.NewSBDF(0, 0, 4, 0), Slot: -1},    // id in use
		{ID: "c", HostAddr: devices.NewSBDF(0, 3, 0, 0), Slot: -1},    // host in use
		{ID: "d", HostAddr: devices.NewSBDF(0, 9, 0, 0), Slot: -1},    // no such function
		{ID: "e", HostAddr: devices.NewSBDF(0, 0, 3, 0) + 1, Slot: 1}, // slot taken (and no such function)
	} {
		if _, err := m.Add(bad); err == nil {
			t.Errorf("Add(%+v) accepted", bad)
		}
	}
	if got := m.List(); len(got) != 2 || got[0].ID != "a" || got[1].ID != "b" {
		t.Errorf("List = %+v", got)
	}
	must(t, m.Remove("a"))
	if err := m.Remove("a"); err == nil {
		t.Errorf("second Remove accepted")
	}
	if got, _ := v.PCIConfigRead(uint32(a.SBDF), 0, 4); got != 0xffffffff {
		t.Errorf("removed function reads %#x", got)
	}
	must(t, m.Close())
	must(t, m.Close())
	cancel()
	must(t, <-served)
	must(t, srv.Close())
	if err := replay(r.sim.Events()).clean(); err != nil {
		t.Error(err)
	}
}

// fakeSlots is a slot registry with slot 1 held by an emulated function.
type fakeSlots struct{ reserved [32]bool }

func (f *fakeSlots) Reserve(dev uint8) error {
	if dev == 1 || f.reserved[dev] {
		return errors.New("slot in use")
	}
	f.reserved[dev] = true
	return nil
}

func (f *fakeSlots) ReserveAuto() (uint8, error) {
	for d := uint8(1); d < 32; d++ {
		if f.Reserve(d) == nil {
			return d, nil
		}
	}
	return 0, errors.New("full")
}

func (f *fakeSlots) Release(dev uint8) error {
	if !f.reserved[dev] {
		return errors.New("not reserved")
	}
	f.reserved[dev] = false
	return nil
}

// TestManagerRequireAssigned: a function Xen has in no guest's IOMMU
// context is refused up front when RequireAssigned (nothing reaches Xen,
// no slot stays reserved), accepted without it (libxl's QMP order: it
// assigns after device_add), and either way nothing is mapped before Xen
// confirms the assignment.
func TestManagerRequireAssigned(t *testing.T) {
	r := newSimRig(t)
	c, dc := simDomctl(t, r)
	host := devices.NewSBDF(0, 3, 0, 0)
	must(t, dc.DeassignDevice(r.dom.ID(), uint32(host)))
	slots := &fakeSlots{}
	m := NewManager(ManagerConfig{Dom: r.dom.ID(), Bus: devices.NewBus(), Xen: NewXen(c, dc),
		HostOptions: HostOptions{SysfsRoot: r.root}, Assign: dc, Slots: slots})
	defer m.Close()
	mark := r.sim.LastSeq()
	_, err := m.AddWith(DeviceSpec{ID: "a", HostAddr: host, Slot: -1}, AddOptions{RequireAssigned: true})
	if !errors.Is(err, ErrNotGranted) {
		t.Fatalf("AddWith(RequireAssigned) of a free function: %v, want ErrNotGranted", err)
	}
	if ev := r.sim.EventsSince(mark); len(ev) != 0 || slots.reserved != [32]bool{} {
		t.Errorf("refused Add left events %v, slots %v", ev, slots.reserved)
	}
	// libxl's order: device_add first, assignment after.
	pl, err := m.Add(DeviceSpec{ID: "a", HostAddr: host, Slot: -1})
	must(t, err)
	if pl.SBDF.Dev() != 2 || !slots.reserved[2] {
		t.Errorf("placed at %v, reserved %v; want slot 2 reserved", pl.SBDF, slots.reserved[2])
	}
	d := m.devs["a"].dev
	c2 := cfgIO{d}
	c2.w(0x10, 4, 0xe0000000)
	c2.w(0x04, 2, 0x0002)
	if got := d.Mappings(); len(got) != 0 {
		t.Errorf("mapped before Xen confirmed the assignment: %+v", got)
	}
	must(t, dc.AssignDevice(r.dom.ID(), uint32(host), 0)) // libxl's pci_add_dm_done
	c2.w(0x04, 2, 0x0002)
	if got := d.Mappings(); len(got) != 1 {
		t.Errorf("after the assignment: mappings %+v, want BAR0", got)
	}
	// A fixed slot the registry refuses is refused, and frees nothing.
	if _, err := m.Add(DeviceSpec{ID: "b", HostAddr: devices.NewSBDF(0, 0, 3, 0), Slot: 1}); err == nil {
		t.Error("Add into a slot the registry holds succeeded")
	}
	must(t, m.Remove("a"))
	if slots.reserved != [32]bool{} {
		t.Errorf("slots still reserved after Remove: %v", slots.reserved)
	}
	if err := replay(r.sim.Events()).clean(); err != nil {
		t.Error(err)
	}
}
