package xenbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Boot disk of the libxl-disk scenario: SeaBIOS loads its MBR from the
// guest's first IDE disk (godm's PIIX3 IDE, legacy ports and, as SeaBIOS
// chooses, PIO or bus-master DMA); the boot sector prints BootMBRLine on
// COM1, reads the disk's second sector through the BIOS (INT 13h, AH=02h:
// SeaBIOS's ATA driver again) and prints the line stored there, then
// idles with interrupts on (HLT with interrupts off takes the vCPU down,
// and Xen then ends a one-vCPU domain).
const (
	BootDiskPath  = "/xenbox/disk/boot.img"
	BootMBRLine   = "GODM-IDE-MBR"
	BootSector2   = "GODM-IDE-INT13-SECTOR2"
	bootDiskBytes = 1 << 20
)

// bootSectorAsm is the MBR's code (GNU as, 16-bit real mode, linked at
// 0x7c00). DL holds the boot drive SeaBIOS passed.
const bootSectorAsm = `
	.code16
	.globl _start
_start:
	cli
	xorw %ax, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw $0x7c00, %sp
	sti
	movb %dl, drive
	movw $mbr, %si
	call print
	movw $0x0201, %ax
	movw $0x0002, %cx
	movb $0, %dh
	movb drive, %dl
	movw $0x7e00, %bx
	int $0x13
	jc fail
	movw $0x7e00, %si
	call print
hang:
	sti
	hlt
	jmp hang
fail:
	movw $failmsg, %si
	call print
	jmp hang
print:
	movw $0x3f8, %dx
1:	lodsb
	testb %al, %al
	jz 2f
	outb %al, %dx
	jmp 1b
2:	ret
drive:
	.byte 0
mbr:
	.asciz "` + BootMBRLine + `\r\n"
failmsg:
	.asciz "GODM-IDE-INT13-FAILED\r\n"
`

// BuildBootDisk assembles the boot sector with the host's as and ld and
// writes a raw disk image of 1 MiB into dir: the MBR (code, one
// partition entry, 0x55aa) and BootSector2 in sector 1.
func BuildBootDisk(dir string) (string, error) {
	src := filepath.Join(dir, "boot.S")
	obj := filepath.Join(dir, "boot.o")
	bin := filepath.Join(dir, "boot.bin")
	if err := os.WriteFile(src, []byte(bootSectorAsm), 0o644); err != nil {
		return "", err
	}
	for _, c := range [][]string{
		{"as", "--32", "-o", obj, src},
		{"ld", "-m", "elf_i386", "-Ttext=0x7c00", "-e", "_start", "--oformat", "binary", "-o", bin, obj},
	} {
		if b, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("xenbox: boot sector: %s: %v: %s", c[0], err, b)
		}
	}
	code, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	if len(code) > 0x1be {
		return "", fmt.Errorf("xenbox: boot sector code is %d bytes, more than 446", len(code))
	}
	img := make([]byte, bootDiskBytes)
	copy(img, code)
	// One bootable partition from sector 63 to the end (CHS 16/63).
	copy(img[0x1be:], []byte{0x80, 1, 1, 0, 0x83, 15, 63, 1, 63, 0, 0, 0, byte((bootDiskBytes/512 - 63) & 0xff), byte((bootDiskBytes/512 - 63) >> 8), 0, 0})
	img[510], img[511] = 0x55, 0xaa
	copy(img[512:], BootSector2+"\r\n\x00")
	out := filepath.Join(dir, "boot.img")
	return out, os.WriteFile(out, img, 0o644)
}
