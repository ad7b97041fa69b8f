package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"godm/block"
	"godm/devices/virtioblk"
	"godm/internal/guest"
	"godm/internal/xenbox"
)

// virtioModules are Debian's virtio modules in load order (the kernel
// builds virtio, its PCI transport and virtio_blk as modules).
var virtioModules = []string{"virtio_ring.ko", "virtio.ko", "virtio_pci_legacy_dev.ko", "virtio_pci_modern_dev.ko", "virtio_pci.ko", "virtio_blk.ko"}

// TestGuestVirtioBlk: Linux's own virtio_pci (modern interface: BAR4
// made 32-bit, as the proxy forwards only those, and MSI-X in BAR1) and
// virtio_blk drivers find godm's virtio-blk at 00:06.0 through
// x-pci-proxy-dev, and the guest writes a 1 MiB pattern to /dev/vda
// with fsync, drops its page cache, reads it back and checksums it; the
// host then finds the pattern in the image. Every register access
// crosses xensim and the ioreq server; every request goes through the
// split ring in guest RAM, the block layer and an MSI-X interrupt.
func TestGuestVirtioBlk(t *testing.T) {
	a, _ := guestAssets(t)
	dir := os.Getenv("GODM_GUEST_DIR")
	files := map[string][]byte{}
	for _, ko := range virtioModules {
		b, err := os.ReadFile(filepath.Join(dir, ko))
		if err != nil {
			t.Skipf("real-guest virtio-blk test needs Debian's %s, which scripts/guest-assets.sh extracts: %v", ko, err)
		}
		files[ko] = b
	}
	pat := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(7, 14))
	for i := range pat {
		pat[i] = byte(rng.Uint32())
	}
	files["pat"] = pat
	sum := sha256.Sum256(pat)
	img := filepath.Join(t.TempDir(), "vda.img")
	if err := os.WriteFile(img, make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	drv, err := block.Open(img, block.Options{Format: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	m := newMachine(t, Config{})
	dev, err := virtioblk.New(virtioblk.Config{Memory: m.Memory, Drive: drv, Serial: "GODMVDA", ModernBAR32: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.PCI.Add(dev.Function(), 6, 0); err != nil {
		t.Fatal(err)
	}
	px, err := m.Proxy(dev.Function(), "6.0", dev.Transport())
	if err != nil {
		t.Fatal(err)
	}
	var load strings.Builder
	for i, ko := range virtioModules {
		fmt.Fprintf(&load, "insmod /%s || exit %d\n", ko, 10+i)
	}
	script := load.String() + `
for i in $(seq 1 50); do [ -b /dev/vda ] && break; sleep 0.2; done
d=/sys/bus/pci/devices/0000:00:06.0
echo "DRIVER $(basename $(readlink $d/driver))"
echo "SIZE $(cat /sys/block/vda/size)"
echo "SERIAL $(cat /sys/block/vda/serial 2>/dev/null)"
dd if=/pat of=/dev/vda bs=4096 conv=fsync 2>/dev/null && echo WROTE
echo 3 > /proc/sys/vm/drop_caches
dd if=/dev/vda of=/back bs=4096 count=256 2>/dev/null
echo "SUM $(sha256sum /back | cut -d' ' -f1)"
grep virtio /proc/interrupts
`
	res, err := m.Run(context.Background(), guest.Config{
		Assets:  a,
		Script:  script,
		Files:   files,
		Proxies: []guest.Proxy{px},
		Timeout: 240 * time.Second,
		WorkDir: t.TempDir(),
	})
	dev.Close()
	drv.Close()
	if err != nil {
		t.Fatalf("guest: %v\nconsole:\n%s", err, res.Console)
	}
	for _, e := range m.Errors() {
		t.Errorf("data path: %v", e)
	}
	con := res.Console
	for _, want := range []string{"DRIVER virtio-pci", "SIZE 16384", "SERIAL GODMVDA", "WROTE", fmt.Sprintf("SUM %x", sum)} {
		if !strings.Contains(con, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[:len(pat)], pat) {
		t.Error("the image lacks the guest's pattern")
	}
	if t.Failed() {
		t.Logf("console:\n%s", con)
		return
	}
	for _, l := range strings.Split(con, "\n") {
		if strings.Contains(l, "virtio") || strings.HasPrefix(l, "SUM") {
			t.Log(strings.TrimSpace(l))
		}
	}
}

// TestSeaBIOSBootsFromVirtioBlk: QEMU's SeaBIOS (the bios-256k.bin the
// harness's QEMU loads, Debian's, as libxl's) finds godm's virtio-blk
// through x-pci-proxy-dev (its modern registers in a 32-bit BAR), boots
// the MBR of the xenbox boot disk from it, and the MBR reads sector 1
// through INT 13h: both lines show on COM1. Every sector SeaBIOS reads
// is a request on godm's ring.
func TestSeaBIOSBootsFromVirtioBlk(t *testing.T) {
	a, _ := guestAssets(t)
	dir := t.TempDir()
	img, err := xenbox.BuildBootDisk(dir)
	if err != nil {
		t.Skipf("the boot disk needs the host's as and ld: %v", err)
	}
	drv, err := block.Open(img, block.Options{Format: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	m := newMachine(t, Config{})
	dev, err := virtioblk.New(virtioblk.Config{Memory: m.Memory, Drive: drv, ModernBAR32: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.PCI.Add(dev.Function(), 6, 0); err != nil {
		t.Fatal(err)
	}
	px, err := m.Proxy(dev.Function(), "6.0", dev.Transport())
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Run(context.Background(), guest.Config{
		Assets:       a,
		BootFromDisk: true,
		Until:        xenbox.BootSector2,
		Proxies:      []guest.Proxy{px},
		Timeout:      120 * time.Second,
		WorkDir:      t.TempDir(),
	})
	dev.Close()
	drv.Close()
	if err != nil {
		t.Fatalf("guest: %v\nconsole:\n%s", err, res.Console)
	}
	if !res.Until || !strings.Contains(res.Console, xenbox.BootMBRLine) {
		t.Fatalf("COM1 lacks the boot sector's lines:\n%s", res.Console)
	}
	for _, e := range m.Errors() {
		t.Errorf("data path: %v", e)
	}
}
