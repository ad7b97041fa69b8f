package board

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"godm/block"
	"godm/devices"
	"godm/devices/ide"
	"godm/devices/xenplatform"
)

// rawDrive makes an n-MiB raw image and opens it as drive id.
func rawDrive(t *testing.T, id, media string) (*Drive, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), id+".img")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDrive(DriveOptions{ID: id, File: path, Format: "raw", Media: media, ReadOnly: media == "cdrom"})
	if err != nil {
		t.Fatal(err)
	}
	return d, path
}

func locked(path string) bool {
	d, err := block.Open(path, block.Options{Format: "raw"})
	if err != nil {
		return true
	}
	d.Close()
	return false
}

func ideBoard(t *testing.T, drives map[string]*Drive, extra ...Entry) *Board {
	t.Helper()
	env := testEnv()
	env.Drives = drives
	b, err := New(env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	list := append([]Entry{{Driver: "i440FX"}, {Driver: "PIIX3"}, {Driver: "piix3-ide"}, {Driver: "piix4-pm"},
		{Driver: "xen-platform", Props: map[string]string{"addr": "02"}}}, extra...)
	if err := b.Build(list); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIDEDrivers(t *testing.T) {
	hd0, p0 := rawDrive(t, "hd0", "disk")
	hd1, p1 := rawDrive(t, "hd1", "disk")
	cd, pc := rawDrive(t, "cd", "cdrom")
	e0, _ := IDEIndexEntry(0, "disk", "hd0")
	e1, _ := IDEIndexEntry(1, "disk", "hd1")
	b := ideBoard(t, map[string]*Drive{"hd0": hd0, "hd1": hd1, "cd": cd}, e0, e1,
		Entry{Driver: "ide-cd", Props: map[string]string{"id": "ide-5632", "drive": "cd", "bus": "ide.1", "unit": "0"}},
		Entry{Driver: "ide-cd", Props: map[string]string{"id": "empty", "bus": "ide.1", "unit": "1"}})
	ctl := b.First("piix3-ide").Dev.(*PIIX3IDE)
	for _, want := range []struct {
		bus, unit int
		kind      ide.Kind
	}{{0, 0, ide.HD}, {0, 1, ide.HD}, {1, 0, ide.CD}, {1, 1, ide.CD}} {
		if k, _ := ctl.DriveAt(want.bus, want.unit); k != want.kind {
			t.Errorf("%d.%d holds %v, want %v", want.bus, want.unit, k, want.kind)
		}
	}
	if !locked(p0) || !locked(p1) {
		t.Error("attached disks are not locked")
	}
	// Pause, snapshot and restore go through the controller and drives.
	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Restore(snap); err != nil {
		t.Fatalf("restore: %v", err)
	}
	// Errors, one line each.
	for _, tc := range []struct{ props, want string }{
		{"drive=hd0,bus=ide.1,unit=1", "already in use"},
		{"drive=nope,bus=ide.1,unit=1", "can't find value 'nope'"},
		{"drive=hd0,bus=ahci0.0", "an ahci device with id ID has"},
		{"drive=hd0,bus=ide.0,unit=2", "not 0 or 1"},
		{"bus=ide.1,unit=1", "drive property not set"},
	} {
		p, _ := ParseProps(tc.props)
		if _, err := b.Plug("ide-hd", "", p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ide-hd,%s: %v, want %q", tc.props, err, tc.want)
		}
	}
	// PV unplug, auxiliary disks only: the primary master stays.
	b.env.Spaces.PIO.Write(xenplatform.FixedPort, 2, 0, uint64(xenplatform.UnplugAuxDisks))
	if k, _ := ctl.DriveAt(0, 1); k != ide.None || locked(p1) {
		t.Errorf("aux unplug: 0.1 holds %v, image locked %v", k, locked(p1))
	}
	if k, _ := ctl.DriveAt(0, 0); k != ide.HD || !locked(p0) {
		t.Error("aux unplug removed the primary master")
	}
	// All disks: the master goes, the CD-ROM drives stay.
	b.env.Spaces.PIO.Write(xenplatform.FixedPort, 2, 0, uint64(xenplatform.UnplugDisks))
	if k, _ := ctl.DriveAt(0, 0); k != ide.None || locked(p0) {
		t.Errorf("unplug: 0.0 holds %v, image locked %v", k, locked(p0))
	}
	if k, _ := ctl.DriveAt(1, 0); k != ide.CD || b.Device("ide-5632") == nil {
		t.Error("the unplug removed a CD-ROM drive")
	}
	// Close releases the CD image.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if locked(pc) {
		t.Error("the CD image is locked after Close")
	}
}

func TestIDEDriveNeedsController(t *testing.T) {
	hd, path := rawDrive(t, "hd0", "disk")
	env := testEnv()
	env.Drives = map[string]*Drive{"hd0": hd}
	b, err := New(env)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := IDEIndexEntry(0, "disk", "hd0")
	if err := b.Build([]Entry{e}); err == nil || !strings.Contains(err.Error(), "No 'IDE' bus") {
		t.Errorf("ide-hd without a controller: %v", err)
	}
	b.Close()
	if locked(path) {
		t.Error("a drive no device took stays locked after Close")
	}
	var _ devices.Snapshotter = (*IDEDrive)(nil)
}

// TestDriveHandOver: InactivateDrives releases every image a device holds
// (another process can then open it) and ActivateDrives takes them back,
// failing while that process still holds one.
func TestDriveHandOver(t *testing.T) {
	hd0, p0 := rawDrive(t, "hd0", "disk")
	hd1, p1 := rawDrive(t, "hd1", "disk")
	e0, _ := IDEIndexEntry(0, "disk", "hd0")
	e1, _ := IDEIndexEntry(1, "disk", "hd1")
	b := ideBoard(t, map[string]*Drive{"hd0": hd0, "hd1": hd1}, e0, e1)
	if !locked(p0) || !locked(p1) {
		t.Fatal("the images are not locked while the board runs")
	}
	if err := b.InactivateDrives(); err != nil {
		t.Fatal(err)
	}
	other, err := block.Open(p1, block.Options{Format: "raw"})
	if err != nil {
		t.Fatalf("another process cannot open a handed-over image: %v", err)
	}
	if err := b.ActivateDrives(); err == nil || !strings.Contains(err.Error(), "lock") {
		t.Fatalf("activation while another process holds an image: %v", err)
	}
	other.Close()
	if err := b.ActivateDrives(); err != nil {
		t.Fatal(err)
	}
	if !locked(p0) || !locked(p1) {
		t.Error("the images are not locked again after activation")
	}
	// An inactive open (a migration's destination) takes no lock.
	in, err := OpenDrive(DriveOptions{ID: "in", File: p0, Format: "raw", Media: "disk", Inactive: true})
	if err != nil {
		t.Fatalf("inactive open beside the running board: %v", err)
	}
	if in.Block().Active() {
		t.Error("an inactive open serves I/O")
	}
	in.Close()
}
