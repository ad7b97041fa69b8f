package board

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"godm/devices"
	"godm/devices/chardev"
	"godm/devices/savestate"
	"godm/irq"
	"godm/memory"
)

// testEnv is a board environment without Xen: flat guest memory and
// interrupt lines that do nothing.
func testEnv() Env {
	return Env{
		Spaces:   devices.NewBus(),
		Memory:   memory.NewFlat(0, 1<<20),
		ISA:      func(uint8) irq.Line { return irq.LineFunc(func(bool) {}) },
		Chardevs: map[string]chardev.Backend{"c0": chardev.NewNull()},
		RAMSize:  1 << 20,
		VCPUs:    1,
	}
}

var defaultList = []Entry{
	{Driver: "i440FX"}, {Driver: "PIIX3"}, {Driver: "piix4-pm"},
	{Driver: "xen-platform", Props: map[string]string{"addr": "02"}},
	{Driver: "isa-serial", Props: map[string]string{"chardev": "c0"}},
	{Driver: "i8042"},
	{Driver: TestDevice, Props: map[string]string{"addr": "05", "id": "td"}},
}

func newTestBoard(t testing.TB) *Board {
	t.Helper()
	b, err := New(testEnv())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.Build(defaultList); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBuildOrderAndIDs(t *testing.T) {
	b := newTestBoard(t)
	var got []string
	for _, p := range b.Devices() {
		got = append(got, p.ID)
	}
	want := "i440FX.0 PIIX3.0 piix4-pm.0 xen-platform.0 isa-serial.0 i8042.0 td"
	if strings.Join(got, " ") != want {
		t.Errorf("devices %q, want %q", strings.Join(got, " "), want)
	}
	if s := b.Device("isa-serial.0").Dev.(*ISASerial); s.IOBase != 0x3f8 || s.IRQ != 4 || s.Index != 0 {
		t.Errorf("first isa-serial at %#x irq %d index %d, want COM1", s.IOBase, s.IRQ, s.Index)
	}
	// A second serial port takes the next index, as in QEMU.
	p, err := b.Plug("isa-serial", "", NewProps(map[string]string{}))
	if err != nil {
		t.Fatal(err)
	}
	if s := p.Dev.(*ISASerial); s.IOBase != 0x2f8 || s.IRQ != 3 {
		t.Errorf("second isa-serial at %#x irq %d, want COM2", s.IOBase, s.IRQ)
	}
}

func TestClosedBoardRefusesPlug(t *testing.T) {
	b := newTestBoard(t)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(b.env.Spaces.PIO.Ranges()); n != 0 {
		t.Errorf("%d port ranges left after Close", n)
	}
	if n := len(b.env.Spaces.PCI.Functions()); n != 0 {
		t.Errorf("%d PCI functions left after Close", n)
	}
	if _, err := b.Plug("i8042", "", NewProps(nil)); err == nil {
		t.Error("plug on a closed board succeeded")
	}
}

func TestRestoreRefusesOtherLayouts(t *testing.T) {
	b := newTestBoard(t)
	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Restore(snap); err != nil {
		t.Fatalf("restore of its own snapshot: %v", err)
	}
	// Another version of the board format.
	bad := bytes.Clone(snap)
	bad[4+4+len(boardRecord)] = 9
	if err := b.Restore(bad); !errors.Is(err, savestate.ErrVersion) {
		t.Errorf("other version: %v", err)
	}
	// Another layout: one device more.
	c := newTestBoard(t)
	if _, err := c.Plug("isa-serial", "com2", NewProps(nil)); err != nil {
		t.Fatal(err)
	}
	if err := c.Restore(snap); err == nil || !strings.Contains(err.Error(), "7 devices, this board 8") {
		t.Errorf("restore into a larger board: %v", err)
	}
	// Same count, other ids.
	d, err := New(testEnv())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	other := append([]Entry(nil), defaultList...)
	other[6] = Entry{Driver: TestDevice, Props: map[string]string{"addr": "05", "id": "tx"}}
	if err := d.Build(other); err != nil {
		t.Fatal(err)
	}
	if err := d.Restore(snap); err == nil || !strings.Contains(err.Error(), "'td'") {
		t.Errorf("restore with other ids: %v", err)
	}
	// A device record of another driver under the right id.
	if err := b.Device("td").Dev.(devices.Snapshotter).Restore(savestate.Record("i8042", 1, nil)); !errors.Is(err, savestate.ErrDriver) {
		t.Errorf("record of another driver: %v", err)
	}
	// Truncations are refused, never a panic.
	for n := range len(snap) {
		if err := b.Restore(snap[:n]); err == nil {
			t.Fatalf("restore of %d of %d bytes succeeded", n, len(snap))
		}
	}
}

// FuzzRestore feeds hostile snapshots to a board: every input is refused
// with an error or loaded, never a panic, hang or huge allocation, and the
// board still snapshots afterwards.
func FuzzRestore(f *testing.F) {
	b := newTestBoard(f)
	snap, err := b.Snapshot()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(snap)
	for _, p := range b.Devices() {
		rec, _ := p.Dev.(devices.Snapshotter).Snapshot()
		f.Add(rec)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		_ = b.Restore(in)
		for _, p := range b.Devices() {
			_ = p.Dev.(devices.Snapshotter).Restore(in)
		}
		if _, err := b.Snapshot(); err != nil {
			t.Fatal(err)
		}
	})
}

// A device plugged into a paused board starts paused and resumes with
// the board.
func TestPlugWhilePaused(t *testing.T) {
	b := newTestBoard(t)
	b.Pause()
	p, err := b.Plug("isa-serial", "com2", NewProps(nil))
	if err != nil {
		t.Fatal(err)
	}
	u := p.Dev.(*ISASerial).UART
	if n := u.Receive([]byte("x")); n != 0 {
		t.Errorf("UART plugged into a paused board took %d bytes", n)
	}
	b.Resume()
	if n := u.Receive([]byte("x")); n != 1 {
		t.Errorf("UART after Resume took %d bytes", n)
	}
}
