package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"godm/block"
)

// TestLibxlDisks starts godm with the disk options libxl writes (an IDE
// disk by index, a CD-ROM as if=none plus -device ide-cd) and checks
// what the guest finds on the legacy IDE ports through Xen's path, that
// the image is locked against a second writer while godm holds it, and
// that the PV drivers' unplug of emulated disks removes the disk (its
// lock released at once) but leaves the CD-ROM drive.
func TestLibxlDisks(t *testing.T) {
	needPTY(t)
	r := newDMRig(t)
	dom := int(r.dom.ID())
	img := filepath.Join(r.dir, "disk,1.img") // a comma, escaped as libxl does
	iso := filepath.Join(r.dir, "cd.iso")
	if err := os.WriteFile(img, make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(iso, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	argv := libxlArgv(dom, r.dir) +
		" -drive file=" + strings.ReplaceAll(img, ",", ",,") + ",if=ide,index=0,media=disk,format=raw,cache=writeback" +
		" -drive if=none,readonly=on,id=ide-5632,file=" + iso + ",format=raw" +
		" -device ide-cd,id=ide-5632,drive=ide-5632,bus=ide.1,unit=0"
	r.start(t, argv, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	statePath := fmt.Sprintf("/local/domain/0/device-model/%d/state", dom)
	if err := r.xs.WaitValue(ctx, statePath, []byte("running")); err != nil {
		t.Fatalf("waiting for %s: %v (log: %s)", statePath, err, r.log.String())
	}
	v := r.dom.VCPU(0)
	out := func(port uint16, val uint64) {
		if err := v.Out(port, 1, val); err != nil {
			t.Fatal(err)
		}
	}
	in := func(port uint16, size int) uint64 {
		x, err := v.In(port, size)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	identify := func(base uint16, cmd uint64) []uint16 {
		out(base+6, 0xa0)
		out(base+7, cmd)
		if st := in(base+7, 1); st != 0x58 {
			t.Fatalf("%#x: status after command %#x: %#x", base, cmd, st)
		}
		w := make([]uint16, 256)
		for i := range w {
			w[i] = uint16(in(base, 2))
		}
		return w
	}
	if w := identify(0x1f0, 0xec); uint32(w[60])|uint32(w[61])<<16 != 8<<20/512 {
		t.Errorf("IDENTIFY: %d sectors, want %d", uint32(w[60])|uint32(w[61])<<16, 8<<20/512)
	}
	if w := identify(0x170, 0xa1); w[0] != 0x85c0 {
		t.Errorf("IDENTIFY PACKET word 0 %#x", w[0])
	}
	if _, err := block.Open(img, block.Options{Format: "raw"}); err == nil || !strings.Contains(err.Error(), "lock") {
		t.Errorf("second writer of godm's image: %v, want a lock error", err)
	}
	// The platform device's unplug protocol: 0x49d2 magic read, then
	// "unplug all IDE disks" (bit 0) at port 0x10.
	if m := in(0x10, 2); m != 0x49d2 {
		t.Fatalf("platform magic %#x", m)
	}
	if err := v.Out(0x10, 2, 1); err != nil {
		t.Fatal(err)
	}
	if st := in(0x1f7, 1); st != 0 {
		t.Errorf("primary channel status after the unplug %#x, want 0 (no drive)", st)
	}
	if d, err := block.Open(img, block.Options{Format: "raw"}); err != nil {
		t.Errorf("the unplugged disk's image is still locked: %v", err)
	} else {
		d.Close()
	}
	if w := identify(0x170, 0xa1); w[0] != 0x85c0 {
		t.Errorf("the CD-ROM drive went with the disks: IDENTIFY PACKET word 0 %#x", w[0])
	}
	// xl cd-eject and cd-insert through QMP.
	q := qmpDial(t, filepath.Join(r.dir, fmt.Sprintf("qmp-libxl-%d", dom)))
	ret, e := q.do("query-block", nil)
	if l, _ := ret.([]any); e != "" || len(l) != 1 { // the disk went with the unplug
		t.Fatalf("query-block: %v %q", ret, e)
	}
	if _, e := q.do("eject", map[string]any{"id": "ide-5632"}); e != "" {
		t.Fatalf("eject: %q", e)
	}
	if d, err := block.Open(iso, block.Options{Format: "raw"}); err != nil {
		t.Errorf("the ejected image is still locked: %v", err)
	} else {
		d.Close()
	}
	iso2 := filepath.Join(r.dir, "cd2.iso")
	if err := os.WriteFile(iso2, make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, e := q.do("blockdev-change-medium", map[string]any{"id": "ide-5632", "filename": iso2, "format": "raw"}); e != "" {
		t.Fatalf("blockdev-change-medium: %q", e)
	}
	ret, _ = q.do("query-block", nil)
	if b := fmt.Sprint(ret); !strings.Contains(b, iso2) || !strings.Contains(b, "virtual-size:4.194304e+06") {
		t.Errorf("query-block after the change: %s", b)
	}
	// The guest: NOT READY, then UNIT ATTENTION (TEST UNIT READY packets).
	packetTUR := func() uint64 {
		out(0x176, 0xa0)
		out(0x174, 0)
		out(0x175, 0)
		out(0x177, 0xa0)
		for range 6 {
			if err := v.Out(0x170, 2, 0); err != nil {
				t.Fatal(err)
			}
		}
		return in(0x171, 1)
	}
	if e1, e2 := packetTUR(), packetTUR(); e1 != 0x20 || e2 != 0x60 {
		t.Errorf("TUR after the change: errors %#x %#x, want 0x20 (not ready) then 0x60 (unit attention)", e1, e2)
	}
	r.stop()
	if err := r.wait(); err != nil {
		t.Errorf("godm: %v", err)
	}
	if d, err := block.Open(iso2, block.Options{Format: "raw"}); err != nil {
		t.Errorf("the CD image is still locked after godm ended: %v", err)
	} else {
		d.Close()
	}
}

// TestLibxlAHCIDisk starts godm with what libxl writes for
// hdtype="ahci" (-device ahci,id=ahci0, the disk as if=none plus
// -device ide-hd,bus=ahci0.0) and checks that the guest's configuration
// space shows the ICH9 AHCI function, that the image is locked while godm
// holds it, and that the PV drivers' unplug releases it.
func TestLibxlAHCIDisk(t *testing.T) {
	needPTY(t)
	r := newDMRig(t)
	dom := int(r.dom.ID())
	img := filepath.Join(r.dir, "sata.img")
	if err := os.WriteFile(img, make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	iso := filepath.Join(r.dir, "cd.iso")
	if err := os.WriteFile(iso, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	argv := libxlArgv(dom, r.dir) + " -device ahci,id=ahci0" +
		" -drive file=" + img + ",if=none,id=ahcidisk-0,format=raw,cache=writeback" +
		" -device ide-hd,bus=ahci0.0,unit=0,drive=ahcidisk-0" +
		// A CD-ROM on an AHCI port (ATAPI over AHCI), as an admin's
		// device_model_args_hvm may add it.
		" -drive if=none,readonly=on,id=sata-cd,file=" + iso + ",format=raw" +
		" -device ide-cd,id=sata-cd,drive=sata-cd,bus=ahci0.1,unit=0"
	r.start(t, argv, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	statePath := fmt.Sprintf("/local/domain/0/device-model/%d/state", dom)
	if err := r.xs.WaitValue(ctx, statePath, []byte("running")); err != nil {
		t.Fatalf("waiting for %s: %v (log: %s)", statePath, err, r.log.String())
	}
	v := r.dom.VCPU(0)
	cfg := func(slot, off int) uint64 {
		if err := v.Out(0xcf8, 4, uint64(0x80000000|slot<<11|off)); err != nil {
			t.Fatal(err)
		}
		x, err := v.In(0xcfc, 4)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	found := -1
	for slot := range 32 {
		if cfg(slot, 0) == 0x29228086 {
			found = slot
		}
	}
	if found < 0 {
		t.Fatalf("no 8086:2922 function on bus 0 (log: %s)", r.log.String())
	}
	if class := cfg(found, 8) >> 8; class != 0x010601 {
		t.Errorf("AHCI class %#x", class)
	}
	if _, err := block.Open(img, block.Options{Format: "raw"}); err == nil || !strings.Contains(err.Error(), "lock") {
		t.Errorf("second writer of godm's image: %v, want a lock error", err)
	}
	if m, err := v.In(0x10, 2); err != nil || m != 0x49d2 {
		t.Fatalf("platform magic %#x %v", m, err)
	}
	if err := v.Out(0x10, 2, 1); err != nil {
		t.Fatal(err)
	}
	if d, err := block.Open(img, block.Options{Format: "raw"}); err != nil {
		t.Errorf("the unplugged AHCI disk's image is still locked: %v", err)
	} else {
		d.Close()
	}
	// The CD-ROM drive stays; QMP ejects and changes its medium.
	q := qmpDial(t, filepath.Join(r.dir, fmt.Sprintf("qmp-libxl-%d", dom)))
	ret, e := q.do("query-block", nil)
	if b := fmt.Sprint(ret); e != "" || !strings.Contains(b, "sata-cd") || !strings.Contains(b, iso) || strings.Contains(b, "ahcidisk-0") {
		t.Fatalf("query-block after the unplug: %s %q", b, e)
	}
	if _, e := q.do("eject", map[string]any{"id": "sata-cd"}); e != "" {
		t.Fatalf("eject: %q", e)
	}
	if d, err := block.Open(iso, block.Options{Format: "raw"}); err != nil {
		t.Errorf("the ejected image is still locked: %v", err)
	} else {
		d.Close()
	}
	iso2 := filepath.Join(r.dir, "cd2.iso")
	if err := os.WriteFile(iso2, make([]byte, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, e := q.do("blockdev-change-medium", map[string]any{"id": "sata-cd", "filename": iso2, "format": "raw"}); e != "" {
		t.Fatalf("blockdev-change-medium: %q", e)
	}
	ret, _ = q.do("query-block", nil)
	if b := fmt.Sprint(ret); !strings.Contains(b, iso2) || !strings.Contains(b, "tray_open:false") {
		t.Errorf("query-block after the change: %s", b)
	}
	r.stop()
	if err := r.wait(); err != nil {
		t.Errorf("godm: %v", err)
	}
}

// TestArgvPCIDisks starts godm with an NVMe and a virtio-blk disk as an
// admin adds them through device_model_args_hvm (-drive if=none plus
// -device nvme / virtio-blk-pci, one with addr=) and checks that the
// guest's configuration space shows both functions where they were put
// and that their images are locked while godm holds them.
func TestArgvPCIDisks(t *testing.T) {
	needPTY(t)
	r := newDMRig(t)
	dom := int(r.dom.ID())
	nv := filepath.Join(r.dir, "nvme.img")
	vb := filepath.Join(r.dir, "vblk.img")
	for _, p := range []string{nv, vb} {
		if err := os.WriteFile(p, make([]byte, 8<<20), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	argv := libxlArgv(dom, r.dir) +
		" -drive file=" + nv + ",if=none,id=nv0,format=raw,cache=writeback -device nvme,drive=nv0,serial=GODMNV" +
		" -drive file=" + vb + ",if=none,id=vb0,format=raw -device virtio-blk-pci,drive=vb0,addr=0x9"
	r.start(t, argv, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	statePath := fmt.Sprintf("/local/domain/0/device-model/%d/state", dom)
	if err := r.xs.WaitValue(ctx, statePath, []byte("running")); err != nil {
		r.stop()
		t.Fatalf("waiting for %s: %v (godm: %v; log: %s)", statePath, err, r.wait(), r.log.String())
	}
	v := r.dom.VCPU(0)
	cfg := func(slot, off int) uint64 {
		if err := v.Out(0xcf8, 4, uint64(0x80000000|slot<<11|off)); err != nil {
			t.Fatal(err)
		}
		x, err := v.In(0xcfc, 4)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	nvSlot := -1
	for slot := range 32 {
		if cfg(slot, 0) == 0x00101b36 { // QEMU's nvme: 1b36:0010
			nvSlot = slot
		}
	}
	if nvSlot < 0 {
		t.Errorf("no NVMe function on bus 0 (log: %s)", r.log.String())
	} else if class := cfg(nvSlot, 8) >> 8; class != 0x010802 {
		t.Errorf("NVMe class %#x", class)
	}
	if id := cfg(9, 0); id != 0x10011af4 {
		t.Errorf("slot 9: %#x, want the virtio-blk function 1af4:1001 (addr=0x9)", id)
	}
	for _, p := range []string{nv, vb} {
		if _, err := block.Open(p, block.Options{Format: "raw"}); err == nil || !strings.Contains(err.Error(), "lock") {
			t.Errorf("second writer of %s: %v, want a lock error", filepath.Base(p), err)
		}
	}
	r.stop()
	if err := r.wait(); err != nil {
		t.Errorf("godm: %v", err)
	}
}
