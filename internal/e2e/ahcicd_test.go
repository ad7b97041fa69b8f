package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"godm/block"
	"godm/devices/ahci"
	"godm/internal/guest"
	"godm/internal/xenbox"
)

// cdModules are Debian's SCSI core, libata with the AHCI driver, the
// CD-ROM layer, sr_mod and isofs, in load order.
var cdModules = []string{"scsi_common.ko", "scsi_mod.ko", "libata.ko", "libahci.ko", "ahci.ko",
	"cdrom.ko", "sr_mod.ko", "isofs.ko"}

// isoImage builds a minimal ISO 9660 image (ECMA-119: the primary volume
// descriptor at sector 16, the set terminator, both path tables, a root
// directory) holding one file, name, with data.
func isoImage(name string, data []byte) []byte {
	const ss = 2048
	fileLBA := 21
	nfile := (len(data) + ss - 1) / ss
	total := fileLBA + nfile
	img := make([]byte, total*ss)
	both32 := func(p []byte, v uint32) {
		binary.LittleEndian.PutUint32(p, v)
		binary.BigEndian.PutUint32(p[4:], v)
	}
	both16 := func(p []byte, v uint16) {
		binary.LittleEndian.PutUint16(p, v)
		binary.BigEndian.PutUint16(p[2:], v)
	}
	// dirRecord writes a directory record at p and returns its length.
	dirRecord := func(p []byte, lba, size uint32, dir bool, id []byte) int {
		n := 33 + len(id)
		n += n & 1
		p[0] = byte(n)
		both32(p[2:], lba)
		both32(p[10:], size)
		copy(p[18:25], []byte{126, 1, 1, 0, 0, 0, 0}) // 2026-01-01
		if dir {
			p[25] = 2
		}
		both16(p[28:], 1)
		p[32] = byte(len(id))
		copy(p[33:], id)
		return n
	}
	space := func(p []byte) {
		for i := range p {
			p[i] = ' '
		}
	}
	pvd := img[16*ss:]
	pvd[0] = 1
	copy(pvd[1:6], "CD001")
	pvd[6] = 1
	space(pvd[8:72])
	copy(pvd[40:], "GODMCD")
	both32(pvd[80:], uint32(total))
	both16(pvd[120:], 1)
	both16(pvd[124:], 1)
	both16(pvd[128:], ss)
	both32(pvd[132:], 10)
	binary.LittleEndian.PutUint32(pvd[140:], 18)
	binary.BigEndian.PutUint32(pvd[148:], 19)
	dirRecord(pvd[156:], 20, ss, true, []byte{0})
	space(pvd[190:813])
	for _, off := range []int{813, 830, 847, 864} {
		copy(pvd[off:off+16], "0000000000000000")
	}
	pvd[881] = 1
	term := img[17*ss:]
	term[0] = 255
	copy(term[1:6], "CD001")
	term[6] = 1
	// The path tables: the root only.
	lpt, mpt := img[18*ss:], img[19*ss:]
	lpt[0], mpt[0] = 1, 1
	binary.LittleEndian.PutUint32(lpt[2:], 20)
	binary.BigEndian.PutUint32(mpt[2:], 20)
	binary.LittleEndian.PutUint16(lpt[6:], 1)
	binary.BigEndian.PutUint16(mpt[6:], 1)
	root := img[20*ss:]
	o := dirRecord(root, 20, ss, true, []byte{0})
	o += dirRecord(root[o:], 20, ss, true, []byte{1})
	dirRecord(root[o:], uint32(fileLBA), uint32(len(data)), false, []byte(strings.ToUpper(name)+";1"))
	copy(img[fileLBA*ss:], data)
	return img
}

// TestGuestAHCICD: Linux's own ahci driver finds godm's AHCI controller
// at 00:06.0 through x-pci-proxy-dev (ABAR in BAR5 is 32-bit already; the
// MSI vector crosses the proxy as a memory write), sees the ATAPI
// signature on port 2, and sr_mod drives the CD-ROM there with PACKET
// commands (INQUIRY, READ CAPACITY, MODE SENSE, GET EVENT STATUS, READ
// TOC, READ(10) by DMA through the PRDT). The guest mounts the ISO 9660
// medium, reads a file of 300 KiB (several 128 KiB read chunks) and
// prints its checksum, which must be the host's. Then the medium is
// changed under it: the host waits for the tray lock Linux takes while
// the medium is mounted to be released at the unmount, ejects and
// inserts a second image (as QMP's blockdev-change-medium does); the
// guest, retrying its mount, goes through NOT READY and UNIT ATTENTION
// and finds the second image's file.
func TestGuestAHCICD(t *testing.T) {
	a, _ := guestAssets(t)
	dir := os.Getenv("GODM_GUEST_DIR")
	files := map[string][]byte{}
	for _, ko := range cdModules {
		b, err := os.ReadFile(filepath.Join(dir, ko))
		if err != nil {
			t.Skipf("real-guest AHCI CD-ROM test needs Debian's %s, which scripts/guest-assets.sh extracts: %v", ko, err)
		}
		files[ko] = b
	}
	rng := rand.New(rand.NewPCG(23, 0xcd))
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	data2 := make([]byte, 70<<10)
	for i := range data2 {
		data2[i] = byte(rng.Uint32())
	}
	var drvs [2]*block.Drive
	for i, img := range [][]byte{isoImage("hello.bin", data), isoImage("second.bin", data2)} {
		iso := filepath.Join(t.TempDir(), fmt.Sprintf("cd%d.iso", i))
		if err := os.WriteFile(iso, img, 0o600); err != nil {
			t.Fatal(err)
		}
		d, err := block.Open(iso, block.Options{Format: "raw", ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		drvs[i] = d
	}
	drv := drvs[0]
	m := newMachine(t, Config{})
	c, err := ahci.New(ahci.Config{Memory: m.Memory})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Attach(2, ahci.DriveConfig{Drive: drv, CD: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.PCI.Add(c.Function(), 6, 0); err != nil {
		t.Fatal(err)
	}
	px, err := m.Proxy(c.Function(), "6.0", c)
	if err != nil {
		t.Fatal(err)
	}
	var load strings.Builder
	for i, ko := range cdModules {
		fmt.Fprintf(&load, "insmod /%s || exit %d\n", ko, 10+i)
	}
	script := load.String() + `
for i in $(seq 1 150); do [ -b /dev/sr0 ] && break; sleep 0.2; done
d=/sys/bus/pci/devices/0000:00:06.0
echo "DRIVER $(basename $(readlink $d/driver))"
echo "MODEL $(cat /sys/block/sr0/device/model)"
echo "SIZE $(cat /sys/block/sr0/size)"
mkdir -p /mnt
mount -t iso9660 -o ro /dev/sr0 /mnt && echo MOUNTED
ls -l /mnt
echo "SUM $(sha256sum /mnt/hello.bin | cut -d' ' -f1)"
umount /mnt
for i in $(seq 1 150); do
	if mount -t iso9660 -o ro /dev/sr0 /mnt 2>/dev/null; then
		[ -f /mnt/second.bin ] && break
		umount /mnt
	fi
	sleep 0.2
done
echo "SUM2 $(sha256sum /mnt/second.bin | cut -d' ' -f1)"
echo "SIZE2 $(cat /sys/block/sr0/size)"
umount /mnt
grep ahci /proc/interrupts
`
	// The medium change: once the guest has locked the tray (mounted)
	// and unlocked it again (unmounted).
	changed := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		seen := false
		for ctx.Err() == nil {
			_, locked, err := c.TrayState(2)
			if err != nil {
				changed <- err
				return
			}
			if locked {
				seen = true
			} else if seen {
				if _, err := c.OpenTray(2, false); err != nil {
					changed <- fmt.Errorf("eject: %w", err)
					return
				}
				changed <- c.InsertMedium(2, drvs[1])
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		changed <- errors.New("the guest never locked and released the tray")
	}()
	res, err := m.Run(context.Background(), guest.Config{
		Assets:  a,
		Script:  script,
		Files:   files,
		Proxies: []guest.Proxy{px},
		Timeout: 240 * time.Second,
		WorkDir: t.TempDir(),
	})
	cancel()
	c.Close()
	if err != nil {
		t.Fatalf("guest: %v\nconsole:\n%s", err, res.Console)
	}
	if err := <-changed; err != nil {
		t.Errorf("medium change: %v", err)
	}
	for _, e := range m.Errors() {
		t.Errorf("data path: %v", e)
	}
	con := res.Console
	for _, want := range []string{"DRIVER ahci", "MODEL QEMU DVD-ROM", fmt.Sprintf("SIZE %d", len(isoImage("hello.bin", data))/512),
		"MOUNTED", fmt.Sprintf("SUM %x", sha256.Sum256(data)), "PCI-MSI",
		fmt.Sprintf("SUM2 %x", sha256.Sum256(data2)), fmt.Sprintf("SIZE2 %d", len(isoImage("second.bin", data2))/512)} {
		if !strings.Contains(con, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("console:\n%s", con)
		return
	}
	for _, l := range strings.Split(con, "\n") {
		if strings.Contains(l, "ahci") || strings.Contains(l, "sr0") || strings.HasPrefix(l, "SUM") || strings.HasPrefix(l, "SIZE") {
			t.Log(strings.TrimSpace(l))
		}
	}
}

// elToritoImage is a bootable ISO 9660 image (El Torito 1.0): the primary
// volume descriptor, the boot record pointing at the boot catalog, whose
// validation entry and default entry (no emulation, four 512-byte
// sectors loaded at 0x7c0:0) name boot, one 2 KiB sector.
func elToritoImage(boot []byte) []byte {
	const ss = 2048
	img := isoImage("pad.bin", make([]byte, ss)) // sectors 16-21
	img = append(img, make([]byte, 2*ss)...)     // 22: catalog, 23: image
	// Move the terminator to 18 (the path tables after it stay unused:
	// the boot does not read the file system) and put the boot record
	// volume descriptor at 17.
	copy(img[18*ss:19*ss], img[17*ss:18*ss])
	br := img[17*ss : 18*ss]
	clear(br)
	copy(br[1:6], "CD001")
	br[6] = 1
	copy(br[7:], "EL TORITO SPECIFICATION")
	binary.LittleEndian.PutUint32(br[71:], 22)
	cat := img[22*ss:]
	cat[0] = 1 // validation entry, x86
	cat[30], cat[31] = 0x55, 0xaa
	sum := uint16(0)
	for i := 0; i < 32; i += 2 {
		sum += binary.LittleEndian.Uint16(cat[i:])
	}
	binary.LittleEndian.PutUint16(cat[28:], -sum)
	cat[32] = 0x88 // bootable, no emulation, segment 0 (0x7c0)
	binary.LittleEndian.PutUint16(cat[38:], 4)
	binary.LittleEndian.PutUint32(cat[40:], 23)
	copy(img[23*ss:24*ss], boot)
	binary.LittleEndian.PutUint32(img[16*ss+80:], 24)
	binary.BigEndian.PutUint32(img[16*ss+84:], 24)
	return img
}

// TestSeaBIOSBootsFromAHCICD: QEMU's SeaBIOS (Debian's bios-256k.bin, as
// libxl's) finds godm's AHCI controller through x-pci-proxy-dev, sees the
// ATAPI signature on port 0, reads the El Torito boot catalog and the
// boot image from the CD-ROM with PACKET commands, and runs the boot
// code, which prints its line on COM1.
func TestSeaBIOSBootsFromAHCICD(t *testing.T) {
	a, _ := guestAssets(t)
	dir := t.TempDir()
	disk, err := xenbox.BuildBootDisk(dir)
	if err != nil {
		t.Skipf("the boot sector needs the host's as and ld: %v", err)
	}
	mbr, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	iso := filepath.Join(dir, "boot.iso")
	if err := os.WriteFile(iso, elToritoImage(mbr[:512]), 0o600); err != nil {
		t.Fatal(err)
	}
	drv, err := block.Open(iso, block.Options{Format: "raw", ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	m := newMachine(t, Config{})
	c, err := ahci.New(ahci.Config{Memory: m.Memory})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Attach(0, ahci.DriveConfig{Drive: drv, CD: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.PCI.Add(c.Function(), 6, 0); err != nil {
		t.Fatal(err)
	}
	px, err := m.Proxy(c.Function(), "6.0", c)
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Run(context.Background(), guest.Config{
		Assets:       a,
		BootFromDisk: true,
		Until:        xenbox.BootMBRLine,
		Proxies:      []guest.Proxy{px},
		Timeout:      120 * time.Second,
		WorkDir:      t.TempDir(),
	})
	c.Close()
	drv.Close()
	if err != nil {
		t.Fatalf("guest: %v\nconsole:\n%s", err, res.Console)
	}
	if !res.Until || !strings.Contains(res.Console, xenbox.BootMBRLine) {
		t.Fatalf("COM1 lacks the boot code's line:\n%s", res.Console)
	}
	for _, e := range m.Errors() {
		t.Errorf("data path: %v", e)
	}
}
