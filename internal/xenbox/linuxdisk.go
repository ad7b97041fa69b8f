package xenbox

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"godm/internal/guest"
)

// The linux-disk scenario's disk: a raw image SeaBIOS boots like any
// other (godm's PIIX3 IDE, INT 13h), whose MBR is a loader of our own
// that loads a Linux bzImage and its initramfs from the disk through the
// BIOS and starts the kernel with the 16-bit boot protocol (Linux
// Documentation/x86/boot.rst); the guest's /init then loads Debian's
// ata_piix and reads and writes the same disk through Linux's own driver.
//
// Layout (512-byte sectors):
//
//	0            the MBR: loader code and its parameter block, 0x55aa
//	64           the "low region", 0xf000 bytes loaded at 0x90000: the
//	             bzImage's real-mode setup with its header filled in as a
//	             boot loader does, and the command line at 0xe000 in it
//	256          the bzImage's protected-mode part, loaded at 1 MiB
//	next MiB     the initramfs (gzipped newc cpio), loaded at ldInitrdAddr
//	next MiB     the data area: LinuxDataSectors of a known pattern, then
//	             LinuxDataSectors of zeros the guest writes its pattern to
const (
	LinuxDiskPath    = "/xenbox/disk/linux.img"
	LinuxQcow2Path   = "/xenbox/disk/linux.qcow2"
	LinuxDataSectors = 256 // 128 KiB read, 128 KiB written
	// LinuxDiskLine starts every line the guest's test prints on ttyS0.
	LinuxDiskLine = "LINUX-DISK"
	// LinuxWrote is what the guest writes, line after line, over the
	// write half of the data area.
	LinuxWrote = "GODM-LINUX-WROTE-THIS-THROUGH-ATA_PIIX\n"

	ldLowLBA     = 64
	ldLowBytes   = 0xf000 // 120 sectors: setup, heap, stack, then the command line
	ldCmdlineOff = 0xe000 // boot.rst: cmd_line_ptr = base + heap_end
	ldKernelLBA  = 256
	ldInitrdAddr = 0x8000000 // 128 MiB: above the kernel's init_size from 16 MiB (~64 MiB for Debian's)
	ldMinMemMB   = 256       // the guest's RAM the layout needs (initrd at 128 MiB)
)

// LinuxCmdline is the guest kernel's command line: the console on godm's
// UART; xen_emul_unplug=never keeps the emulated IDE (Linux
// arch/x86/xen/platform-pci-unplug.c: "never" skips the unplug write to
// the platform device's port 0x10 that would take the IDE disks away in
// favour of blkfront); nokaslr keeps the decompressed kernel at 16 MiB,
// clear of the initramfs; loglevel=4 keeps the boot log (in the dmesg
// buffer, which the test prints from) off the UART, whose every byte is
// a round trip through Xen to godm.
const LinuxCmdline = "console=ttyS0 xen_emul_unplug=never nokaslr loglevel=4"

// linuxLoaderAsm is the MBR (GNU as, 16-bit real mode, linked at
// 0x7c00). SeaBIOS loads it through INT 13h from godm's IDE; it then
// reads the rest itself with the PIIX's bus-master IDE DMA on the
// primary channel's master, straight to each destination: a first
// version reading through SeaBIOS's INT 13h (PIO, a bounce buffer and
// INT 15h AH=87h) took ~10 s per 32 KiB in the box on a loaded host,
// about an hour for the kernel. Per 32 KiB: one PRD entry (Intel PIIX/PIIX3 datasheet, bus
// master IDE: physical address, byte count, EOT in bit 15 of the last
// word), BMIC stop, BMIS clear, BMIDTP = the PRD table, READ DMA EXT
// (ATA/ATAPI-7: LBA48 registers written high byte first), BMIC start
// with the read-to-memory bit, poll BMIS until the interrupt bit, stop,
// check the ATA status. The bus-master base comes from 00:01.1's BAR4
// (hvmloader assigned it), the PCI command register gets I/O and bus
// master enabled. Interrupts stay off from the start (the kernel's setup
// sets up its own). It prints "L", a "." per 32 KiB and "J" on COM1,
// then jumps to the setup code at 0x9020:0000 with DS = ES = SS =
// 0x9000 and SP = 0xe000 (boot.rst, "Running the kernel"). The three
// {lba, sectors, address} runs after "GODMLDR1" are filled in by
// BuildLinuxDisk.
const linuxLoaderAsm = `
	.code16
	.globl _start
_start:
	cli
	xorw %ax, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw $0x7c00, %sp
	cld
	movb $'L', %al
	call putc
	movl $0x80000920, %eax
	movw $0xcf8, %dx
	outl %eax, %dx
	movw $0xcfc, %dx
	inl %dx, %eax
	andw $0xfff0, %ax
	movw %ax, bmbase
	movl $0x80000904, %eax
	movw $0xcf8, %dx
	outl %eax, %dx
	movw $0xcfc, %dx
	inw %dx, %ax
	orw $5, %ax
	outw %ax, %dx
	movw $low, %di
	call load
	movw $kern, %di
	call load
	movw $rd, %di
	call load
	movb $'J', %al
	call putc
	movb $'\r', %al
	call putc
	movb $'\n', %al
	call putc
	movw $0x9000, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %fs
	movw %ax, %gs
	movw %ax, %ss
	movw $0xe000, %sp
	ljmp $0x9020, $0

/* load: the run at DI {lba, sectors left, destination}, 64 sectors at
   a time. */
load:
	movl 4(%di), %ecx
	testl %ecx, %ecx
	jz 3f
	cmpl $64, %ecx
	jbe 2f
	movl $64, %ecx
2:	movl 8(%di), %eax
	movl %eax, prd
	movw %cx, %ax
	shlw $9, %ax
	movw %ax, prd+4
	movw bmbase, %dx
	xorb %al, %al
	outb %al, %dx
	addw $2, %dx
	movb $6, %al
	outb %al, %dx
	addw $2, %dx
	movl $prd, %eax
	outl %eax, %dx
	movw $0x1f6, %dx
	movb $0x40, %al
	outb %al, %dx
	movl (%di), %ebx
	movw $0x1f2, %dx
	xorb %al, %al
	outb %al, %dx
	incw %dx
	movl %ebx, %eax
	shrl $24, %eax
	outb %al, %dx
	incw %dx
	xorb %al, %al
	outb %al, %dx
	incw %dx
	outb %al, %dx
	movw $0x1f2, %dx
	movb %cl, %al
	outb %al, %dx
	incw %dx
	movb %bl, %al
	outb %al, %dx
	incw %dx
	movb %bh, %al
	outb %al, %dx
	incw %dx
	shrl $16, %ebx
	movb %bl, %al
	outb %al, %dx
	movw $0x1f7, %dx
	movb $0x25, %al
	outb %al, %dx
	movw bmbase, %dx
	movb $9, %al
	outb %al, %dx
	addw $2, %dx
1:	inb %dx, %al
	testb $2, %al
	jnz fail
	testb $4, %al
	jz 1b
	subw $2, %dx
	xorb %al, %al
	outb %al, %dx
	movw $0x1f7, %dx
	inb %dx, %al
	testb $0x21, %al
	jnz fail
	addl %ecx, (%di)
	subl %ecx, 4(%di)
	shll $9, %ecx
	addl %ecx, 8(%di)
	movb $'.', %al
	call putc
	jmp load
3:	ret

fail:
	movb $'!', %al
	call putc
4:	jmp 4b

putc:
	movw $0x3f8, %dx
	outb %al, %dx
	ret

	.align 4
prd:	.long 0
	.word 0, 0x8000
bmbase:	.word 0
	.ascii "GODMLDR1"
low:	.long 0, 0, 0x90000
kern:	.long 0, 0, 0x100000
rd:	.long 0, 0, 0
`

// ldMagic marks the loader's parameter block: the low region's, the
// kernel's and the initramfs's {lba, sectors, address}.
const ldMagic = "GODMLDR1"

// LinuxDisk is what BuildLinuxDisk wrote, for the scenario and its checks.
type LinuxDisk struct {
	Path    string
	Qcow2   string // the same disk as qcow2 (BuildLinuxGuest)
	DataLBA uint32 // first sector of the known pattern
	// ReadSum is the SHA-256 of the known pattern (LinuxDataSectors
	// from DataLBA); WroteSum that of what the guest writes after it.
	ReadSum, WroteSum string
}

// WriteLBA is the first sector the guest writes.
func (d LinuxDisk) WriteLBA() uint32 { return d.DataLBA + LinuxDataSectors }

// LinuxPattern is the known contents of the read half of the data area:
// every sector names itself, the rest a byte stream of a fixed LCG.
func LinuxPattern() []byte {
	b := make([]byte, LinuxDataSectors*512)
	x := uint32(0x12345678)
	for i := range b {
		x = x*1103515245 + 12345
		b[i] = byte(x >> 16)
	}
	for s := range LinuxDataSectors {
		copy(b[s*512:], fmt.Sprintf("GODM-LINUX-DISK-SECTOR-%04d\n", s))
	}
	return b
}

// LinuxWritePattern is what the guest's test writes.
func LinuxWritePattern() []byte {
	n := LinuxDataSectors * 512
	return []byte(strings.Repeat(LinuxWrote, n/len(LinuxWrote)+1)[:n])
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// bzImage header offsets (boot.rst, "The real-mode kernel header").
const (
	hdrSetupSects  = 0x1f1
	hdrBootFlag    = 0x1fe
	hdrMagic       = 0x202 // "HdrS"
	hdrVersion     = 0x206
	hdrLoaderType  = 0x210
	hdrLoadFlags   = 0x211
	hdrRamdiskImg  = 0x218
	hdrRamdiskSize = 0x21c
	hdrHeapEnd     = 0x224
	hdrCmdLinePtr  = 0x228
	hdrInitrdMax   = 0x22c
	hdrCmdLineMax  = 0x238

	loadedHigh  = 0x01 // loadflags: protected-mode code at 0x100000
	canUseHeap  = 0x80 // loadflags: heap_end_ptr is valid
	loaderOther = 0xff // type_of_loader: undefined loader
)

// patchSetup fills in the header of the real-mode setup (a copy of its
// first sectors) as boot.rst asks of a boot loader that loads it at
// 0x90000: loader type, heap end, command line pointer, initramfs.
func patchSetup(setup []byte, initrdAddr, initrdLen uint32, cmdline string) error {
	if len(setup) < 0x268 || binary.LittleEndian.Uint16(setup[hdrBootFlag:]) != 0xaa55 || string(setup[hdrMagic:hdrMagic+4]) != "HdrS" {
		return errors.New("xenbox: not a bzImage (no boot flag or HdrS header)")
	}
	ver := binary.LittleEndian.Uint16(setup[hdrVersion:])
	if ver < 0x206 {
		return fmt.Errorf("xenbox: boot protocol %#x, want at least 2.06 (cmdline_size)", ver)
	}
	if setup[hdrLoadFlags]&loadedHigh == 0 {
		return errors.New("xenbox: not a bzImage (LOADED_HIGH clear)")
	}
	if max := binary.LittleEndian.Uint32(setup[hdrCmdLineMax:]); uint32(len(cmdline)) > max {
		return fmt.Errorf("xenbox: command line of %d bytes, the kernel takes %d", len(cmdline), max)
	}
	if max := binary.LittleEndian.Uint32(setup[hdrInitrdMax:]); initrdAddr+initrdLen-1 > max {
		return fmt.Errorf("xenbox: initramfs ends at %#x, above initrd_addr_max %#x", initrdAddr+initrdLen-1, max)
	}
	setup[hdrLoaderType] = loaderOther
	setup[hdrLoadFlags] |= canUseHeap
	binary.LittleEndian.PutUint16(setup[hdrHeapEnd:], ldCmdlineOff-0x200)
	binary.LittleEndian.PutUint32(setup[hdrCmdLinePtr:], 0x90000+ldCmdlineOff)
	binary.LittleEndian.PutUint32(setup[hdrRamdiskImg:], initrdAddr)
	binary.LittleEndian.PutUint32(setup[hdrRamdiskSize:], initrdLen)
	return nil
}

func alignUp(v, a uint32) uint32 { return (v + a - 1) / a * a }

// BuildLinuxDisk assembles the loader with the host's as and ld and
// writes dir/linux.img: the loader, the bzImage (its setup patched), the
// initramfs and the data area (layout above).
func BuildLinuxDisk(dir string, bzImage, initrd []byte) (LinuxDisk, error) {
	return buildLinuxDisk(dir, bzImage, initrd, diskSpec{name: "linux.img", cmdline: LinuxCmdline, initrdAddr: ldInitrdAddr, dataSectors: 2 * LinuxDataSectors, pattern: true})
}

// diskSpec is what differs between the Linux guests' disks: the image's
// file name, the kernel's command line, where the initramfs is loaded,
// the data area's size, and whether its first half holds LinuxPattern
// (else zeros).
type diskSpec struct {
	name, cmdline string
	initrdAddr    uint32
	dataSectors   uint32
	pattern       bool
}

func buildLinuxDisk(dir string, bzImage, initrd []byte, spec diskSpec) (LinuxDisk, error) {
	code, err := assemble16(dir, "linuxldr", linuxLoaderAsm)
	if err != nil {
		return LinuxDisk{}, err
	}
	if len(code) > 0x1be {
		return LinuxDisk{}, fmt.Errorf("xenbox: Linux loader is %d bytes, more than 446", len(code))
	}
	if len(bzImage) < 0x268 {
		return LinuxDisk{}, errors.New("xenbox: not a bzImage (too short)")
	}
	setupSects := int(bzImage[hdrSetupSects])
	if setupSects == 0 {
		setupSects = 4 // boot.rst: 0 means 4
	}
	setupLen := (setupSects + 1) * 512
	if setupLen > ldCmdlineOff-0x200 || setupLen >= len(bzImage) {
		return LinuxDisk{}, fmt.Errorf("xenbox: bzImage setup of %d bytes does not fit below the heap", setupLen)
	}
	low := make([]byte, ldLowBytes)
	copy(low, bzImage[:setupLen])
	copy(low[ldCmdlineOff:], spec.cmdline+"\x00")
	pm := bzImage[setupLen:]
	kernSects := alignUp(uint32(len(pm)), 512) / 512
	initrdLBA := alignUp(ldKernelLBA+kernSects, 2048)
	initrdSects := alignUp(uint32(len(initrd)), 512) / 512
	if err := patchSetup(low, spec.initrdAddr, uint32(len(initrd)), spec.cmdline); err != nil {
		return LinuxDisk{}, err
	}
	dataLBA := alignUp(initrdLBA+initrdSects, 2048)
	total := alignUp(dataLBA+spec.dataSectors, 2048) * 512

	img := make([]byte, total)
	copy(img, code)
	at := bytes.Index(img[:0x1be], []byte(ldMagic))
	if at < 0 {
		return LinuxDisk{}, errors.New("xenbox: Linux loader without its parameter block")
	}
	p := img[at+len(ldMagic):]
	le := binary.LittleEndian
	for i, v := range []uint32{ldLowLBA, ldLowBytes / 512, 0x90000, ldKernelLBA, kernSects, 0x100000, initrdLBA, initrdSects, spec.initrdAddr} {
		le.PutUint32(p[4*i:], v)
	}
	img[510], img[511] = 0x55, 0xaa
	copy(img[ldLowLBA*512:], low)
	copy(img[ldKernelLBA*512:], pm)
	copy(img[initrdLBA*512:], initrd)
	d := LinuxDisk{Path: filepath.Join(dir, spec.name), DataLBA: dataLBA}
	if spec.pattern {
		pat := LinuxPattern()
		copy(img[dataLBA*512:], pat)
		d.ReadSum, d.WroteSum = sum(pat), sum(LinuxWritePattern())
	}
	return d, os.WriteFile(d.Path, img, 0o644)
}

// assemble16 assembles 16-bit code linked at 0x7c00 into a flat binary.
func assemble16(dir, name, asm string) ([]byte, error) {
	src := filepath.Join(dir, name+".S")
	obj := filepath.Join(dir, name+".o")
	bin := filepath.Join(dir, name+".bin")
	if err := os.WriteFile(src, []byte(asm), 0o644); err != nil {
		return nil, err
	}
	for _, c := range [][]string{
		{"as", "--32", "-o", obj, src},
		{"ld", "-m", "elf_i386", "-Ttext=0x7c00", "-e", "_start", "--oformat", "binary", "-o", bin, obj},
	} {
		if b, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("xenbox: %s: %s: %v: %s", name, c[0], err, b)
		}
	}
	return os.ReadFile(bin)
}

// LinuxModules are the modules Debian's kernel builds as modules that
// the guest needs to reach its IDE disk, in load order (each after the
// modules its .modinfo "depends=" names; crc-t10dif and crc64-rocksoft
// look up their crypto algorithms, the _generic modules, at load time:
// their "softdep=pre:"), with their paths in the package.
var LinuxModules = []string{
	"kernel/drivers/scsi/scsi_common.ko",
	"kernel/drivers/scsi/scsi_mod.ko",
	"kernel/drivers/ata/libata.ko",
	"kernel/drivers/ata/ata_piix.ko",
	"kernel/crypto/crct10dif_common.ko",
	"kernel/crypto/crct10dif_generic.ko",
	"kernel/lib/crc-t10dif.ko",
	"kernel/lib/crc64.ko",
	"kernel/crypto/crc64_rocksoft_generic.ko",
	"kernel/lib/crc64-rocksoft.ko",
	"kernel/block/t10-pi.ko",
	"kernel/drivers/scsi/sd_mod.ko",
}

// LinuxKernel is the guest kernel taken from the box's kernel package:
// the bzImage and the LinuxModules files, by base name.
type LinuxKernel struct {
	BzImage string
	Modules map[string]string // "libata.ko" -> host path
}

// KernelDeb is the box's Debian kernel package (scripts/xenbox.sh
// downloads it for dom0; the guest runs the same kernel), or "".
func (a Assets) KernelDeb() string {
	m, _ := filepath.Glob(filepath.Join(a.Dir, "debs", "linux-image-*.deb"))
	if len(m) == 0 {
		return ""
	}
	return m[0]
}

// ExtractLinuxKernel unpacks the bzImage and LinuxModules from the
// kernel package deb into dir with dpkg-deb and tar, and checks that
// every module's dependencies load before it.
func ExtractLinuxKernel(deb, dir string) (LinuxKernel, error) {
	return extractLinuxKernel(deb, dir, LinuxModules)
}

// extractLinuxKernel is ExtractLinuxKernel for the given modules, in
// load order.
func extractLinuxKernel(deb, dir string, modules []string) (LinuxKernel, error) {
	args := []string{"-x", "-C", dir, "--wildcards", "./boot/vmlinuz-*"}
	for _, m := range modules {
		args = append(args, "./lib/modules/*/"+m)
	}
	cmd := fmt.Sprintf("dpkg-deb --fsys-tarfile %q | tar %s", deb, shellQuote(args))
	if b, err := exec.Command("sh", "-c", cmd).CombinedOutput(); err != nil {
		return LinuxKernel{}, fmt.Errorf("xenbox: unpacking the guest kernel from %s: %v: %s", deb, err, b)
	}
	bz, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(bz) != 1 {
		return LinuxKernel{}, fmt.Errorf("xenbox: %d kernel images in %s", len(bz), deb)
	}
	k := LinuxKernel{BzImage: bz[0], Modules: map[string]string{}}
	loaded := map[string]bool{}
	for _, m := range modules {
		p, _ := filepath.Glob(filepath.Join(dir, "lib", "modules", "*", m))
		if len(p) != 1 {
			return LinuxKernel{}, fmt.Errorf("xenbox: module %s not in %s", m, deb)
		}
		deps, err := moduleDepends(p[0])
		if err != nil {
			return LinuxKernel{}, err
		}
		for _, d := range deps {
			if !loaded[d] {
				return LinuxKernel{}, fmt.Errorf("xenbox: module %s depends on %s, which is not loaded before it", m, d)
			}
		}
		name := strings.TrimSuffix(filepath.Base(m), ".ko")
		loaded[name] = true
		loaded[strings.ReplaceAll(name, "-", "_")] = true
		k.Modules[filepath.Base(m)] = p[0]
	}
	return k, nil
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// moduleDepends reads a kernel module's "depends=" from its .modinfo.
func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("xenbox: module %s: %w", path, err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("xenbox: module %s has no .modinfo", path)
	}
	b, err := s.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := strings.CutPrefix(string(kv), "depends="); ok {
			if v == "" {
				return nil, nil
			}
			return strings.Split(v, ","), nil
		}
	}
	return nil, nil
}

// LinuxTestScript is the guest's test (run by internal/guest's /init):
// load the modules, wait for both disks (the raw boot disk and its qcow2
// copy), print what the kernel said about the IDE disks, then
// on each disk read the known pattern, write the new one with fsync,
// drop the page cache and read it back; every result on a LINUX-DISK
// line, "LINUX-DISK OK <disk> read=<sha256> wrote=<sha256>" at the end
// of each.
func LinuxTestScript(d LinuxDisk) string {
	var b strings.Builder
	b.WriteString("set -u\nL=" + LinuxDiskLine + "\n")
	for _, m := range append(append([]string{}, LinuxModules...), LinuxNICModules...) {
		fmt.Fprintf(&b, "insmod /lib/modules/%s || { echo \"$L FAIL insmod %s\"; exit 1; }\n", filepath.Base(m), filepath.Base(m))
	}
	fmt.Fprintf(&b, `i=0
while [ ! -b /dev/sda ] || [ ! -b /dev/sdb ]; do
	i=$((i+1)); [ $i -gt 300 ] && { echo "$L FAIL no /dev/sda and /dev/sdb"; dmesg | tail -40; exit 1; }; sleep 0.1
done
echo "$L disks after $i polls: sda $(cat /sys/block/sda/size) sectors, sdb $(cat /sys/block/sdb/size) sectors"
# Linux names the disks in the order their probes end: say which is
# which (SCSI host:channel:id:lun; id 0 the master, the raw image).
for d in sda sdb; do echo "$L $d is $(basename $(readlink /sys/block/$d/device))"; done
dmesg | grep -E 'ata[0-9]|scsi|sd[ a]|piix' | sed "s/^/$L dmesg /"
yes '%s' | head -c %d > /tmp/w
check() {
	r=$(dd if=/dev/$1 bs=512 skip=%d count=%d 2>/dev/null | sha256sum | cut -d' ' -f1)
	echo "$L $1 read $r"
	dd if=/tmp/w of=/dev/$1 bs=512 seek=%d conv=fsync 2>/dev/null || { echo "$L FAIL $1 write"; return 1; }
	sync
	echo 3 > /proc/sys/vm/drop_caches
	blockdev --flushbufs /dev/$1
	w=$(dd if=/dev/$1 bs=512 skip=%d count=%d 2>/dev/null | sha256sum | cut -d' ' -f1)
	echo "$L OK $1 read=$r wrote=$w"
}
check sda && check sdb
disk=$?
`, strings.TrimSuffix(LinuxWrote, "\n"), LinuxDataSectors*512, d.DataLBA, LinuxDataSectors, d.WriteLBA(), d.WriteLBA(), LinuxDataSectors)
	b.WriteString(linuxNetGuestScript())
	b.WriteString("exit $((disk | net))\n")
	return b.String()
}

// BuildLinuxGuest makes the linux-disk scenario's disk in dir from the
// box's kernel package: the guest's initramfs (busybox from the box's
// root, LinuxModules, LinuxTestScript), BuildLinuxDisk, and a qcow2
// copy of the disk. The data
// area's place depends on the initramfs's size, and the script names
// it: the script is written for a first layout, and the disk rebuilt if
// the final initramfs moved the data area.
func BuildLinuxGuest(a Assets, dir string) (LinuxDisk, error) {
	deb := a.KernelDeb()
	if deb == "" {
		return LinuxDisk{}, fmt.Errorf("xenbox: no kernel package in %s/debs (run scripts/xenbox.sh)", a.Dir)
	}
	k, err := extractLinuxKernel(deb, dir, append(append([]string{}, LinuxModules...), LinuxNICModules...))
	if err != nil {
		return LinuxDisk{}, err
	}
	bz, err := os.ReadFile(k.BzImage)
	if err != nil {
		return LinuxDisk{}, err
	}
	extra := map[string][]byte{}
	for name, p := range k.Modules {
		b, err := os.ReadFile(p)
		if err != nil {
			return LinuxDisk{}, err
		}
		extra["lib/modules/"+name] = b
	}
	d := LinuxDisk{DataLBA: 0}
	for range 3 {
		rd, err := guest.BuildInitramfs(filepath.Join(a.Root(), "bin", "busybox"), LinuxTestScript(d), extra)
		if err != nil {
			return LinuxDisk{}, err
		}
		nd, err := BuildLinuxDisk(dir, bz, rd)
		if err != nil {
			return LinuxDisk{}, err
		}
		if nd.DataLBA == d.DataLBA {
			// The second disk: the same image as qcow2 (qemu-img of
			// Debian's qemu-utils, scripts/test-packages.txt).
			nd.Qcow2 = filepath.Join(dir, "linux.qcow2")
			if b, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", nd.Path, nd.Qcow2).CombinedOutput(); err != nil {
				return LinuxDisk{}, fmt.Errorf("xenbox: qemu-img convert: %v: %s", err, b)
			}
			return nd, nil
		}
		d = nd
	}
	return LinuxDisk{}, errors.New("xenbox: the Linux disk's data area did not settle")
}

// LinuxDiskScenario boots a Debian Linux HVM guest the normal way with
// godm as its only device model: hvmloader, SeaBIOS, our MBR loader from
// godm's IDE disk (BuildLinuxDisk), Linux with its own ata_piix driver on
// godm's PIIX3 IDE: the raw disk as primary master, its qcow2 copy as
// primary slave (sda and sdb in the order Linux's probes end), both given as the -drive strings libxl writes
// for disk=[...] through device_model_args_hvm (see LibxlDiskScenario
// for why not disk=[...]). The guest's ttyS0 (godm's UART, serial =
// file:) is relayed as it comes, prefixed "linux: ". After the guest's
// power-off (ACPI S5 through godm's PIIX4 PM) dom0 checks the disks:
// the raw image's write area must hash to what the guest wrote
// (raw_wrote), and the qcow2 file must hold the written lines
// (qcow2_lines, whole lines; its clusters hold guest data verbatim).
func LinuxDiskScenario(d LinuxDisk) Scenario { return linuxDiskScenario(d, false) }

// LinuxNetScenario is LinuxDiskScenario with the guest's NICs (scenario
// "linux-net", see LinuxNICs): dom0 sets up its side first
// (linuxNetDom0Setup), the xl.cfg gets the vif list, and after the
// power-off dom0 relays its leases and what its CGI received
// (netreport, see linuxNetDom0Setup) and the bridge's ports as godm left them while
// the guest ran (fact brif).
func LinuxNetScenario(d LinuxDisk) Scenario { return linuxDiskScenario(d, true) }

func linuxDiskScenario(d LinuxDisk, net bool) Scenario {
	name, vifs, setup, report, brif := "linux-disk", "", "", "", ""
	if net {
		name, vifs, setup, report = "linux-net", linuxNetVifs(), linuxNetDom0Setup(), "netreport\n"
		brif = `echo "XENBOX-FACT brif=$(ls /sys/class/net/` + LinuxNetBridge + `/brif | tr '\n' ',')"
`
	}
	cfg := fmt.Sprintf(`name = "lk"
type = "hvm"
memory = %d
vcpus = 1
device_model_version = "qemu-xen"
device_model_override = "%s"
vga = "none"
vkb_device = 0
vnc = 0
sdl = 0
serial = "file:/tmp/lk-com1.log"
boot = "c"
on_poweroff = "destroy"
on_reboot = "preserve"
on_crash = "preserve"
device_model_args_hvm = [ "-drive", "file=%s,if=ide,index=0,media=disk,format=raw,cache=writeback",
  "-drive", "file=%s,if=ide,index=1,media=disk,format=qcow2,cache=writeback" ]
%s`, ldMinMemMB, GodmPath, LinuxDiskPath, LinuxQcow2Path, vifs)
	return Scenario{Name: name, Script: "cat > /tmp/lk.cfg <<'EOF'\n" + cfg + `EOF
log=/var/log/xen/qemu-dm-lk.log
com1=/tmp/lk-com1.log
# relay: print the guest's new complete lines (no background tail: it
# would hold the scenario's output open).
seen=0
relay() {
	n=$(wc -l < $com1)
	[ "$n" -gt $seen ] && sed -n "$((seen+1)),${n}p" $com1 | tr -d '\r' | sed 's/^/linux: /'
	seen=$n
}
fail() {
	echo "$1"; relay; echo "--- $log"; cat $log; xl list; xl destroy lk 2>/dev/null
	netreport
	exit 1
}
netreport() { :; }
now() { cut -d' ' -f1 /proc/uptime; }
` + setup + `: > $com1
t0=$(now)
xl -T -vvv create -p /tmp/lk.cfg > /tmp/lk-create.xl 2>&1 || { grep -v 'libxl_event.c' /tmp/lk-create.xl | tail -n 200 | sed 's/^/xl: /'; fail "xl create -p failed"; }
# libxl's hotplug scripts (Debian's vif-bridge for linux-net) and their times
grep -i 'hotplug script\|vif-bridge' /tmp/lk-create.xl | sed 's/^/xl: /' 
d=$(xl domid lk)
echo "XENBOX-FACT domid=$d"
t1=$(now)
echo "XENBOX-FACT xl_create_p=$(awk "BEGIN{print $t1-$t0}")s"
` + brif + `xl unpause $d || fail "xl unpause failed"
# Wait for the guest's lines and its power-off, polling every 5 s with
# xenstore-read (dom0's forks slow the guest: REAL-XEN).
up= ok= i=0
while xenstore-read /local/domain/$d/name >/dev/null 2>&1; do
	i=$((i+1)); [ $i -gt 180 ] && fail "the Linux guest did not power off within 900 s"
	[ -z "$up" ] && grep -q GODM-GUEST-UP $com1 && up=$(now)
	[ -z "$ok" ] && grep -q 'LINUX-DISK OK sdb' $com1 && ok=$(now)
	relay
	# the loader's dots come without a newline: show the bytes so far
	[ $((i % 6)) = 0 ] && echo "com1: $(wc -c < $com1) bytes after $((i*5)) s"
	# dom0's busiest processes now and then (the box's CPU is the scarce thing)
	[ $((i % 24)) = 0 ] && top -b -n 1 | sed -n '1,10s/^/top: /p'
	sleep 5
done
t2=$(now)
relay
# the last line, if the guest's power-off cut it short
[ -n "$(tail -c 1 $com1)" ] && tail -n 1 $com1 | tr -d '\r' | sed 's/^/linux: /'
# Times from xl unpause (the 5 s polls round them up; "unseen": the
# guest got there and powered off between two polls).
since() { if [ -n "$1" ]; then echo "$(awk "BEGIN{print $1-$t1}")s"; else echo unseen; fi; }
echo "XENBOX-FACT userspace=$(since "$up")"
echo "XENBOX-FACT disks_ok=$(since "$ok")"
echo "XENBOX-FACT poweroff=$(since "$t2")"
grep -q 'GODM-GUEST-EXIT 0' $com1 || fail "the guest's test did not exit 0"
echo "XENBOX-FACT raw_wrote=$(dd if=` + LinuxDiskPath + ` bs=512 skip=` + fmt.Sprint(d.WriteLBA()) + ` count=` + fmt.Sprint(LinuxDataSectors) + ` 2>/dev/null | sha256sum | cut -d' ' -f1)"
echo "XENBOX-FACT qcow2_lines=$(grep -c -x -F '` + strings.TrimSuffix(LinuxWrote, "\n") + `' ` + LinuxQcow2Path + `)"
` + report + `i=0
while pidof godm >/dev/null; do
	i=$((i+1)); [ $i -gt 50 ] && fail "godm still runs after the guest's power-off"; sleep 0.2
done
echo "--- $log"; cat $log
exit 0`}
}

// LinuxDiskLines are the guest's "LINUX-DISK OK <disk> read=<sum>
// wrote=<sum>" lines as relayed by the linux-disk scenario: disk ->
// [read, wrote].
func LinuxDiskLines(lines []Line) map[string][2]string { return linuxDiskLines(lines, "linux-disk") }

// linuxDiskLines is LinuxDiskLines for scenario scen (linux-disk or
// linux-net).
func linuxDiskLines(lines []Line, scen string) map[string][2]string {
	out := map[string][2]string{}
	for _, l := range lines {
		_, rest, ok := strings.Cut(l.Text, "["+scen+"] linux: "+LinuxDiskLine+" OK ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 3 {
			continue
		}
		r, ok1 := strings.CutPrefix(f[1], "read=")
		w, ok2 := strings.CutPrefix(f[2], "wrote=")
		if ok1 && ok2 {
			out[f[0]] = [2]string{r, w}
		}
	}
	return out
}
