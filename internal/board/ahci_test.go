package board

import (
	"strings"
	"testing"

	"godm/devices/ahci"
	"godm/devices/xenplatform"
)

func TestAHCIDrivers(t *testing.T) {
	hd0, p0 := rawDrive(t, "ahcidisk-0", "disk")
	hd1, p1 := rawDrive(t, "ahcidisk-1", "disk")
	cd, _ := rawDrive(t, "cd", "cdrom")
	// libxl_dm.c for hdtype="ahci": -device ahci,id=ahci0, then per disk
	// -device ide-hd,bus=ahci0.N,unit=0,drive=ahcidisk-N.
	b := ideBoard(t, map[string]*Drive{"ahcidisk-0": hd0, "ahcidisk-1": hd1, "cd": cd},
		Entry{Driver: "ahci", Props: map[string]string{"id": "ahci0"}},
		Entry{Driver: "ide-hd", Props: map[string]string{"bus": "ahci0.0", "unit": "0", "drive": "ahcidisk-0"}},
		Entry{Driver: "ide-hd", Props: map[string]string{"bus": "ahci0.3", "unit": "0", "drive": "ahcidisk-1"}})
	a := b.Device("ahci0")
	if a == nil || a.PCI == nil {
		t.Fatal("no ahci0 on the PCI bus")
	}
	if h := a.PCI.Header(); h.VendorID != ahci.VendorID || h.DeviceID != ahci.DeviceID || h.Class != ahci.Class {
		t.Errorf("ahci0 is %04x:%04x class %06x", h.VendorID, h.DeviceID, h.Class)
	}
	ctl := a.Dev.(*AHCI)
	if ctl.DriveAt(0) != hd0.Block() || ctl.DriveAt(3) != hd1.Block() || ctl.DriveAt(1) != nil {
		t.Error("disks not on ports 0 and 3")
	}
	if !locked(p0) || !locked(p1) {
		t.Error("attached disks are not locked")
	}
	snap, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Restore(snap); err != nil {
		t.Fatalf("restore: %v", err)
	}
	for _, tc := range []struct{ drv, props, want string }{
		{"ide-hd", "drive=ahcidisk-0,bus=ahci0.1", "already in use"},
		{"ide-hd", "drive=nope,bus=ahci0.1", "can't find value 'nope'"},
		{"ide-hd", "drive=x,bus=ahci0.6", "ahci0.0 to ahci0.5"},
		{"ide-hd", "drive=x,bus=ahci0.1,unit=1", "unit 0 only"},
		{"ide-hd", "bus=ahci0.1", "drive property not set"},
		{"ide-cd", "drive=nope,bus=ahci0.2", "ide-cd.drive' can't find value 'nope'"},
		{"ide-cd", "drive=cd,bus=ahci0.2,unit=1", "unit 0 only"},
	} {
		p, _ := ParseProps(tc.props)
		if _, err := b.Plug(tc.drv, "", p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s,%s: %v, want %q", tc.drv, tc.props, err, tc.want)
		}
	}
	// An ide-cd on port 2 with a medium, an empty one on port 4: ATAPI,
	// media changes through the board (QMP's eject and change).
	for id, props := range map[string]string{"cd2": "drive=cd,bus=ahci0.2", "cd4": "bus=ahci0.4"} {
		p, err := ParseProps(props)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Plug("ide-cd", id, p); err != nil {
			t.Fatal(err)
		}
	}
	if !ctl.IsCD(2) || !ctl.IsCD(4) || ctl.DriveAt(2) != cd.Block() || ctl.DriveAt(4) != nil {
		t.Fatal("CD-ROM drives not on ports 2 and 4")
	}
	var kinds []string
	for _, st := range b.Blocks() {
		kinds = append(kinds, st.Device+":"+st.Kind.String())
	}
	if got := strings.Join(kinds, " "); got != "ahcidisk-0:ide-hd ahcidisk-1:ide-hd cd:ide-cd cd4:ide-cd" {
		t.Errorf("blocks %s", got)
	}
	if moved, err := b.OpenTray("cd2", false); err != nil || !moved || ctl.DriveAt(2) != nil {
		t.Fatalf("eject: moved %v, %v", moved, err)
	}
	if open, _, _ := ctl.TrayState(2); !open {
		t.Error("tray closed after the eject")
	}
	iso, _ := rawDrive(t, "iso", "cdrom")
	iso.Close() // free its lock: ChangeMedium opens the file itself
	if _, err := b.ChangeMedium("cd4", DriveOptions{File: iso.Opts.File, Format: "raw"}); err != nil {
		t.Fatal(err)
	}
	if ctl.DriveAt(4) == nil {
		t.Error("no medium on port 4 after the change")
	}
	if _, err := b.OpenTray("ahcidisk-0", false); err == nil || !strings.Contains(err.Error(), "not removable") {
		t.Errorf("eject of an AHCI disk: %v", err)
	}
	// PV unplug of the auxiliary disks keeps port 0; of all disks takes it.
	b.env.Spaces.PIO.Write(xenplatform.FixedPort, 2, 0, uint64(xenplatform.UnplugAuxDisks))
	if ctl.DriveAt(3) != nil || locked(p1) || ctl.DriveAt(0) == nil {
		t.Error("aux unplug: want port 3 gone and port 0 kept")
	}
	b.env.Spaces.PIO.Write(xenplatform.FixedPort, 2, 0, uint64(xenplatform.UnplugDisks))
	if ctl.DriveAt(0) != nil || locked(p0) {
		t.Error("unplug left port 0's disk")
	}
	if !ctl.IsCD(2) || !ctl.IsCD(4) {
		t.Error("the disk unplug removed CD-ROM drives")
	}
}
