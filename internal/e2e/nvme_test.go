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
	"godm/devices/nvme"
	"godm/internal/guest"
	"godm/internal/xenbox"
)

// nvmeModules are Debian's nvme driver and what nvme-core needs (t10-pi
// and its CRC libraries, their generic crypto implementations first), in
// load order.
var nvmeModules = []string{"crct10dif_common.ko", "crct10dif_generic.ko", "crc-t10dif.ko", "crc64.ko",
	"crc64_rocksoft_generic.ko", "crc64-rocksoft.ko", "t10-pi.ko", "nvme-core.ko", "nvme.ko"}

// TestGuestNVMe: Linux's own nvme driver (Debian's nvme and nvme-core)
// finds godm's NVMe controller at 00:06.0 through x-pci-proxy-dev (BAR0
// made 32-bit, as the proxy forwards only those; MSI-X in BAR0, the only
// message interrupt it has: /proc/interrupts shows PCI-MSI), brings
// it up through the admin queue (Identify, Set Features, I/O queue pairs
// per vCPU), reads the first MiB of the namespace, which the host filled
// with a known pattern, and writes another pattern at 1 MiB with fsync,
// drops its cache and reads it back; the host then finds that pattern in
// the image. Every register and doorbell access crosses xensim and the
// ioreq server; every command goes through queues in guest RAM, PRP
// lists, the block layer and an MSI-X interrupt.
func TestGuestNVMe(t *testing.T) {
	a, _ := guestAssets(t)
	dir := os.Getenv("GODM_GUEST_DIR")
	files := map[string][]byte{}
	for _, ko := range nvmeModules {
		b, err := os.ReadFile(filepath.Join(dir, ko))
		if err != nil {
			t.Skipf("real-guest NVMe test needs Debian's %s, which scripts/guest-assets.sh extracts: %v", ko, err)
		}
		files[ko] = b
	}
	rng := rand.New(rand.NewPCG(19, 0x4e56))
	known := make([]byte, 1<<20)
	pat := make([]byte, 1<<20)
	for i := range known {
		known[i] = byte(rng.Uint32())
		pat[i] = byte(rng.Uint32())
	}
	files["pat"] = pat
	img := filepath.Join(t.TempDir(), "nvme.img")
	disk := make([]byte, 8<<20)
	copy(disk, known)
	if err := os.WriteFile(img, disk, 0o600); err != nil {
		t.Fatal(err)
	}
	drv, err := block.Open(img, block.Options{Format: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	m := newMachine(t, Config{})
	dev, err := nvme.New(nvme.Config{Memory: m.Memory, Drive: drv, Serial: "GODMNVME", BAR32: true, Discard: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.PCI.Add(dev.Function(), 6, 0); err != nil {
		t.Fatal(err)
	}
	px, err := m.Proxy(dev.Function(), "6.0", dev)
	if err != nil {
		t.Fatal(err)
	}
	var load strings.Builder
	for i, ko := range nvmeModules {
		fmt.Fprintf(&load, "insmod /%s || exit %d\n", ko, 10+i)
	}
	script := load.String() + `
for i in $(seq 1 100); do [ -b /dev/nvme0n1 ] && break; sleep 0.2; done
d=/sys/bus/pci/devices/0000:00:06.0
echo "DRIVER $(basename $(readlink $d/driver))"
echo "SIZE $(cat /sys/block/nvme0n1/size)"
echo "SERIAL $(cat /sys/class/nvme/nvme0/serial)"
echo "MODEL $(cat /sys/class/nvme/nvme0/model)"
dd if=/dev/nvme0n1 of=/known bs=65536 count=16 2>/dev/null
echo "KNOWN $(sha256sum /known | cut -d' ' -f1)"
dd if=/pat of=/dev/nvme0n1 bs=65536 seek=16 conv=fsync 2>/dev/null && echo WROTE
echo 3 > /proc/sys/vm/drop_caches
dd if=/dev/nvme0n1 of=/back bs=65536 skip=16 count=16 2>/dev/null
echo "SUM $(sha256sum /back | cut -d' ' -f1)"
grep nvme /proc/interrupts
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
	for _, want := range []string{"DRIVER nvme", "SIZE 16384", "SERIAL GODMNVME", "MODEL QEMU NVMe Ctrl", "WROTE",
		fmt.Sprintf("KNOWN %x", sha256.Sum256(known)), fmt.Sprintf("SUM %x", sha256.Sum256(pat)), "PCI-MSI", "nvme0q1"} {
		if !strings.Contains(con, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[1<<20:2<<20], pat) {
		t.Error("the image lacks the guest's pattern at 1 MiB")
	}
	if !bytes.Equal(b[:1<<20], known) {
		t.Error("the known pattern changed")
	}
	if t.Failed() {
		t.Logf("console:\n%s", con)
		return
	}
	for _, l := range strings.Split(con, "\n") {
		if strings.Contains(l, "nvme") || strings.HasPrefix(l, "SUM") || strings.HasPrefix(l, "KNOWN") {
			t.Log(strings.TrimSpace(l))
		}
	}
}

// TestSeaBIOSBootsFromNVMe: QEMU's SeaBIOS (Debian's bios-256k.bin, as
// libxl's) finds godm's NVMe controller through x-pci-proxy-dev (BAR0
// made 32-bit), brings it up through its admin queue, boots the MBR of
// the xenbox boot disk from namespace 1, and the MBR reads sector 1
// through INT 13h: both lines show on COM1.
func TestSeaBIOSBootsFromNVMe(t *testing.T) {
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
	dev, err := nvme.New(nvme.Config{Memory: m.Memory, Drive: drv, Serial: "GODMBOOT", BAR32: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.PCI.Add(dev.Function(), 6, 0); err != nil {
		t.Fatal(err)
	}
	px, err := m.Proxy(dev.Function(), "6.0", dev)
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
	// The MBR and sector 1 at least came through Read commands.
	if r, _ := dev.Commands(); r < 2 {
		t.Errorf("%d Read commands served", r)
	}
	for _, e := range m.Errors() {
		t.Errorf("data path: %v", e)
	}
}
