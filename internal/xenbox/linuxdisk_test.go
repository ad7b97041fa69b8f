package xenbox

import (
	"bytes"
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"testing"
)

// fakeBzImage is a bzImage header (boot.rst) with setup sectors of
// 0xee and a protected-mode part of pmLen bytes of 0x77.
func fakeBzImage(setupSects, pmLen int) []byte {
	b := make([]byte, (setupSects+1)*512+pmLen)
	for i := 0x268; i < (setupSects+1)*512; i++ {
		b[i] = 0xee
	}
	for i := (setupSects + 1) * 512; i < len(b); i++ {
		b[i] = 0x77
	}
	b[hdrSetupSects] = byte(setupSects)
	binary.LittleEndian.PutUint16(b[hdrBootFlag:], 0xaa55)
	copy(b[hdrMagic:], "HdrS")
	binary.LittleEndian.PutUint16(b[hdrVersion:], 0x20f)
	b[hdrLoadFlags] = loadedHigh
	binary.LittleEndian.PutUint32(b[hdrInitrdMax:], 0x7fffffff)
	binary.LittleEndian.PutUint32(b[hdrCmdLineMax:], 2047)
	return b
}

// TestBuildLinuxDisk checks the layout the loader reads: its parameter
// block, the patched setup header, the command line, the kernel, the
// initramfs and the data area where the checksums say.
func TestBuildLinuxDisk(t *testing.T) {
	bz := fakeBzImage(39, 3*512+100)
	rd := bytes.Repeat([]byte("initrd"), 40000)
	d, err := BuildLinuxDisk(t.TempDir(), bz, rd)
	if err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	if img[510] != 0x55 || img[511] != 0xaa {
		t.Error("no boot signature")
	}
	at := bytes.Index(img[:512], []byte(ldMagic))
	if at < 0 {
		t.Fatal("no parameter block")
	}
	le := binary.LittleEndian
	p := img[at+len(ldMagic):]
	kernSects, initrdLBA, initrdSects := le.Uint32(p[16:]), le.Uint32(p[24:]), le.Uint32(p[28:])
	if le.Uint32(p[0:]) != ldLowLBA || le.Uint32(p[4:]) != ldLowBytes/512 || le.Uint32(p[8:]) != 0x90000 || le.Uint32(p[12:]) != ldKernelLBA ||
		kernSects != 4 || le.Uint32(p[20:]) != 0x100000 || initrdSects != uint32((len(rd)+511)/512) || le.Uint32(p[32:]) != ldInitrdAddr {
		t.Errorf("parameter block % x", p[:36])
	}
	low := img[ldLowLBA*512:]
	if low[hdrLoaderType] != 0xff || low[hdrLoadFlags] != loadedHigh|canUseHeap ||
		le.Uint16(low[hdrHeapEnd:]) != 0xde00 || le.Uint32(low[hdrCmdLinePtr:]) != 0x9e000 ||
		le.Uint32(low[hdrRamdiskImg:]) != ldInitrdAddr || le.Uint32(low[hdrRamdiskSize:]) != uint32(len(rd)) {
		t.Errorf("setup header not filled in: % x", low[0x1f0:0x240])
	}
	if low[0x300] != 0xee || low[40*512] != 0 {
		t.Error("setup sectors not copied exactly")
	}
	if !bytes.HasPrefix(low[ldCmdlineOff:], []byte(LinuxCmdline+"\x00")) {
		t.Errorf("command line %q", low[ldCmdlineOff:ldCmdlineOff+64])
	}
	if !bytes.Equal(img[ldKernelLBA*512:ldKernelLBA*512+3*512+100], bz[40*512:]) {
		t.Error("protected-mode kernel not at its sector")
	}
	if !bytes.Equal(img[initrdLBA*512:initrdLBA*512+uint32(len(rd))], rd) {
		t.Error("initramfs not at its sector")
	}
	if d.DataLBA%2048 != 0 || d.DataLBA < initrdLBA+initrdSects {
		t.Errorf("data area at %d overlaps or is unaligned", d.DataLBA)
	}
	data := img[d.DataLBA*512 : d.DataLBA*512+LinuxDataSectors*512]
	if sum(data) != d.ReadSum || !bytes.HasPrefix(img[d.DataLBA*512+512:], []byte("GODM-LINUX-DISK-SECTOR-0001\n")) {
		t.Error("known pattern not in the data area")
	}
	w := img[d.WriteLBA()*512 : d.WriteLBA()*512+LinuxDataSectors*512]
	if !bytes.Equal(w, make([]byte, len(w))) || sum(LinuxWritePattern()) != d.WroteSum || d.ReadSum == d.WroteSum {
		t.Error("write half not zero, or checksums wrong")
	}
	s := LinuxTestScript(d)
	for _, want := range []string{"insmod /lib/modules/ata_piix.ko", "yes 'GODM-LINUX-WROTE-THIS-THROUGH-ATA_PIIX' | head -c 131072",
		"skip=" + itoa(d.DataLBA) + " count=256", "seek=" + itoa(d.WriteLBA()) + " conv=fsync"} {
		if !strings.Contains(s, want) {
			t.Errorf("test script lacks %q", want)
		}
	}
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

// Hostile or unusable kernels get an error, not a disk.
func TestBuildLinuxDiskRefuses(t *testing.T) {
	dir := t.TempDir()
	for name, bz := range map[string][]byte{
		"short":     make([]byte, 100),
		"no header": make([]byte, 64*512),
		"old proto": func() []byte {
			b := fakeBzImage(4, 512)
			binary.LittleEndian.PutUint16(b[hdrVersion:], 0x202)
			return b
		}(),
		"huge setup": fakeBzImage(200, 512),
		"low initrd max": func() []byte {
			b := fakeBzImage(4, 512)
			binary.LittleEndian.PutUint32(b[hdrInitrdMax:], 0x1000000)
			return b
		}(),
	} {
		if _, err := BuildLinuxDisk(dir, bz, []byte("rd")); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The box's kernel package yields the bzImage and the modules in an
// order their dependencies allow (needs the box's assets).
func TestExtractLinuxKernel(t *testing.T) {
	dir := os.Getenv(EnvDir)
	if dir == "" {
		t.Skip(EnvDir + " unset: no kernel package to unpack")
	}
	deb := Assets{Dir: dir}.KernelDeb()
	if deb == "" {
		t.Skip("no kernel package in " + dir + "/debs")
	}
	k, err := ExtractLinuxKernel(deb, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Modules) != len(LinuxModules) {
		t.Errorf("%d modules, want %d", len(k.Modules), len(LinuxModules))
	}
	deps, err := moduleDepends(k.Modules["sd_mod.ko"])
	if err != nil || len(deps) == 0 {
		t.Errorf("sd_mod depends on %q (%v), want scsi_mod among them", deps, err)
	}
}

// The harness reads the guest's OK lines only as the scenario relays them.
func TestLinuxDiskLines(t *testing.T) {
	got := LinuxDiskLines([]Line{
		{Text: "[linux-disk] linux: LINUX-DISK OK sda read=aa wrote=bb"},
		{Text: "[linux-disk] linux: LINUX-DISK OK sdb read=cc wrote=dd"},
		{Text: "[linux-disk] linux: LINUX-DISK OK sdc read=ee"},        // cut short
		{Text: "[libxl-disk] linux: LINUX-DISK OK sdd read=1 wrote=2"}, // another scenario
		{Text: "[linux-disk] linux: LINUX-DISK sda read ff"},
	})
	if len(got) != 2 || got["sda"] != [2]string{"aa", "bb"} || got["sdb"] != [2]string{"cc", "dd"} {
		t.Errorf("LinuxDiskLines = %v", got)
	}
}
